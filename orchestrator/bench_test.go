package orchestrator_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/control"
	"github.com/sluicehq/sluice/suppression"
	"github.com/sluicehq/sluice/wire"
)

// BenchmarkPipeline measures worker throughput end to end: b.N activations
// are queued first, then the timer runs from the start of the workers until
// every message is delivered to the sink (all_valid) or committed to the
// error log (all_invalid). Real JetStream, real Postgres.
func BenchmarkPipeline(b *testing.B) {
	for _, tc := range []struct {
		name string
		to   func(i int) string
	}{
		{"all_valid", func(i int) string { return fmt.Sprintf("user%d@example.com", i) }},
		{"all_invalid", func(i int) string { return fmt.Sprintf("user%d@", i) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			bd := setup(b)
			acts := make([]*wire.Activation, b.N)
			for i := range acts {
				acts[i] = activation(fmt.Sprintf("b-%d", i), wire.LaneBulk, "acme", fmt.Sprintf("c%d", i%4), dispatch.ChannelEmail, tc.to(i))
			}
			bd.publish(b, acts)
			b.ResetTimer()
			start := time.Now()
			bd.start(b, bd.js, allChannels(bd.rec), orchestrator.Config{})
			waitFor(b, 10*time.Minute, "the batch to drain", func() bool { return bd.streamMsgs(b) == 0 })
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
			if got := bd.rec.Ledger.Stats().Unique + int(sum(bd.errorCounts(b))); got != b.N {
				b.Fatalf("accounted %d of %d", got, b.N)
			}
		})
	}
}

// BenchmarkErrorLogModes runs the same all-invalid flood (b.N messages, queued
// first, 8 conversations × 3 reasons) through each error-log mode and reports
// messages per second until every one is counted and acked.
func BenchmarkErrorLogModes(b *testing.B) {
	for _, mode := range []errorlog.Mode{
		{Name: errorlog.ModeFull},
		{Name: errorlog.ModeSample, First: 100, Then: 1000, Window: time.Minute},
		{Name: errorlog.ModeOff},
		{Name: errorlog.ModeSync},
	} {
		b.Run(string(mode.Name), func(b *testing.B) {
			bd := setup(b)
			bd.elog.SetMode(mode)
			acts := make([]*wire.Activation, b.N)
			for i := range acts {
				r := floodReasons[i%len(floodReasons)]
				acts[i] = activation(fmt.Sprintf("m-%d", i), wire.LaneBulk, "acme", fmt.Sprintf("storm-%d", i%8), dispatch.ChannelEmail, r.to)
			}
			bd.publish(b, acts)
			b.ResetTimer()
			start := time.Now()
			bd.start(b, bd.js, allChannels(bd.rec), orchestrator.Config{})
			waitFor(b, 30*time.Minute, "the flood to drain", func() bool { return bd.streamMsgs(b) == 0 })
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
			if got := sum(bd.errorCounts(b)); got != int64(b.N) {
				b.Fatalf("counted %d of %d", got, b.N)
			}
		})
	}
}

// setOnly is a suppression list in memory alone: the pipeline's check
// without the reporting side (nothing is refused in the benchmark).
type setOnly struct{ *suppression.Set }

func (setOnly) Suppress(string, string, wire.Reason) {}

// suppressedSet returns a Set holding n random hashes for tenant acme.
func suppressedSet(tb testing.TB, n int) *suppression.Set {
	tb.Helper()
	h, err := suppression.NewHasher([]byte("bench-mask-key-0123456789"))
	if err != nil {
		tb.Fatal(err)
	}
	s := suppression.NewSet(h)
	sums := make([][]byte, n)
	buf := make([]byte, 8*n)
	for i := range sums {
		sums[i] = buf[8*i : 8*i+8]
		binary.BigEndian.PutUint64(sums[i], rand.Uint64())
	}
	s.AddHashes("acme", sums)
	return s
}

// BenchmarkSuppressionCheck measures what the suppression check costs the
// pipeline: the all_valid run of BenchmarkPipeline (b.N activations queued,
// then timed until all are delivered) without a suppression list, and with
// 1,000,000 suppressed addresses in the tenant's list (none of the
// recipients among them, so every message pays the lookup and is sent).
// Run both in one process and compare msgs/s.
func BenchmarkSuppressionCheck(b *testing.B) {
	big := suppressedSet(b, 1_000_000)
	for _, tc := range []struct {
		name string
		supp orchestrator.Suppressions
	}{
		{"without", nil},
		{"with_1M", setOnly{big}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			bd := setup(b)
			acts := make([]*wire.Activation, b.N)
			for i := range acts {
				acts[i] = activation(fmt.Sprintf("s-%d", i), wire.LaneBulk, "acme", fmt.Sprintf("c%d", i%4), dispatch.ChannelEmail, fmt.Sprintf("user%d@example.com", i))
			}
			bd.publish(b, acts)
			svc, err := orchestrator.NewService(bd.js, allChannels(bd.rec), bd.elog, orchestrator.Config{}, bd.log, prometheus.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			if tc.supp != nil {
				svc.SetSuppressions(tc.supp)
			}
			b.ResetTimer()
			start := time.Now()
			if err := svc.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = svc.Stop(context.Background()) })
			waitFor(b, 10*time.Minute, "the batch to drain", func() bool { return bd.streamMsgs(b) == 0 })
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
			if got := bd.rec.Ledger.Stats().Unique; got != b.N {
				b.Fatalf("delivered %d of %d", got, b.N)
			}
		})
	}
}

// BenchmarkHeldConversations drains b.N bulk messages of 8 live
// conversations alone and beside 56 held (paused) ones holding 100 messages
// each, whose consumers are kept: on the earlier WorkQueue stream the
// server checked every ack against every consumer, and 56 held consumers
// took a third off the live ones' rate; with Limits retention an ack is the
// consumer's business alone. The messages are queued first; the timer runs
// from the workers' start until every live message is delivered.
func BenchmarkHeldConversations(b *testing.B) {
	const perHeld = 100
	for _, tc := range []struct {
		name string
		held int
	}{{"none", 0}, {"held", 56}} {
		held := tc.held
		b.Run(tc.name, func(b *testing.B) {
			bd := setup(b)
			var acts []*wire.Activation
			for c := range held {
				for i := range perHeld {
					acts = append(acts, activation(fmt.Sprintf("h%d-%d", c, i), wire.LaneBulk, "acme", fmt.Sprintf("held%d", c), dispatch.ChannelEmail, "a@example.com"))
				}
			}
			for i := range b.N {
				acts = append(acts, activation(fmt.Sprintf("l-%d", i), wire.LaneBulk, "acme", fmt.Sprintf("live%d", i%8), dispatch.ChannelEmail, fmt.Sprintf("user%d@example.com", i)))
			}
			bd.publish(b, acts)
			svc, err := orchestrator.NewService(bd.js, allChannels(bd.rec), bd.elog, orchestrator.Config{}, bd.log, prometheus.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			for c := range held {
				svc.Controls().SetConversation("acme", fmt.Sprintf("held%d", c), control.StatePaused)
			}
			b.ResetTimer()
			start := time.Now()
			if err := svc.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = svc.Stop(ctx)
			})
			waitFor(b, 10*time.Minute, "the live messages to drain", func() bool { return bd.rec.Ledger.Stats().Unique >= b.N })
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
			if got := bd.rec.Ledger.Stats().Unique; got != b.N {
				b.Fatalf("delivered %d of %d", got, b.N)
			}
		})
	}
}
