package control

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/internal/metrictest"
)

// waitGauge polls until the series has the value want.
func waitGauge(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		v, ok := metrictest.Value(t, reg, name, labels)
		if ok && v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v (exists %v), want %v", name, labels, v, ok, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSwitchGauges: the gauges follow the control plane through the same
// watches a process runs, and carry the time of the change, which is what
// the "intake paused for too long" alert reads.
func TestSwitchGauges(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	reg := prometheus.NewRegistry()
	g, err := NewSwitchGauges(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range []string{"email", "sms", "push"} {
		if v, ok := metrictest.Value(t, reg, "sluice_control_channel_disabled", map[string]string{"channel": ch}); !ok || v != 0 {
			t.Fatalf("channel %s: disabled %v (exists %v) before any watch, want 0", ch, v, ok)
		}
	}
	watcher := b.worker(t)
	startWatch(t, func(ctx context.Context, fn func(struct{})) error {
		return watcher.WatchIntake(ctx, g.SetIntake)
	}, make(chan struct{}))
	startWatch(t, func(ctx context.Context, fn func(struct{})) error {
		return watcher.WatchChannels(ctx, g.SetChannel, nil)
	}, make(chan struct{}))
	waitGauge(t, reg, "sluice_control_intake_paused", nil, 0)
	waitGauge(t, reg, "sluice_control_intake_changed_timestamp_seconds", nil, 0)

	before := time.Now()
	if _, err := b.store.ChangeIntake(t.Context(), true, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.ChangeChannel(t.Context(), dispatch.ChannelSMS, true, "test"); err != nil {
		t.Fatal(err)
	}
	waitGauge(t, reg, "sluice_control_intake_paused", nil, 1)
	waitGauge(t, reg, "sluice_control_channel_disabled", map[string]string{"channel": "sms"}, 1)
	for _, s := range []struct {
		name   string
		labels map[string]string
	}{{"sluice_control_intake_changed_timestamp_seconds", nil}, {"sluice_control_channel_changed_timestamp_seconds", map[string]string{"channel": "sms"}}} {
		at, _ := metrictest.Value(t, reg, s.name, s.labels)
		if d := at - float64(before.UnixNano())/1e9; d < -1 || d > 10 {
			t.Errorf("%s = %v, %.1fs from the change", s.name, at, d)
		}
	}
	if v, _ := metrictest.Value(t, reg, "sluice_control_channel_disabled", map[string]string{"channel": "email"}); v != 0 {
		t.Errorf("email disabled = %v, want 0", v)
	}
	if _, err := b.store.ChangeIntake(t.Context(), false, "test"); err != nil {
		t.Fatal(err)
	}
	waitGauge(t, reg, "sluice_control_intake_paused", nil, 0)
}
