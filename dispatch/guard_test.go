package dispatch_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/wire"
)

// scripted is a provider that returns whatever next says and counts calls.
type scripted struct {
	calls atomic.Int64
	next  func(ctx context.Context) error
}

func (s *scripted) Send(ctx context.Context, _ *dispatch.Message) error {
	s.calls.Add(1)
	return s.next(ctx)
}

func newGuard(t *testing.T, p dispatch.Provider, cfg dispatch.GuardConfig) (*dispatch.Guarded, *prometheus.Registry, *bytes.Buffer) {
	t.Helper()
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	if cfg.Name == "" {
		cfg.Name = "test"
	}
	g, err := dispatch.Guard(p, cfg, slog.New(slog.NewTextHandler(&logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	return g, reg, &logs
}

var msg = &dispatch.Message{ID: "m1", To: "a@example.com"}

func TestGuardClassification(t *testing.T) {
	t.Parallel()
	transient := errors.New("connection reset")
	rejected := &dispatch.RejectedError{Reason: wire.ReasonRecipientRejected}
	for _, tc := range []struct {
		name     string
		err      error
		opens    bool
		outcome  string
		wantSame bool
	}{
		{"rejected is a success", rejected, false, "rejected", true},
		{"canceled is excluded", context.Canceled, false, "canceled", true},
		{"deadline is a failure", context.DeadlineExceeded, true, "failed", true},
		{"transient is a failure", transient, true, "failed", true},
		{"throttle is a failure", &dispatch.UnavailableError{RetryAfter: 3 * time.Second}, true, "unavailable", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &scripted{next: func(context.Context) error { return tc.err }}
			g, reg, _ := newGuard(t, p, dispatch.GuardConfig{ConsecutiveFailures: 3, OpenTimeout: time.Minute})
			for range 3 {
				err := g.Send(t.Context(), msg)
				if tc.wantSame && err != tc.err {
					t.Fatalf("Send returned %v, want the provider's %v unchanged", err, tc.err)
				}
			}
			if g.Open() != tc.opens {
				t.Fatalf("after 3 sends breaker open = %v, want %v", g.Open(), tc.opens)
			}
			if got := series(t, reg, "sluice_provider_requests_total", tc.outcome); got != 3 {
				t.Errorf("requests_total{outcome=%s} = %v, want 3", tc.outcome, got)
			}
		})
	}
}

func TestGuardThrottleKeepsRetryAfterAndNamesProvider(t *testing.T) {
	t.Parallel()
	p := &scripted{next: func(context.Context) error { return &dispatch.UnavailableError{RetryAfter: 7 * time.Second} }}
	g, _, _ := newGuard(t, p, dispatch.GuardConfig{Name: "twilio"})
	err := g.Send(t.Context(), msg)
	ue, ok := errors.AsType[*dispatch.UnavailableError](err)
	if !ok || ue.RetryAfter != 7*time.Second || ue.Provider != "twilio" || !errors.Is(err, dispatch.ErrUnavailable) {
		t.Fatalf("Send = %v, want UnavailableError{twilio, 7s}", err)
	}
}

func TestGuardOpenShortCircuitsAndLogsOncePerTransition(t *testing.T) {
	t.Parallel()
	var fail atomic.Bool
	fail.Store(true)
	p := &scripted{next: func(context.Context) error {
		if fail.Load() {
			return errors.New("503")
		}
		return nil
	}}
	const open = 200 * time.Millisecond
	g, reg, logs := newGuard(t, p, dispatch.GuardConfig{ConsecutiveFailures: 2, OpenTimeout: open, Jitter: -1})
	g.Send(t.Context(), msg)
	g.Send(t.Context(), msg)
	for range 50 {
		err := g.Send(t.Context(), msg)
		ue, ok := errors.AsType[*dispatch.UnavailableError](err)
		if !ok || ue.RetryAfter <= 0 || ue.RetryAfter > open {
			t.Fatalf("Send while open = %v, want UnavailableError with 0 < RetryAfter <= %v", err, open)
		}
	}
	if n := p.calls.Load(); n != 2 {
		t.Fatalf("provider called %d times, want 2: an open breaker must not call it", n)
	}
	if got := series(t, reg, "sluice_breaker_state", ""); got != 2 {
		t.Errorf("sluice_breaker_state = %v, want 2", got)
	}
	fail.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for g.Open() {
		if time.Now().After(deadline) {
			t.Fatal("breaker still open long after its timeout")
		}
		time.Sleep(5 * time.Millisecond) // polling the breaker's own clock
	}
	if err := g.Send(t.Context(), msg); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if g.State() != "closed" {
		t.Fatalf("state %s after a successful probe, want closed", g.State())
	}
	if n := strings.Count(logs.String(), "circuit breaker"); n != 3 {
		t.Errorf("%d breaker log lines for 3 transitions (52 sends), want 3:\n%s", n, logs)
	}
}

func TestGuardHalfOpenLetsOneProbeThrough(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var fail atomic.Bool
	fail.Store(true)
	p := &scripted{next: func(ctx context.Context) error {
		if fail.Load() {
			return errors.New("503")
		}
		<-release
		return nil
	}}
	const open = 100 * time.Millisecond
	g, _, _ := newGuard(t, p, dispatch.GuardConfig{ConsecutiveFailures: 1, OpenTimeout: open})
	g.Send(t.Context(), msg)
	fail.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for g.Open() {
		if time.Now().After(deadline) {
			t.Fatal("breaker still open")
		}
		time.Sleep(5 * time.Millisecond)
	}
	probe := make(chan error, 1)
	go func() { probe <- g.Send(t.Context(), msg) }()
	for p.calls.Load() < 2 {
		time.Sleep(time.Millisecond) // until the probe is in the provider
	}
	err := g.Send(t.Context(), msg)
	ue, ok := errors.AsType[*dispatch.UnavailableError](err)
	if !ok || ue.RetryAfter < open/4 || ue.RetryAfter > open/2+time.Millisecond {
		t.Fatalf("second send while half-open = %v, want UnavailableError with RetryAfter in [%v, %v]", err, open/4, open/2)
	}
	close(release)
	if err := <-probe; err != nil {
		t.Fatal(err)
	}
}

func TestGuardRateLimit(t *testing.T) {
	t.Parallel()
	p := &scripted{next: func(context.Context) error { return nil }}
	g, _, _ := newGuard(t, p, dispatch.GuardConfig{Rate: 1, Burst: 1})
	if err := g.Send(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	// The next token comes in about 1s; a 100ms deadline cannot wait for it.
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	err := g.Send(ctx, msg)
	ue, ok := errors.AsType[*dispatch.UnavailableError](err)
	if !ok || ue.RetryAfter < 500*time.Millisecond || ue.RetryAfter > time.Second {
		t.Fatalf("Send past the rate = %v, want UnavailableError with RetryAfter about 1s", err)
	}
	if g.Open() || p.calls.Load() != 1 {
		t.Fatalf("rate limiting reached the provider (%d calls) or opened the breaker", p.calls.Load())
	}

	fast := &scripted{next: func(context.Context) error { return nil }}
	g2, _, _ := newGuard(t, fast, dispatch.GuardConfig{Rate: 200, Burst: 1})
	start := time.Now()
	for range 21 {
		if err := g2.Send(t.Context(), msg); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Errorf("21 sends at 200/s with burst 1 took %v, want about 100ms", d)
	}
}

func TestGuardConfigValidate(t *testing.T) {
	p := &scripted{next: func(context.Context) error { return nil }}
	for _, cfg := range []dispatch.GuardConfig{
		{},
		{Name: "Bad Name"},
		{Name: "x", FailureRatio: 2},
		{Name: "x", Rate: -1},
		{Name: "x", OpenTimeout: -time.Second},
		{Name: "x", Jitter: 3},
	} {
		if _, err := dispatch.Guard(p, cfg, nil, nil); err == nil {
			t.Errorf("Guard accepted %+v", cfg)
		}
	}
	if _, err := dispatch.Guard(nil, dispatch.GuardConfig{Name: "x"}, nil, nil); err == nil {
		t.Error("Guard accepted a nil provider")
	}
}

func TestGuardsShareARegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := &scripted{next: func(context.Context) error { return nil }}
	for _, name := range []string{"smtp", "twilio"} {
		if _, err := dispatch.Guard(p, dispatch.GuardConfig{Name: name}, nil, reg); err != nil {
			t.Fatalf("guard %s: %v", name, err)
		}
	}
	if _, err := dispatch.Guard(p, dispatch.GuardConfig{Name: "smtp"}, nil, reg); err == nil {
		t.Error("two guards named smtp registered in one registry")
	}
}

// series returns the value of the gauge or counter name in reg, the one
// with the given outcome label if outcome is set.
func series(t *testing.T, reg *prometheus.Registry, name, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			ok := outcome == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					ok = true
				}
			}
			if ok {
				return m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series %s{outcome=%q}", name, outcome)
	return 0
}
