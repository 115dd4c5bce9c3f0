package dispatch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of [FailoverConfig].
const (
	// InDoubtHoldDefault is how long a message whose send was left in doubt
	// stays pinned to the provider that had it.
	InDoubtHoldDefault = time.Hour
	// MaxPinnedDefault bounds the messages pinned at once.
	MaxPinnedDefault = 100_000
)

// FailoverConfig configures [NewFailover]. The zero value of every field
// selects its documented default.
type FailoverConfig struct {
	// InDoubtHold is how long a message whose send to a provider was left in
	// doubt (see [Failover]) is sent only to that provider again. Default
	// InDoubtHoldDefault (1h).
	InDoubtHold time.Duration
	// MaxPinned bounds how many in-doubt messages are remembered at once;
	// past it the oldest pins are forgotten. Default MaxPinnedDefault.
	MaxPinned int
	// Now is the clock of the pins. Default time.Now.
	Now func() time.Time
}

func (c *FailoverConfig) validate() error {
	switch {
	case c.InDoubtHold < 0:
		return fmt.Errorf("dispatch: FailoverConfig.InDoubtHold %v: must not be negative", c.InDoubtHold)
	case c.MaxPinned < 0:
		return fmt.Errorf("dispatch: FailoverConfig.MaxPinned %d: must not be negative", c.MaxPinned)
	}
	return nil
}

func (c *FailoverConfig) setDefaults() {
	if c.InDoubtHold == 0 {
		c.InDoubtHold = InDoubtHoldDefault
	}
	if c.MaxPinned == 0 {
		c.MaxPinned = MaxPinnedDefault
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Failover is one channel's ordered chain of guarded providers (two SMTP
// relays, two Twilio accounts), made by [NewFailover]. It is a Provider,
// safe for concurrent use.
//
// Send tries the providers in order. It moves on to the next one at once,
// without waiting for the first to recover, only when the error proves the
// provider did not take the message ([ErrNotSent]: breaker open, throttled,
// connection refused, an SMTP reply before the final dot, an HTTP 5xx other
// than 504). A delivery, a rejection, a cancellation or a send left in
// doubt ends the chain. Every provider sees the same Message, hence the
// same idempotency key (Message-ID, I-Twilio-Idempotency-Token).
//
// A send is in doubt when the provider may have taken the message without
// saying so: a timeout or a lost connection after the message was written
// (after the SMTP final dot, after the HTTP request), or an HTTP 504. Sending
// it elsewhere could deliver it twice, so Failover returns the error (the
// message is retried with backoff) and pins the message to that provider
// for InDoubtHold: its retries go to that provider only, and wait for it if
// it is down, until it answers. The pin lives in this process's memory: a
// retry taken by another worker process, or after a restart, may go to the
// next provider; such sends are bounded by the in-doubt ones, which
// sluice_provider_in_doubt_total counts.
//
// Each attempt but the last gets an equal share of what remains of ctx's
// deadline, so that a provider that hangs leaves time for the next one.
//
// Failover is a prometheus.Collector of
//
//	sluice_provider_failovers_total{from,to}   messages passed on from one provider to the next
//	sluice_provider_in_doubt_total{provider}   sends left in doubt, pinned to that provider
//
// while each provider's own sluice_provider_requests_total{provider=...}
// shows the traffic shift.
type Failover struct {
	ps   []*Guarded
	cfg  FailoverConfig
	pins pins

	failovers *prometheus.CounterVec
	inDoubt   *prometheus.CounterVec
}

// NewFailover returns the chain of providers, tried in the order given. A
// chain of one provider behaves as that provider, with in-doubt pinning.
// Give each provider a distinct GuardConfig.Name.
func NewFailover(providers []*Guarded, cfg FailoverConfig) (*Failover, error) {
	if len(providers) == 0 {
		return nil, errors.New("dispatch: NewFailover: no providers")
	}
	seen := map[string]bool{}
	for i, p := range providers {
		if p == nil {
			return nil, fmt.Errorf("dispatch: NewFailover: provider %d is nil", i)
		}
		if seen[p.Name()] {
			return nil, fmt.Errorf("dispatch: NewFailover: provider name %q twice; give each provider of a chain its own name", p.Name())
		}
		seen[p.Name()] = true
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	f := &Failover{ps: append([]*Guarded(nil), providers...), cfg: cfg, pins: pins{m: map[string]pin{}}}
	f.failovers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "sluice", Subsystem: "provider", Name: "failovers_total",
		Help: "Messages a provider did not take (breaker open, throttled, refused) passed on at once to the next provider of its channel.",
	}, []string{"from", "to"})
	f.inDoubt = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "sluice", Subsystem: "provider", Name: "in_doubt_total",
		Help: "Sends left in doubt (timeout or connection lost after hand-over); the message is retried on that provider only.",
	}, []string{"provider"})
	for i, p := range f.ps {
		f.inDoubt.WithLabelValues(p.Name())
		if i+1 < len(f.ps) {
			f.failovers.WithLabelValues(p.Name(), f.ps[i+1].Name())
		}
	}
	return f, nil
}

// Names returns the providers' names in order.
func (f *Failover) Names() []string {
	out := make([]string, len(f.ps))
	for i, p := range f.ps {
		out[i] = p.Name()
	}
	return out
}

// Open reports whether every provider's breaker is open: no message of the
// channel can go out now.
func (f *Failover) Open() bool {
	for _, p := range f.ps {
		if !p.Open() {
			return false
		}
	}
	return true
}

// Send sends m through the first provider that takes it; see [Failover].
func (f *Failover) Send(ctx context.Context, m *Message) error {
	if i, ok := f.pins.get(m.ID, f.cfg.Now()); ok {
		err := f.ps[i].Send(ctx, m)
		f.settle(m.ID, i, err)
		return err
	}
	var unavailable []*UnavailableError
	var err error
	for i, p := range f.ps {
		actx, cancel := attemptContext(ctx, len(f.ps)-i)
		err = p.Send(actx, m)
		cancel()
		if !provenNotSent(err) || ctx.Err() != nil {
			f.settle(m.ID, i, err)
			return err
		}
		if ue, ok := errors.AsType[*UnavailableError](err); ok {
			unavailable = append(unavailable, ue)
		}
		if i+1 < len(f.ps) {
			f.failovers.WithLabelValues(p.Name(), f.ps[i+1].Name()).Inc()
		}
	}
	if len(unavailable) == len(f.ps) && len(f.ps) > 1 {
		return f.allUnavailable(unavailable)
	}
	return err
}

// settle pins m to provider i when err left the send in doubt, and unpins
// it once the provider answered for good.
func (f *Failover) settle(id string, i int, err error) {
	switch {
	case err == nil || errors.Is(err, ErrRejected):
		f.pins.drop(id)
	case errors.Is(err, context.Canceled) || provenNotSent(err):
		// No news about the message: a pin, if any, stays.
	default:
		f.inDoubt.WithLabelValues(f.ps[i].Name()).Inc()
		now := f.cfg.Now()
		f.pins.put(id, i, now, now.Add(f.cfg.InDoubtHold), f.cfg.MaxPinned)
	}
}

// allUnavailable is the error of a send no provider could take: retry after
// the shortest wait any of them asked for.
func (f *Failover) allUnavailable(errs []*UnavailableError) error {
	best := errs[0]
	for _, e := range errs[1:] {
		if e.RetryAfter < best.RetryAfter {
			best = e
		}
	}
	return &UnavailableError{Provider: strings.Join(f.Names(), ","), RetryAfter: best.RetryAfter, Cause: best}
}

// attemptContext bounds one attempt with 1/left of what remains of ctx's
// deadline, if it has one.
func attemptContext(ctx context.Context, left int) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok || left <= 1 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, time.Until(dl)/time.Duration(left))
}

// Describe implements prometheus.Collector.
func (f *Failover) Describe(ch chan<- *prometheus.Desc) {
	f.failovers.Describe(ch)
	f.inDoubt.Describe(ch)
}

// Collect implements prometheus.Collector.
func (f *Failover) Collect(ch chan<- prometheus.Metric) {
	f.failovers.Collect(ch)
	f.inDoubt.Collect(ch)
}

// pins remembers which provider each in-doubt message is pinned to.
type pins struct {
	mu sync.Mutex
	m  map[string]pin
}

type pin struct {
	provider int
	until    time.Time
}

func (p *pins) get(id string, now time.Time) (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pn, ok := p.m[id]
	if ok && now.After(pn.until) {
		delete(p.m, id)
		return 0, false
	}
	return pn.provider, ok
}

func (p *pins) put(id string, provider int, now, until time.Time, limit int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.m[id]; !ok && len(p.m) >= limit {
		p.evict(now, limit)
	}
	p.m[id] = pin{provider: provider, until: until}
}

// evict drops the expired pins, then, if still at limit, the oldest ones
// until there is room.
func (p *pins) evict(now time.Time, limit int) {
	oldest, oldestAt := "", time.Time{}
	for id, pn := range p.m {
		if now.After(pn.until) {
			delete(p.m, id)
			continue
		}
		if oldest == "" || pn.until.Before(oldestAt) {
			oldest, oldestAt = id, pn.until
		}
	}
	if len(p.m) >= limit && oldest != "" {
		delete(p.m, oldest)
	}
}

func (p *pins) drop(id string) {
	p.mu.Lock()
	delete(p.m, id)
	p.mu.Unlock()
}
