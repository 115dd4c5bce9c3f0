package errorlog

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluicehq/sluice/wire"
)

type metrics struct {
	written, duplicate, sampledOut, spilled, drained, rejected, failed prometheus.Counter
	counted                                                            prometheus.Counter
	dropped, recounted                                                 *prometheus.CounterVec
	mode                                                               *prometheus.GaugeVec
	breakerState                                                       prometheus.Gauge
	flushDuration                                                      prometheus.Histogram
	flushErrors                                                        prometheus.Counter
	batchRows                                                          prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, depth func() float64) (*metrics, error) {
	const ns, sub = "sluice", "errorlog"
	events := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "events_total",
		Help: "Error-log events by outcome: written (new row), duplicate (row already stored), sampled_out (counter only, by mode), dropped (row dropped, buffer full; counter kept), spilled (batch went to the spill stream), drained (spilled event written back), rejected (refused by Record: buffer full, stopped, invalid), failed (not made durable before Stop's deadline).",
	}, []string{"outcome"})
	m := &metrics{
		written:    events.WithLabelValues("written"),
		duplicate:  events.WithLabelValues("duplicate"),
		sampledOut: events.WithLabelValues("sampled_out"),
		spilled:    events.WithLabelValues("spilled"),
		drained:    events.WithLabelValues("drained"),
		rejected:   events.WithLabelValues("rejected"),
		failed:     events.WithLabelValues("failed"),
		counted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "counted_total",
			Help: "Events added to the exact counters in Postgres (redeliveries already counted excluded).",
		}),
		recounted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "recounted_total",
			Help: "Events of messages whose outcome was already counted (a redelivery after a lost ack, a crash or a NATS node's rollback), left out of the counts, by outcome; for delivered, a duplicate send (the same idempotency key sent again).",
		}, []string{"outcome"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "dropped_total",
			Help: "Detail rows dropped, by reason; their counters are kept.",
		}, []string{"reason"}),
		mode: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "mode",
			Help: "1 for the error log's current mode, 0 for the others.",
		}, []string{"mode"}),
		breakerState: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "writer_breaker_state",
			Help: "State of the writer's circuit breaker: 0 closed, 1 half-open, 2 open (batches spill).",
		}),
		flushDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "flush_duration_seconds",
			Help:    "Time to write one batch (one transaction), successful attempts; in mode sync, one event's INSERT and commit.",
			Buckets: prometheus.ExponentialBucketsRange(0.001, 5, 14),
		}),
		flushErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "flush_errors_total",
			Help: "Failed write attempts to Postgres.",
		}),
		batchRows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "batch_events",
			Help:    "Events per batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9), // 1 .. 65536
		}),
	}
	m.dropped.WithLabelValues("buffer_full")
	for _, o := range []wire.Outcome{wire.OutcomeDelivered, wire.OutcomeInvalid, wire.OutcomeFailed, wire.OutcomeSuppressed, wire.OutcomeExpired} {
		m.recounted.WithLabelValues(string(o))
	}
	bufferDepth := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: ns, Subsystem: sub, Name: "buffer_depth",
		Help: "Events waiting for their batch to be written.",
	}, depth)
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{events, m.counted, m.dropped, m.recounted, m.mode, m.breakerState, m.flushDuration, m.flushErrors, m.batchRows, bufferDepth} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("errorlog: register metrics: %w", err)
		}
	}
	return m, nil
}
