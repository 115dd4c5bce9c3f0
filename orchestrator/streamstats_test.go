package orchestrator_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/internal/metrictest"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/control"
	"github.com/sluicehq/sluice/wire"
)

// TestStreamGauges: a worker exports the activation stream's storage and
// limit, and the spill stream's, from the server's stream info: what the
// "JetStream storage near its limit" and "spill growing" alerts read.
func TestStreamGauges(t *testing.T) {
	t.Parallel()
	b := setup(t)
	reg := prometheus.NewRegistry()
	svc, err := orchestrator.NewService(b.js, allChannels(b.rec), b.elog, orchestrator.Config{StatsInterval: 50 * time.Millisecond}, b.log, reg)
	if err != nil {
		t.Fatal(err)
	}
	// A paused conversation's messages stay queued, so the stream holds them.
	svc.Controls().SetConversation("t1", "held", control.StatePaused)
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = svc.Stop(ctx)
	})
	var acts []*wire.Activation
	for i := range 200 {
		acts = append(acts, activation(fmt.Sprintf("h%d", i), wire.LaneBulk, "t1", "held", dispatch.ChannelEmail, "a@example.com"))
	}
	b.publish(t, acts)
	value := func(name, stream string) (float64, bool) {
		return metrictest.Value(t, reg, name, map[string]string{"stream": stream})
	}
	// One stats tick sets the activation stream's gauges, then the spill's:
	// wait for both.
	waitFor(t, 10*time.Second, "200 messages in the stream gauge, and the spill's", func() bool {
		v, _ := value("sluice_stream_messages", orchestrator.StreamName)
		_, spill := value("sluice_stream_max_bytes", errorlog.SpillStream)
		return v == 200 && spill
	})
	if v, _ := value("sluice_stream_bytes", orchestrator.StreamName); v < 200*50 {
		t.Errorf("stream bytes %v for 200 messages", v)
	}
	if v, _ := value("sluice_stream_max_bytes", orchestrator.StreamName); v != 8<<30 {
		t.Errorf("stream max bytes %v, want the default 8 GiB", v)
	}
	if v, ok := value("sluice_stream_max_bytes", errorlog.SpillStream); !ok || v != errorlog.SpillMaxBytes {
		t.Errorf("spill stream max bytes %v (exported %v), want %v", v, ok, errorlog.SpillMaxBytes)
	}
	if v, ok := value("sluice_stream_messages", errorlog.SpillStream); !ok || v != 0 {
		t.Errorf("spill stream messages %v (exported %v), want 0", v, ok)
	}
}
