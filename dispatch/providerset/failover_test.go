package providerset_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/dispatch/email"
	"github.com/sluicehq/sluice/dispatch/providerset"
	"github.com/sluicehq/sluice/dispatch/sink"
	"github.com/sluicehq/sluice/internal/metrictest"
)

// relays starts n plain SMTP sinks and returns them with the email
// configurations that point at them.
func relays(t *testing.T, n int) ([]*sink.SMTPServer, []email.Config) {
	t.Helper()
	var sinks []*sink.SMTPServer
	var cfgs []email.Config
	for range n {
		s, err := sink.StartSMTP(sink.SMTPConfig{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		sinks = append(sinks, s)
		cfgs = append(cfgs, email.Config{Addr: s.Addr(), From: "noreply@example.com", TLS: email.TLSNone, MaxConns: 4})
	}
	return sinks, cfgs
}

func failoverSet(t *testing.T, cfgs []email.Config, open time.Duration) (dispatch.Provider, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	set, err := providerset.New(providerset.Config{
		Email: &cfgs[0], EmailFallbacks: cfgs[1:],
		Breaker: dispatch.GuardConfig{ConsecutiveFailures: 3, OpenTimeout: open},
	}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	return set.Providers()[dispatch.ChannelEmail], reg
}

// TestEmailFailover takes the first relay down (451 to every MAIL FROM)
// in the middle of a run of sends: every message is still delivered at the
// first attempt, by one relay or the other, never by both; once the first
// relay's breaker is open its share goes to the second without calling it,
// and the provider metrics show the shift.
func TestEmailFailover(t *testing.T) {
	t.Parallel()
	sinks, cfgs := relays(t, 2)
	p, reg := failoverSet(t, cfgs, time.Minute)
	const n = 400
	var sent atomic.Int64
	var g errgroup.Group
	g.SetLimit(8)
	for i := range n {
		g.Go(func() error {
			if sent.Add(1) == n/4 {
				sinks[0].SetFaults(sink.Faults{ErrorRate: 1})
			}
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			return p.Send(ctx, &dispatch.Message{ID: fmt.Sprintf("m%d", i), Channel: dispatch.ChannelEmail, To: fmt.Sprintf("u%d@example.com", i)})
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("a send failed despite the second relay: %v", err)
	}
	first, second := sinks[0].Ledger(), sinks[1].Ledger()
	for i := range n {
		id := fmt.Sprintf("m%d", i)
		if c := first.Count(id) + second.Count(id); c != 1 {
			t.Errorf("%s accepted %d times (first %d, second %d), want once", id, c, first.Count(id), second.Count(id))
		}
	}
	s1, s2 := first.Stats(), second.Stats()
	if s1.Unique+s2.Unique != n || s1.Duplicates+s2.Duplicates != 0 || s1.Unique < n/8 || s2.Unique < n/2 {
		t.Errorf("first %+v, second %+v: want %d in all, no duplicates, the first's share before the outage", s1, s2, n)
	}
	value := func(name string, labels map[string]string) float64 {
		v, _ := metrictest.Value(t, reg, name, labels)
		return v
	}
	if d := value("sluice_provider_requests_total", map[string]string{"provider": "smtp", "outcome": "delivered"}); d != float64(s1.Unique) {
		t.Errorf("smtp delivered %v, first ledger %d", d, s1.Unique)
	}
	if d := value("sluice_provider_requests_total", map[string]string{"provider": "smtp_2", "outcome": "delivered"}); d != float64(s2.Unique) {
		t.Errorf("smtp_2 delivered %v, second ledger %d", d, s2.Unique)
	}
	if u := value("sluice_provider_requests_total", map[string]string{"provider": "smtp", "outcome": "unavailable"}); u == 0 {
		t.Error("the first relay's breaker never turned sends away")
	}
	if f := value("sluice_provider_failovers_total", map[string]string{"from": "smtp", "to": "smtp_2"}); f != float64(s2.Unique) {
		t.Errorf("failovers smtp→smtp_2 %v, want %d (every message the second took)", f, s2.Unique)
	}
}

// TestEmailFailoverInDoubt: the first relay takes a message after the final
// dot but never answers, so the send times out in doubt. The message is not
// passed on to the second relay, neither then nor on its retry while the
// first relay is down: it waits for the first, which answers once it
// recovers. A message the first relay refuses outright meanwhile goes to
// the second at once.
func TestEmailFailoverInDoubt(t *testing.T) {
	t.Parallel()
	sinks, cfgs := relays(t, 2)
	p, reg := failoverSet(t, cfgs, 200*time.Millisecond)
	send := func(id string, d time.Duration) error {
		ctx, cancel := context.WithTimeout(t.Context(), d)
		defer cancel()
		return p.Send(ctx, &dispatch.Message{ID: id, Channel: dispatch.ChannelEmail, To: id + "@example.com"})
	}
	sinks[0].SetFaults(sink.Faults{HangAfterData: true})
	err := send("doubt", 600*time.Millisecond)
	if err == nil || errors.Is(err, dispatch.ErrNotSent) || errors.Is(err, dispatch.ErrUnavailable) {
		t.Fatalf("send to a relay that took the message and hung: %v, want a transient error in doubt", err)
	}
	if sinks[0].Ledger().Count("doubt") != 1 || sinks[1].Ledger().Count("doubt") != 0 {
		t.Fatalf("after the in-doubt send: first %d, second %d; want 1 and 0", sinks[0].Ledger().Count("doubt"), sinks[1].Ledger().Count("doubt"))
	}
	// The first relay now refuses everything: a new message fails over, the
	// pinned one does not.
	sinks[0].SetFaults(sink.Faults{ErrorRate: 1})
	if err := send("fresh", 2*time.Second); err != nil || sinks[1].Ledger().Count("fresh") != 1 {
		t.Fatalf("fresh message with the first relay refusing: %v, second has it %d times", err, sinks[1].Ledger().Count("fresh"))
	}
	for range 2 {
		if err := send("doubt", 2*time.Second); err == nil {
			t.Fatal("the pinned message was delivered while its relay refuses everything")
		}
	}
	if sinks[1].Ledger().Count("doubt") != 0 {
		t.Fatal("the in-doubt message was passed on to the second relay")
	}
	// Healed: the pinned message waits out the breaker, then goes to its
	// relay again.
	sinks[0].SetFaults(sink.Faults{})
	deadline := time.Now().Add(5 * time.Second)
	for send("doubt", 2*time.Second) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the pinned message never went out once its relay recovered")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c1, c2 := sinks[0].Ledger().Count("doubt"), sinks[1].Ledger().Count("doubt"); c1 != 2 || c2 != 0 {
		t.Errorf("doubt: first relay %d, second %d; want 2 (same Message-ID, the receiver's duplicate) and 0", c1, c2)
	}
	if v, _ := metrictest.Value(t, reg, "sluice_provider_in_doubt_total", map[string]string{"provider": "smtp"}); v != 1 {
		t.Errorf("sluice_provider_in_doubt_total{provider=smtp} = %v, want 1", v)
	}
}
