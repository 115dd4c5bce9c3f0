package webhook

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// publisherMetrics are the Publisher's metrics (subsystem webhook).
type publisherMetrics struct {
	published prometheus.Counter
	dropped   *prometheus.CounterVec // reason: queue_full, publish_failed
	queued    prometheus.GaugeFunc
}

func newPublisherMetrics(reg prometheus.Registerer, queueLen func() float64) (*publisherMetrics, error) {
	m := &publisherMetrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "sluice", Subsystem: "webhook",
			Name: "events_published_total", Help: "Delivery-status events stored in the webhook events stream."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "sluice", Subsystem: "webhook",
			Name: "events_dropped_total", Help: "Delivery-status events dropped before the stream: queue_full (the publisher's bounded queue was full; the pipeline never waits for it) or publish_failed."},
			[]string{"reason"}),
		queued: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "sluice", Subsystem: "webhook",
			Name: "events_queued", Help: "Delivery-status events waiting in the publisher's queue."}, queueLen),
	}
	return m, register(reg, m.published, m.dropped, m.queued)
}

// Metrics are the delivery metrics of a process's Dispatcher and
// Replayer; create them once per registry with NewMetrics.
type Metrics struct {
	requests  *prometheus.CounterVec // result: ok, failed
	events    prometheus.Counter
	latency   prometheus.Histogram
	disabled  prometheus.Counter
	endpoints prometheus.Gauge
	replays   *prometheus.CounterVec
}

// NewMetrics registers the delivery metrics on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "sluice", Subsystem: "webhook",
			Name: "requests_total", Help: "Webhook requests sent, by result (ok: 2xx; failed: anything else, retried)."}, []string{"result"}),
		events: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "sluice", Subsystem: "webhook",
			Name: "events_delivered_total", Help: "Events acknowledged by an endpoint (2xx)."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "sluice", Subsystem: "webhook",
			Name: "request_duration_seconds", Help: "Duration of webhook requests.", Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10)}),
		disabled: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "sluice", Subsystem: "webhook",
			Name: "endpoints_disabled_total", Help: "Endpoints disabled after failing continuously for DisableAfter."}),
		endpoints: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "sluice", Subsystem: "webhook",
			Name: "endpoints_owned", Help: "Endpoints this process delivers to (holds the lease of)."}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "sluice", Subsystem: "webhook",
			Name: "replays_total", Help: "Replays by result: done (every event of the range sent), failed (abandoned after retries)."}, []string{"result"}),
	}
	return m, register(reg, m.requests, m.events, m.latency, m.disabled, m.endpoints, m.replays)
}

func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}
