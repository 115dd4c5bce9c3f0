package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"
)

// GuardConfig configures [Guard]. The zero value of every field but Name
// selects its documented default.
type GuardConfig struct {
	// Name identifies the provider in metrics (the provider label), logs and
	// [UnavailableError]: "smtp", "twilio", "fcm", "apns". Required; lower
	// case letters, digits and '_' only, since it is a label value.
	Name string

	// ConsecutiveFailures opens the breaker after that many failures in a
	// row. Default 5.
	ConsecutiveFailures uint32
	// FailureRatio, when > 0, also opens the breaker once at least
	// MinRequests requests were counted in the current Interval and this
	// fraction of them failed. Default 0 (off).
	FailureRatio float64
	// MinRequests is the request count below which FailureRatio is not
	// consulted. Default 20.
	MinRequests uint32
	// Interval is the rolling window over which a closed breaker counts
	// requests and failures (10 buckets). Default 1m.
	Interval time.Duration
	// OpenTimeout is how long the breaker stays open before it lets probe
	// requests through (half-open). Default 30s.
	OpenTimeout time.Duration
	// HalfOpenRequests is how many probes a half-open breaker lets through;
	// that many successes in a row close it, one failure opens it again.
	// Default 1.
	HalfOpenRequests uint32
	// Jitter is the fraction of OpenTimeout added at random to RetryAfter
	// while the breaker is open, so that the messages it delayed do not all
	// come back at the same instant. Default 0.2; a negative value means no
	// jitter.
	Jitter float64

	// Rate is the provider's sustained send rate in messages per second.
	// Default 0: unlimited.
	Rate float64
	// Burst is the rate limiter's bucket size. Default max(1, ceil(Rate)).
	Burst int
}

var guardNameRE = regexp.MustCompile(`^[a-z0-9_]{1,32}$`)

func (c *GuardConfig) validate() error {
	switch {
	case !guardNameRE.MatchString(c.Name):
		return fmt.Errorf("dispatch: GuardConfig.Name %q: want 1 to 32 of [a-z0-9_]", c.Name)
	case c.FailureRatio < 0 || c.FailureRatio > 1:
		return fmt.Errorf("dispatch: GuardConfig.FailureRatio %v: want 0 to 1", c.FailureRatio)
	case c.Interval < 0:
		return fmt.Errorf("dispatch: GuardConfig.Interval %v: must not be negative", c.Interval)
	case c.OpenTimeout < 0:
		return fmt.Errorf("dispatch: GuardConfig.OpenTimeout %v: must not be negative", c.OpenTimeout)
	case c.Jitter > 1:
		return fmt.Errorf("dispatch: GuardConfig.Jitter %v: want at most 1", c.Jitter)
	case c.Rate < 0 || math.IsInf(c.Rate, 0) || math.IsNaN(c.Rate):
		return fmt.Errorf("dispatch: GuardConfig.Rate %v: want a finite rate >= 0", c.Rate)
	case c.Burst < 0:
		return fmt.Errorf("dispatch: GuardConfig.Burst %d: must not be negative", c.Burst)
	}
	return nil
}

func (c *GuardConfig) setDefaults() {
	if c.ConsecutiveFailures == 0 {
		c.ConsecutiveFailures = 5
	}
	if c.MinRequests == 0 {
		c.MinRequests = 20
	}
	if c.Interval == 0 {
		c.Interval = time.Minute
	}
	if c.OpenTimeout == 0 {
		c.OpenTimeout = 30 * time.Second
	}
	if c.HalfOpenRequests == 0 {
		c.HalfOpenRequests = 1
	}
	switch {
	case c.Jitter == 0:
		c.Jitter = 0.2
	case c.Jitter < 0:
		c.Jitter = 0
	}
	if c.Burst == 0 {
		c.Burst = max(1, int(math.Ceil(c.Rate)))
	}
}

// Guarded is a Provider behind a circuit breaker and a rate limiter, made
// by [Guard]. It is safe for concurrent use.
//
// What counts as a failure for the breaker: every error except a
// [*RejectedError] (one bad recipient or payload says nothing about the
// provider's health, so it counts as a success) and context.Canceled
// (neither success nor failure). Timeouts (context.DeadlineExceeded),
// connection errors, 5xx and throttling replies (429, surfaced by the
// providers as [*UnavailableError]) are failures.
//
// Guarded is a prometheus.Collector of its own metrics, all labelled
// provider=Name:
//
//	sluice_breaker_state                      gauge: 0 closed, 1 half-open, 2 open
//	sluice_breaker_transitions_total{from,to}  counter (states "closed", "half_open", "open")
//	sluice_provider_requests_total{outcome}    counter: delivered, rejected, failed, unavailable, canceled
//	sluice_provider_request_duration_seconds   histogram of the provider calls let through
//
// Every state transition is logged once, at Warn when the breaker opens and
// at Info otherwise; nothing is logged per message.
type Guarded struct {
	p        Provider
	cfg      GuardConfig
	cb       *gobreaker.TwoStepCircuitBreaker[struct{}]
	lim      *rate.Limiter
	log      *slog.Logger
	openedAt atomic.Int64 // unix nanoseconds of the last transition to open

	state       prometheus.Gauge
	transitions *prometheus.CounterVec
	requests    *prometheus.CounterVec
	duration    prometheus.Histogram
}

var errRateLimited = errors.New("rate limit would wait past the send deadline")

// Guard wraps p in a circuit breaker (github.com/sony/gobreaker/v2) and,
// when cfg.Rate > 0, a token-bucket rate limiter (golang.org/x/time/rate).
// Use one Guard per provider (one relay, one account): a breaker shared by
// two providers would let one's outage stop the other.
//
// Send on the result:
//
//  1. returns a [*UnavailableError] at once while the breaker is open, with
//     RetryAfter the remaining open time plus up to Jitter×OpenTimeout of
//     random jitter; while half-open and the probes are taken, RetryAfter is
//     a random duration between OpenTimeout/4 and OpenTimeout/2;
//  2. waits for the rate limiter, or returns a [*UnavailableError] with
//     RetryAfter the limiter's wait if that wait would outlast ctx's
//     deadline (this does not count as a breaker failure);
//  3. calls p.Send and reports the outcome to the breaker. A
//     [*UnavailableError] from p (a 429) keeps its RetryAfter and gets
//     Provider filled in; every other error is returned unchanged.
//
// logger may be nil (no logs). reg may be nil: the metrics are then only
// reachable by registering the Guarded itself later, which is how a process
// that builds its providers before its registry exists does it.
func Guard(p Provider, cfg GuardConfig, logger *slog.Logger, reg prometheus.Registerer) (*Guarded, error) {
	if p == nil {
		return nil, errors.New("dispatch: Guard: nil provider")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Guarded{p: p, cfg: cfg, log: logger}
	if cfg.Rate > 0 {
		g.lim = rate.NewLimiter(rate.Limit(cfg.Rate), cfg.Burst)
	}
	labels := prometheus.Labels{"provider": cfg.Name}
	g.state = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "sluice", Subsystem: "breaker", Name: "state",
		Help:        "Circuit breaker state of a provider: 0 closed, 1 half-open, 2 open.",
		ConstLabels: labels,
	})
	g.transitions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "sluice", Subsystem: "breaker", Name: "transitions_total",
		Help:        "Circuit breaker state transitions of a provider.",
		ConstLabels: labels,
	}, []string{"from", "to"})
	g.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "sluice", Subsystem: "provider", Name: "requests_total",
		Help:        "Sends through a guarded provider by outcome: delivered, rejected (permanent), failed (transient), unavailable (breaker open, throttled or rate limited), canceled.",
		ConstLabels: labels,
	}, []string{"outcome"})
	g.duration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "sluice", Subsystem: "provider", Name: "request_duration_seconds",
		Help:        "Duration of the provider calls a guard let through.",
		ConstLabels: labels,
		Buckets:     []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	})
	for _, o := range []string{"delivered", "rejected", "failed", "unavailable", "canceled"} {
		g.requests.WithLabelValues(o)
	}
	// The transitions a breaker makes, at 0 from the start.
	for _, t := range [][2]gobreaker.State{{gobreaker.StateClosed, gobreaker.StateOpen}, {gobreaker.StateOpen, gobreaker.StateHalfOpen},
		{gobreaker.StateHalfOpen, gobreaker.StateClosed}, {gobreaker.StateHalfOpen, gobreaker.StateOpen}} {
		g.transitions.WithLabelValues(stateLabel(t[0]), stateLabel(t[1]))
	}
	g.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:          cfg.Name,
		MaxRequests:   cfg.HalfOpenRequests,
		Interval:      cfg.Interval,
		BucketPeriod:  cfg.Interval / 10,
		Timeout:       cfg.OpenTimeout,
		ReadyToTrip:   g.readyToTrip,
		OnStateChange: g.onStateChange,
		IsSuccessful:  func(err error) bool { return err == nil || errors.Is(err, ErrRejected) },
		IsExcluded:    func(err error) bool { return errors.Is(err, context.Canceled) },
	})
	if reg != nil {
		if err := reg.Register(g); err != nil {
			return nil, fmt.Errorf("dispatch: Guard %s: register metrics: %w", cfg.Name, err)
		}
	}
	return g, nil
}

func (g *Guarded) readyToTrip(c gobreaker.Counts) bool {
	if c.ConsecutiveFailures >= g.cfg.ConsecutiveFailures {
		return true
	}
	return g.cfg.FailureRatio > 0 && c.Requests >= g.cfg.MinRequests &&
		float64(c.TotalFailures) >= g.cfg.FailureRatio*float64(c.Requests)
}

// onStateChange runs under the breaker's lock: it must not call g.cb.
func (g *Guarded) onStateChange(_ string, from, to gobreaker.State) {
	if to == gobreaker.StateOpen {
		g.openedAt.Store(time.Now().UnixNano())
	}
	g.state.Set(float64(to))
	g.transitions.WithLabelValues(stateLabel(from), stateLabel(to)).Inc()
	if to == gobreaker.StateOpen {
		g.log.Warn("circuit breaker opened: provider calls stop", "provider", g.cfg.Name, "from", stateLabel(from), "open_for", g.cfg.OpenTimeout)
		return
	}
	g.log.Info("circuit breaker state changed", "provider", g.cfg.Name, "from", stateLabel(from), "to", stateLabel(to))
}

func stateLabel(s gobreaker.State) string {
	switch s {
	case gobreaker.StateClosed:
		return "closed"
	case gobreaker.StateHalfOpen:
		return "half_open"
	case gobreaker.StateOpen:
		return "open"
	}
	return "unknown"
}

// Name returns the provider name of the guard (GuardConfig.Name).
func (g *Guarded) Name() string { return g.cfg.Name }

// Open reports whether the breaker is open, that is whether Send would
// return a [*UnavailableError] without calling the provider. A scheduler can
// skip fetching work for the provider's channel while it is open. Once the
// open timeout has passed Open reports false (the breaker is half-open and
// lets probes through).
func (g *Guarded) Open() bool { return g.cb.State() == gobreaker.StateOpen }

// State returns "closed", "half_open" or "open".
func (g *Guarded) State() string { return stateLabel(g.cb.State()) }

// Send sends m through the breaker and the rate limiter; see [Guard].
func (g *Guarded) Send(ctx context.Context, m *Message) error {
	if err := ctx.Err(); err != nil {
		g.requests.WithLabelValues(outcomeOf(err)).Inc()
		return err
	}
	if g.cb.State() == gobreaker.StateOpen {
		g.requests.WithLabelValues("unavailable").Inc()
		return g.breakerErr(gobreaker.ErrOpenState)
	}
	if err := g.wait(ctx); err != nil {
		g.requests.WithLabelValues(outcomeOf(err)).Inc()
		return err
	}
	done, err := g.cb.Allow()
	if err != nil {
		g.requests.WithLabelValues("unavailable").Inc()
		return g.breakerErr(err)
	}
	start := time.Now()
	err = g.p.Send(ctx, m)
	g.duration.Observe(time.Since(start).Seconds())
	done(err)
	if ue, ok := errors.AsType[*UnavailableError](err); ok && ue.Provider == "" {
		ue.Provider = g.cfg.Name
	}
	g.requests.WithLabelValues(outcomeOf(err)).Inc()
	return err
}

func outcomeOf(err error) string {
	switch {
	case err == nil:
		return "delivered"
	case errors.Is(err, ErrRejected):
		return "rejected"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "failed"
}

// breakerErr is the UnavailableError of a request the breaker refused.
func (g *Guarded) breakerErr(cause error) error {
	timeout := g.cfg.OpenTimeout
	var d time.Duration
	if errors.Is(cause, gobreaker.ErrTooManyRequests) {
		// Half-open and the probes are out: their answer comes within one
		// send timeout; come back in a fraction of the open timeout.
		d = timeout/4 + rand.N(timeout/4+1)
	} else {
		remaining := time.Until(time.Unix(0, g.openedAt.Load()).Add(timeout))
		d = max(remaining, 0) + rand.N(time.Duration(g.cfg.Jitter*float64(timeout))+1)
	}
	return &UnavailableError{Provider: g.cfg.Name, RetryAfter: max(d, timeout/10, time.Millisecond), Cause: cause}
}

// wait takes a token from the rate limiter, waiting for it unless the wait
// would outlast ctx's deadline.
func (g *Guarded) wait(ctx context.Context) error {
	if g.lim == nil {
		return nil
	}
	now := time.Now()
	r := g.lim.ReserveN(now, 1)
	d := r.DelayFrom(now)
	if d == 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok && now.Add(d).After(dl) {
		r.CancelAt(now)
		return &UnavailableError{Provider: g.cfg.Name, RetryAfter: d, Cause: errRateLimited}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		r.Cancel()
		return ctx.Err()
	}
}

// Describe implements prometheus.Collector.
func (g *Guarded) Describe(ch chan<- *prometheus.Desc) {
	g.state.Describe(ch)
	g.transitions.Describe(ch)
	g.requests.Describe(ch)
	g.duration.Describe(ch)
}

// Collect implements prometheus.Collector. It first brings the breaker's
// state up to date, so that an open breaker whose timeout has passed shows
// as half-open even when no message has arrived since.
func (g *Guarded) Collect(ch chan<- prometheus.Metric) {
	g.cb.State()
	g.state.Collect(ch)
	g.transitions.Collect(ch)
	g.requests.Collect(ch)
	g.duration.Collect(ch)
}
