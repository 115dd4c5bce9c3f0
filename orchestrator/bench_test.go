package orchestrator_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/orchestrator"
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
