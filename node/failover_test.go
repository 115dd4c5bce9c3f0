package node_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/dispatch/email"
	"github.com/sluicehq/sluice/dispatch/providerset"
	"github.com/sluicehq/sluice/dispatch/sink"
	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/wire"
)

// TestFailoverMidCampaign: a bulk campaign goes out through two SMTP relays
// (a failover chain); a quarter of the way in, the first relay starts
// refusing every message (451 to MAIL FROM). The campaign completes without
// waiting for it: every message is accepted by exactly one of the two
// sinks (their ledgers, keyed by Message-ID), the conversation's counts are
// exact (accepted = delivered), and the per-provider metrics show the shift.
func TestFailoverMidCampaign(t *testing.T) {
	t.Parallel()
	var sinks [2]*sink.SMTPServer
	var cfgs [2]email.Config
	for i := range sinks {
		s, err := sink.StartSMTP(sink.SMTPConfig{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		sinks[i] = s
		cfgs[i] = email.Config{Addr: s.Addr(), From: "noreply@example.com", TLS: email.TLSNone}
	}
	sinks[0].SetFaults(sink.Faults{Latency: 2 * time.Millisecond})
	set, err := providerset.New(providerset.Config{
		Email: &cfgs[0], EmailFallbacks: cfgs[1:],
		Breaker: dispatch.GuardConfig{ConsecutiveFailures: 5, OpenTimeout: time.Minute},
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	b := setup(t, 0, func(c *node.Config) {
		c.Providers = set.Providers()
		c.Collectors = []prometheus.Collector{set}
	})
	const n = 2000
	b.conversation(t, "news", dispatch.ChannelEmail, wire.LaneBulk)
	b.activate(t, "news", dispatch.ChannelEmail, n, 0)
	waitFor(t, 30*time.Second, "a quarter through the first relay", func() bool { return sinks[0].Ledger().Stats().Unique >= n/4 })
	sinks[0].SetFaults(sink.Faults{ErrorRate: 1})
	waitFor(t, time.Minute, "the campaign to complete", func() bool {
		c := b.counts(t, "news")
		return c.Pending == 0 && c.Delivered == n
	})
	c := b.counts(t, "news")
	if c.Accepted != n || c.Delivered != n || c.Failed != 0 || c.Invalid != 0 {
		t.Errorf("counts %+v, want accepted = delivered = %d", c, n)
	}
	s1, s2 := sinks[0].Ledger().Stats(), sinks[1].Ledger().Stats()
	if s1.Unique+s2.Unique != n || s1.Duplicates+s2.Duplicates != 0 || s2.Unique == 0 {
		t.Errorf("first relay %+v, second %+v: want %d between them, none twice, some on the second", s1, s2, n)
	}
	if a, b2 := sinks[0].Ledger().Conversation("acme", "news"), sinks[1].Ledger().Conversation("acme", "news"); a+b2 != n {
		t.Errorf("per-conversation ledgers %d + %d, want %d", a, b2, n)
	}
	if got := b.metric(t, "sluice_provider_requests_total", `provider="smtp_2"`, `outcome="delivered"`); got != float64(s2.Unique) {
		t.Errorf("smtp_2 delivered %v, its sink %d", got, s2.Unique)
	}
	if got := b.metric(t, "sluice_provider_requests_total", `provider="smtp"`, `outcome="delivered"`); got != float64(s1.Unique) {
		t.Errorf("smtp delivered %v, its sink %d", got, s1.Unique)
	}
	if got := b.metric(t, "sluice_provider_failovers_total", `from="smtp"`, `to="smtp_2"`); got != float64(s2.Unique) {
		t.Errorf("failovers %v, want %d", got, s2.Unique)
	}
}
