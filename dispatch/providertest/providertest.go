// Package providertest is the conformance suite that every provider runs
// against its local sink, in the manner of watermill's pubsub/tests: one
// [Run] call per provider checks delivery, idempotency keys, permanent
// rejections, a server-error storm that opens the circuit breaker and the
// recovery after it, timeouts, throttling with Retry-After and
// cancellation.
package providertest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/dispatch/sink"
	"github.com/sluicehq/sluice/wire"
)

// Sink is the control surface of a protocol sink.
type Sink interface {
	SetFaults(sink.Faults)
	Ledger() *sink.Ledger
}

// Fixture is one provider wired to a sink of its own.
type Fixture struct {
	// Provider is the raw provider under test (not guarded: the suite
	// guards it where it tests the breaker).
	Provider dispatch.Provider
	Sink     Sink
	Channel  dispatch.Channel
	// Address returns the i-th of many recipients the sink accepts.
	Address func(i int) string
	// Rejected is a recipient the sink refuses for good, and RejectedReason
	// the reason the provider must report for it.
	Rejected       string
	RejectedReason wire.Reason
	// Key maps a message ID to the sink ledger's key. Default: the ID.
	Key func(id string) string
	// ThrottleRetryAfter returns the RetryAfter the provider must report
	// when the sink throttles with Faults.RetryAfter d. Default: d rounded
	// up to whole seconds, as the sink's Retry-After header says.
	ThrottleRetryAfter func(d time.Duration) time.Duration
	// CarriesSubject says whether the protocol carries the subject (email
	// subject, push title); SMS does not.
	CarriesSubject bool
}

// Run runs the suite. setup is called once per subtest and must return a
// provider and a sink that no other subtest uses; it registers its own
// cleanup with t.Cleanup.
func Run(t *testing.T, setup func(t *testing.T) Fixture) {
	tests := []struct {
		name string
		fn   func(t *testing.T, fx Fixture)
	}{
		{"Delivered", testDelivered},
		{"DuplicateKeyVisible", testDuplicate},
		{"RejectedKeepsBreakerClosed", testRejected},
		{"ServerErrorStormOpensBreakerThenRecovers", testStorm},
		{"TimeoutBoundedByDeadline", testTimeout},
		{"ThrottleHonoursRetryAfter", testThrottle},
		{"CanceledIsNeitherSuccessNorFailure", testCanceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := setup(t)
			if fx.Key == nil {
				fx.Key = func(id string) string { return id }
			}
			if fx.ThrottleRetryAfter == nil {
				fx.ThrottleRetryAfter = func(d time.Duration) time.Duration {
					return (d + time.Second - 1) / time.Second * time.Second
				}
			}
			tt.fn(t, fx)
		})
	}
}

func message(t *testing.T, fx Fixture, i int) *dispatch.Message {
	id := fmt.Sprintf("%s-act-%d", strings.ReplaceAll(t.Name(), "/", "."), i)
	return &dispatch.Message{
		ID: id, Tenant: "acme", Conversation: "conv-1", Channel: fx.Channel, To: fx.Address(i),
		Subject: fmt.Sprintf("Hello %d ✓", i), Body: fmt.Sprintf("Your code is %d.\nSee you.", i),
	}
}

func send(t *testing.T, p dispatch.Provider, m *dispatch.Message) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	return p.Send(ctx, m)
}

// guard wraps fx.Provider for the breaker tests: it opens after trip
// consecutive failures and stays open for open.
func guard(t *testing.T, fx Fixture, trip uint32, open time.Duration) (*dispatch.Guarded, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	g, err := dispatch.Guard(fx.Provider, dispatch.GuardConfig{
		Name: "under_test", ConsecutiveFailures: trip, OpenTimeout: open, Jitter: 0.5,
	}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	return g, reg
}

// isTransient reports whether err is a plain transient error.
func isTransient(err error) bool {
	return err != nil && !errors.Is(err, dispatch.ErrRejected) && !errors.Is(err, dispatch.ErrUnavailable) && !errors.Is(err, context.Canceled)
}

func testDelivered(t *testing.T, fx Fixture) {
	m := message(t, fx, 1)
	if err := send(t, fx.Provider, m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	key := fx.Key(m.ID)
	if n := fx.Sink.Ledger().Count(key); n != 1 {
		t.Fatalf("ledger count of key %q = %d, want 1", key, n)
	}
	got, ok := fx.Sink.Ledger().Message(key)
	if !ok {
		t.Fatalf("ledger keeps no copy of %q", key)
	}
	if got.To != m.To {
		t.Errorf("sink saw To %q, want %q", got.To, m.To)
	}
	if got.Body != m.Body {
		t.Errorf("sink saw body %q, want %q", got.Body, m.Body)
	}
	if fx.CarriesSubject && got.Subject != m.Subject {
		t.Errorf("sink saw subject %q, want %q", got.Subject, m.Subject)
	}
	if got.Tenant != "" && (got.Tenant != m.Tenant || got.Conversation != m.Conversation) {
		t.Errorf("sink saw tenant/conversation %q/%q, want %q/%q", got.Tenant, got.Conversation, m.Tenant, m.Conversation)
	}

	// Defaults when the message carries no rendered text.
	d := message(t, fx, 2)
	d.Subject, d.Body, d.Vars = "", "", map[string]string{"code": "42"}
	if err := send(t, fx.Provider, d); err != nil {
		t.Fatalf("Send without text: %v", err)
	}
	if got, _ := fx.Sink.Ledger().Message(fx.Key(d.ID)); got.Body != d.BodyOrDefault() {
		t.Errorf("default body: sink saw %q, want %q", got.Body, d.BodyOrDefault())
	}
}

func testDuplicate(t *testing.T, fx Fixture) {
	m := message(t, fx, 1)
	for range 2 {
		if err := send(t, fx.Provider, m); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	other := message(t, fx, 2)
	if err := send(t, fx.Provider, other); err != nil {
		t.Fatalf("Send: %v", err)
	}
	l := fx.Sink.Ledger()
	if n := l.Count(fx.Key(m.ID)); n != 2 {
		t.Errorf("count of the resent key = %d, want 2", n)
	}
	if st := l.Stats(); st.Unique != 2 || st.Duplicates != 1 {
		t.Errorf("ledger stats = %+v, want 2 unique and 1 duplicate", st)
	}
}

func testRejected(t *testing.T, fx Fixture) {
	g, _ := guard(t, fx, 2, time.Minute)
	for i := range 5 {
		m := message(t, fx, i)
		m.To = fx.Rejected
		err := send(t, g, m)
		var re *dispatch.RejectedError
		if !errors.As(err, &re) {
			t.Fatalf("send %d to the rejected recipient: %v, want a *RejectedError", i, err)
		}
		if re.Reason != fx.RejectedReason {
			t.Errorf("reason = %q, want %q", re.Reason, fx.RejectedReason)
		}
		if strings.Contains(err.Error(), fx.Rejected) {
			t.Errorf("error %q quotes the recipient", err)
		}
	}
	if g.Open() || g.State() != "closed" {
		t.Fatalf("breaker %s after permanent rejections, want closed", g.State())
	}
	if st := fx.Sink.Ledger().Stats(); st.Unique != 0 {
		t.Errorf("the sink accepted %d rejected messages", st.Unique)
	}
	if err := send(t, g, message(t, fx, 100)); err != nil {
		t.Fatalf("good message after rejections: %v", err)
	}
}

func testStorm(t *testing.T, fx Fixture) {
	const openFor = 300 * time.Millisecond
	g, reg := guard(t, fx, 3, openFor)
	fx.Sink.SetFaults(sink.Faults{ErrorRate: 1})

	var pending []*dispatch.Message
	var unavailable *dispatch.UnavailableError
	for i := 0; unavailable == nil; i++ {
		if i == 10 {
			t.Fatal("breaker did not open after 10 consecutive server errors")
		}
		m := message(t, fx, i)
		pending = append(pending, m)
		err := send(t, g, m)
		if errors.As(err, &unavailable) {
			break
		}
		if !isTransient(err) {
			t.Fatalf("send %d during the storm: %v, want a transient error", i, err)
		}
	}
	if len(pending) != 4 {
		t.Errorf("breaker opened at send %d, want the 4th (after 3 failures)", len(pending))
	}
	if !errors.Is(unavailable, dispatch.ErrUnavailable) || unavailable.Provider != "under_test" {
		t.Errorf("unavailable error %v: want Is(ErrUnavailable) and Provider under_test", unavailable)
	}
	if d := unavailable.RetryAfter; d <= 0 || d > openFor+openFor/2+50*time.Millisecond {
		t.Errorf("RetryAfter %v, want in (0, open timeout + jitter]", d)
	}
	if !g.Open() {
		t.Fatal("Open() = false with the breaker open")
	}
	if v := metric(t, reg, "sluice_breaker_state", nil); v != 2 {
		t.Errorf("sluice_breaker_state = %v, want 2 (open)", v)
	}
	if st := fx.Sink.Ledger().Stats(); st.Unique != 0 {
		t.Fatalf("the sink accepted %d messages during the storm", st.Unique)
	}

	// Recovery: the provider heals; once the open timeout passes the
	// breaker lets a probe through and every delayed message is delivered.
	fx.Sink.SetFaults(sink.Faults{})
	waitFor(t, 5*time.Second, func() bool { return !g.Open() })
	for _, m := range pending {
		if err := send(t, g, m); err != nil {
			t.Fatalf("resend of %s after recovery: %v", m.ID, err)
		}
	}
	if g.State() != "closed" {
		t.Errorf("breaker %s after recovery, want closed", g.State())
	}
	for _, m := range pending {
		if n := fx.Sink.Ledger().Count(fx.Key(m.ID)); n != 1 {
			t.Errorf("message %s delivered %d times, want 1", m.ID, n)
		}
	}
	for _, tr := range [][2]string{{"closed", "open"}, {"open", "half_open"}, {"half_open", "closed"}} {
		if v := metric(t, reg, "sluice_breaker_transitions_total", map[string]string{"from": tr[0], "to": tr[1]}); v != 1 {
			t.Errorf("transitions %s->%s = %v, want 1", tr[0], tr[1], v)
		}
	}
	if v := metric(t, reg, "sluice_breaker_state", nil); v != 0 {
		t.Errorf("sluice_breaker_state = %v after recovery, want 0", v)
	}
}

func testTimeout(t *testing.T, fx Fixture) {
	// Warm a connection first, so the hang hits a reused one too.
	if err := send(t, fx.Provider, message(t, fx, 0)); err != nil {
		t.Fatalf("warm-up send: %v", err)
	}
	fx.Sink.SetFaults(sink.Faults{Hang: true})
	const deadline = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	start := time.Now()
	err := fx.Provider.Send(ctx, message(t, fx, 1))
	elapsed := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || !isTransient(err) {
		t.Fatalf("Send to a hanging sink: %v, want a transient error matching context.DeadlineExceeded", err)
	}
	if elapsed > deadline+time.Second {
		t.Errorf("Send returned after %v, want about the %v deadline", elapsed, deadline)
	}
	fx.Sink.SetFaults(sink.Faults{})
	m := message(t, fx, 2)
	if err := send(t, fx.Provider, m); err != nil {
		t.Fatalf("send after the hang ended: %v", err)
	}
	if !fx.Sink.Ledger().Has(fx.Key(m.ID)) {
		t.Errorf("message after the hang not in the ledger")
	}
}

func testThrottle(t *testing.T, fx Fixture) {
	const retry = 7 * time.Second
	want := fx.ThrottleRetryAfter(retry)
	fx.Sink.SetFaults(sink.Faults{RetryAfter: retry})
	err := send(t, fx.Provider, message(t, fx, 0))
	var ue *dispatch.UnavailableError
	if !errors.As(err, &ue) || !errors.Is(err, dispatch.ErrUnavailable) {
		t.Fatalf("Send to a throttling sink: %v, want a *UnavailableError", err)
	}
	if ue.RetryAfter != want {
		t.Errorf("RetryAfter = %v, want %v", ue.RetryAfter, want)
	}

	// Through a guard the throttle keeps its delay, names the provider and
	// counts as a breaker failure.
	g, _ := guard(t, fx, 2, time.Minute)
	for i := 1; i <= 2; i++ {
		err := send(t, g, message(t, fx, i))
		if !errors.As(err, &ue) || ue.RetryAfter != want || ue.Provider != "under_test" {
			t.Fatalf("guarded send %d: %v, want UnavailableError{under_test, %v}", i, err, want)
		}
	}
	if !g.Open() {
		t.Error("two throttled sends did not open a breaker that trips at 2 failures")
	}
}

func testCanceled(t *testing.T, fx Fixture) {
	g, _ := guard(t, fx, 1, time.Minute)
	fx.Sink.SetFaults(sink.Faults{Hang: true})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- g.Send(ctx, message(t, fx, 0)) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled send: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("canceled send did not return")
	}
	if g.Open() {
		t.Error("a canceled send opened a breaker that trips at 1 failure")
	}
	fx.Sink.SetFaults(sink.Faults{})
	if err := send(t, g, message(t, fx, 1)); err != nil {
		t.Fatalf("send after cancellation: %v", err)
	}
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", timeout)
		}
		<-tick.C
	}
}

// metric returns the value of the gauge or counter name with the given
// labels (besides provider) in reg.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if m.Gauge != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
