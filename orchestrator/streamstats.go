package orchestrator

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/errorlog"
)

// statsStreams are the streams whose storage a worker exports on every
// stats tick: the activations (publishes are refused once it is full) and
// the error log's spill (it grows while Postgres cannot take the error log).
var statsStreams = [...]string{TransactionalStreamName, StreamName, errorlog.SpillStream}

// streamGauges export the storage of statsStreams, read from the server's
// stream info by every worker (dashboards and alerts take max by stream):
// sluice_stream_bytes{stream}, sluice_stream_max_bytes{stream} (0: no
// limit) and sluice_stream_messages{stream}. They come from NATS alone, so
// they keep reporting while Postgres is down.
type streamGauges struct {
	bytes, maxBytes, messages *prometheus.GaugeVec
}

func newStreamGauges(reg prometheus.Registerer) (*streamGauges, error) {
	g := &streamGauges{
		bytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "sluice", Subsystem: "stream", Name: "bytes",
			Help: "Bytes stored in a JetStream stream of sluice.",
		}, []string{"stream"}),
		maxBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "sluice", Subsystem: "stream", Name: "max_bytes",
			Help: "The stream's storage limit in bytes (publishes are refused beyond it); 0 without a limit.",
		}, []string{"stream"}),
		messages: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "sluice", Subsystem: "stream", Name: "messages",
			Help: "Messages stored in a JetStream stream of sluice.",
		}, []string{"stream"}),
	}
	for _, c := range []prometheus.Collector{g.bytes, g.maxBytes, g.messages} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("orchestrator: stream metrics: %w", err)
		}
	}
	return g, nil
}

// update reads each stream's info; a stream that cannot be read (not
// created yet, NATS unreachable) keeps its last values.
func (g *streamGauges) update(ctx context.Context, js jetstream.JetStream) {
	for _, name := range statsStreams {
		s, err := js.Stream(ctx, name)
		if err != nil {
			continue
		}
		info := s.CachedInfo()
		max := info.Config.MaxBytes
		if max < 0 {
			max = 0
		}
		g.bytes.WithLabelValues(name).Set(float64(info.State.Bytes))
		g.maxBytes.WithLabelValues(name).Set(float64(max))
		g.messages.WithLabelValues(name).Set(float64(info.State.Msgs))
	}
}
