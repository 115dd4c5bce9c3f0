package errorlog

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	written, duplicate, rejected, failed prometheus.Counter
	flushDuration                        prometheus.Histogram
	flushErrors                          prometheus.Counter
	batchRows                            prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, depth func() float64) (*metrics, error) {
	const ns, sub = "sluice", "errorlog"
	events := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "events_total",
		Help: "Events passed to Record, by outcome: written (new row), duplicate (already stored), rejected (buffer full, stopped or invalid), failed (accepted but not written).",
	}, []string{"outcome"})
	m := &metrics{
		written:   events.WithLabelValues("written"),
		duplicate: events.WithLabelValues("duplicate"),
		rejected:  events.WithLabelValues("rejected"),
		failed:    events.WithLabelValues("failed"),
		flushDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "flush_duration_seconds",
			Help:    "Time to write one batch (one transaction), successful attempts.",
			Buckets: prometheus.ExponentialBucketsRange(0.001, 5, 14),
		}),
		flushErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "flush_errors_total",
			Help: "Failed batch write attempts; each retry that fails counts.",
		}),
		batchRows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "batch_rows",
			Help:    "Events per batch, before deduplication.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9), // 1 .. 65536
		}),
	}
	bufferDepth := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: ns, Subsystem: sub, Name: "buffer_depth",
		Help: "Events waiting in the buffer to be written.",
	}, depth)
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{events, m.flushDuration, m.flushErrors, m.batchRows, bufferDepth} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("errorlog: register metrics: %w", err)
		}
	}
	return m, nil
}
