package orchestrator

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/orchestrator/control"
	"github.com/sluicehq/sluice/wire"
)

type metrics struct {
	messages        *prometheus.CounterVec
	processing      *prometheus.HistogramVec
	endToEnd        *prometheus.HistogramVec
	pending         *prometheus.GaugeVec
	ackPending      *prometheus.GaugeVec
	bulkConsumers   prometheus.Gauge
	bulkLimit       prometheus.Gauge
	consumerChanges *prometheus.CounterVec
	reclaimed       *prometheus.CounterVec
	held            *prometheus.CounterVec
	quarantined     prometheus.Counter
	reacks          *prometheus.CounterVec
	completedAgain  *prometheus.CounterVec
}

// HeldChannelDisabled is the reason label of sluice_orchestrator_held_total
// for a message whose channel is disabled; the others are the conversation's
// state (paused, stopped, quarantined).
const HeldChannelDisabled = "channel_disabled"

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sluice", Name: "messages_total",
			Help: "Activations processed, by lane, channel and outcome (delivered, invalid, failed, suppressed, expired, retried, deferred).",
		}, []string{"lane", "channel", "outcome"}),
		processing: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "sluice", Subsystem: "orchestrator", Name: "processing_duration_seconds",
			Help:    "Time a worker spends on one activation, from receipt to its outcome (send included, error-log commit excluded).",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"lane"}),
		endToEnd: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "sluice", Subsystem: "orchestrator", Name: "delivery_latency_seconds",
			Help:    "Time from an activation's enqueue to its delivery to the provider.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
		}, []string{"lane"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "sluice", Subsystem: "consumer", Name: "pending_messages",
			Help: "Messages waiting in the lane's consumers, not yet delivered to a worker.",
		}, []string{"lane"}),
		ackPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "sluice", Subsystem: "consumer", Name: "ack_pending_messages",
			Help: "Messages delivered to workers of the lane and not yet acknowledged.",
		}, []string{"lane"}),
		bulkConsumers: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "sluice", Subsystem: "orchestrator", Name: "bulk_conversations",
			Help: "Conversations with queued bulk messages, each served by its own consumer.",
		}),
		bulkLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "sluice", Subsystem: "orchestrator", Name: "bulk_limit",
			Help: "Bulk messages this worker handles at once now: the bulk workers, fewer while the process is saturated (the bulk lane yields).",
		}),
		consumerChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sluice", Subsystem: "orchestrator", Name: "bulk_consumer_changes_total",
			Help: "Per-conversation bulk consumers created and deleted (their subject emptied).",
		}, []string{"change"}),
		reclaimed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sluice", Subsystem: "orchestrator", Name: "bulk_reclaimed_total",
			Help: "Acked messages this worker's reclaim pass removed from the bulk stream, by how: floor (stream-wide, below every conversation consumer's ack floor), drained (a conversation with nothing left), subject (a conversation's acked messages above a floor held back).",
		}, []string{"how"}),
	}
	m.held = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "sluice", Subsystem: "orchestrator", Name: "held_total",
		Help: "Fetched activations put back unprocessed because their conversation is not active or their channel is disabled, by lane and reason; not an outcome.",
	}, []string{"lane", "reason"})
	m.quarantined = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "sluice", Subsystem: "orchestrator", Name: "quarantines_total",
		Help: "Conversations this worker quarantined automatically because too many of their recent messages had invalid addresses.",
	})
	m.reacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "sluice", Subsystem: "orchestrator", Name: "reacks_total",
		Help: "Acks sent again because those sent while a consumer had no leader may have been lost, by lane and reason (leader_elected: the server announced the consumer's new leader; reconnected: the lane's connection came back).",
	}, []string{"lane", "reason"})
	m.completedAgain = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "sluice", Subsystem: "orchestrator", Name: "redelivered_completed_total",
		Help: "Messages delivered again after this worker had recorded their outcome and acked them (the consumer's new leader never learnt of the ack): acked again, neither sent nor counted a second time.",
	}, []string{"lane"})
	m.zero()
	for _, c := range []prometheus.Collector{m.completedAgain, m.reacks, m.quarantined, m.held, m.messages, m.processing, m.endToEnd, m.pending, m.ackPending, m.bulkConsumers, m.bulkLimit, m.consumerChanges, m.reclaimed} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// zero creates every series of a known label set at 0, so that the first
// scrape of a fresh worker already has them and rate() and alert rules see
// 0 rather than nothing. Channel "unknown" is that of messages whose
// envelope could not be read.
func (m *metrics) zero() {
	outcomes := []wire.Outcome{wire.OutcomeDelivered, wire.OutcomeInvalid, wire.OutcomeFailed, wire.OutcomeSuppressed, wire.OutcomeExpired, wire.OutcomeRetried, wire.OutcomeDeferred}
	channels := []string{string(dispatch.ChannelEmail), string(dispatch.ChannelSMS), string(dispatch.ChannelPush), "unknown"}
	held := []string{string(control.StatePaused), string(control.StateStopped), string(control.StateQuarantined), HeldChannelDisabled}
	for _, lane := range []wire.Lane{wire.LaneTransactional, wire.LaneBulk} {
		l := string(lane)
		for _, ch := range channels {
			for _, o := range outcomes {
				m.messages.WithLabelValues(l, ch, string(o))
			}
		}
		m.processing.WithLabelValues(l)
		m.endToEnd.WithLabelValues(l)
		m.pending.WithLabelValues(l)
		m.ackPending.WithLabelValues(l)
		for _, h := range held {
			m.held.WithLabelValues(l, h)
		}
		m.reacks.WithLabelValues(l, reackLeaderElected)
		m.reacks.WithLabelValues(l, reackReconnected)
		m.completedAgain.WithLabelValues(l)
	}
	for _, c := range []string{"created", "deleted"} {
		m.consumerChanges.WithLabelValues(c)
	}
	for _, how := range []string{"floor", "drained", "subject"} {
		m.reclaimed.WithLabelValues(how)
	}
}
