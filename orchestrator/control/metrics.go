package control

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/dispatch"
)

// SwitchGauges exports the fleet switches an operator can forget to turn
// back: intake paused and channels disabled, with the time of their last
// change, so that an alert can say "paused for more than 30 minutes" from
// the process's own metrics, without asking Postgres. A process feeds it
// from its watches (WatchIntake, WatchChannels): the API role the intake,
// the worker role the channels.
//
// Metrics (subsystem control): sluice_control_intake_paused (1 paused, 0
// running), sluice_control_intake_changed_timestamp_seconds,
// sluice_control_channel_disabled{channel} and
// sluice_control_channel_changed_timestamp_seconds{channel} (every channel at
// 0 from the start). A timestamp is 0 while the setting was never changed.
type SwitchGauges struct {
	intakePaused, intakeChanged     prometheus.Gauge
	channelDisabled, channelChanged *prometheus.GaugeVec
}

// NewSwitchGauges registers the gauges on reg.
func NewSwitchGauges(reg prometheus.Registerer) (*SwitchGauges, error) {
	const ns, sub = "sluice", "control"
	g := &SwitchGauges{
		intakePaused: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "intake_paused",
			Help: "1 while the fleet's intake is paused (the API answers 503), 0 otherwise.",
		}),
		intakeChanged: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "intake_changed_timestamp_seconds",
			Help: "Unix time of the last change of the intake setting; 0 if never changed.",
		}),
		channelDisabled: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "channel_disabled",
			Help: "1 while a channel is disabled for the fleet (its messages wait), 0 otherwise.",
		}, []string{"channel"}),
		channelChanged: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "channel_changed_timestamp_seconds",
			Help: "Unix time of the last change of a channel's setting; 0 if never changed.",
		}, []string{"channel"}),
	}
	for _, ch := range []dispatch.Channel{dispatch.ChannelEmail, dispatch.ChannelSMS, dispatch.ChannelPush} {
		g.channelDisabled.WithLabelValues(string(ch))
		g.channelChanged.WithLabelValues(string(ch))
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{g.intakePaused, g.intakeChanged, g.channelDisabled, g.channelChanged} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("control: register metrics: %w", err)
			}
		}
	}
	return g, nil
}

// SetIntake records the intake setting, as WatchIntake delivers it.
func (g *SwitchGauges) SetIntake(s Setting[IntakeStatus]) {
	g.intakePaused.Set(b2f(s.Value.Paused))
	g.intakeChanged.Set(unixOrZero(s))
}

// SetChannel records a channel's setting, as WatchChannels delivers it.
func (g *SwitchGauges) SetChannel(u ChannelUpdate) {
	g.channelDisabled.WithLabelValues(string(u.Channel)).Set(b2f(u.Value.Disabled))
	g.channelChanged.WithLabelValues(string(u.Channel)).Set(unixOrZero(u.Setting))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// unixOrZero is the setting's change time in Unix seconds, 0 for a default
// value (never set).
func unixOrZero[T any](s Setting[T]) float64 {
	if s.At.IsZero() {
		return 0
	}
	return float64(s.At.UnixNano()) / 1e9
}
