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

// TestHeldConsumerReleased: a conversation paused while its messages are
// being sent keeps its bulk consumer for ReleaseHeld, then loses it (the
// live conversations' acks no longer pay for it); messages published while
// it is held get no consumer; once it is active again a new consumer takes
// every queued message, and each message is sent once, counted once, the
// sends in flight at the pause included. With two workers, each with its
// own connection and error log as two processes, the one that did not
// delete the consumer finds it gone and takes the new one.
func TestHeldConsumerReleased(t *testing.T) {
	t.Parallel()
	for _, workers := range []int{1, 2} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			t.Parallel()
			testHeldConsumerReleased(t, workers)
		})
	}
}

func testHeldConsumerReleased(t *testing.T, workers int) {
	const releaseHeld = 1500 * time.Millisecond
	b := setup(t)
	ctx := context.Background()
	stream, err := b.js.Stream(ctx, orchestrator.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	sends := &countingProvider{next: funcProvider(func(ctx context.Context, m *dispatch.Message) error {
		if m.Conversation == "big" {
			time.Sleep(20 * time.Millisecond) // sends in flight when the pause comes
		}
		return nil
	})}
	cfg := orchestrator.Config{SendTimeout: time.Second, ReleaseHeld: releaseHeld, DiscoverInterval: 50 * time.Millisecond}
	svcs, regs := startWorkers(t, b, workers, allChannels(sends), cfg)
	setState := func(st control.ConversationState) {
		for _, svc := range svcs {
			svc.Controls().SetConversation("acme", "big", st)
		}
	}

	var acts []*wire.Activation
	add := func(conv string, from, n int) {
		var batch []*wire.Activation
		for i := from; i < from+n; i++ {
			batch = append(batch, activation(fmt.Sprintf("%s-%d", conv, i), wire.LaneBulk, "acme", conv, dispatch.ChannelEmail, fmt.Sprintf("u%d@example.com", i)))
		}
		b.publish(t, batch)
		acts = append(acts, batch...)
	}
	add("big", 0, 2000)
	bigConsumer := orchestrator.BulkConsumerName(wire.Subject(wire.LaneBulk, "acme", "big"))
	exists := func() bool {
		_, err := stream.Consumer(ctx, bigConsumer)
		return err == nil
	}
	waitFor(t, 10*time.Second, "the first sends of big", func() bool { return sends.distinct("big-") >= 50 })
	setState(control.StatePaused)
	paused := time.Now()

	add("live", 0, 200)
	waitFor(t, 20*time.Second, "the live conversation sent", func() bool { return sends.distinct("live-") == 200 })
	waitFor(t, 10*time.Second, "big's consumer released", func() bool { return !exists() })
	if held := time.Since(paused); held < releaseHeld {
		t.Fatalf("big's consumer released %v after the pause, before ReleaseHeld (%v)", held, releaseHeld)
	}
	checkReleasedOnce(t, regs)
	atPause := sends.distinct("big-")
	if atPause == 0 || atPause >= 2000 {
		t.Fatalf("%d of big's 2000 sent before the pause took hold: the test did not pause it mid-send", atPause)
	}
	// Published while held: queued, no consumer made for them.
	add("big", 2000, 100)
	time.Sleep(5 * 50 * time.Millisecond)
	if exists() {
		t.Fatal("a consumer was created for a held conversation")
	}
	if n := sends.distinct("big-"); n != atPause {
		t.Fatalf("big sent %d while held (%d at the release)", n, atPause)
	}

	setState(control.StateActive)
	b.waitDrained(t, sends, acts)
	sends.sentOnce(t, acts, nil)
}

// startWorkers runs n Services on the bundle's server, each with its own
// registry; all but the first with their own connection and error log, as
// separate worker processes would.
func startWorkers(t *testing.T, b *bundle, n int, providers map[dispatch.Channel]dispatch.Provider, cfg orchestrator.Config) ([]*orchestrator.Service, []*prometheus.Registry) {
	t.Helper()
	regs := make([]*prometheus.Registry, n)
	svcs := make([]*orchestrator.Service, n)
	for i := range svcs {
		js, elog := b.js, orchestrator.ErrorLog(b.elog)
		if i > 0 {
			_, js = connect(t, b.url)
			elog = b.newErrorLog(t, js, errorlog.Config{})
		}
		regs[i] = prometheus.NewRegistry()
		svcs[i] = b.startRegistered(t, js, elog, providers, cfg, regs[i])
	}
	return svcs, regs
}

// checkReleasedOnce waits until the workers have counted a released
// consumer, and fails if more than one release per worker was counted.
func checkReleasedOnce(t *testing.T, regs []*prometheus.Registry) {
	t.Helper()
	var released float64
	waitFor(t, 5*time.Second, "the release counted", func() bool {
		released = 0
		for _, reg := range regs {
			v, _ := metrictest.Value(t, reg, "sluice_orchestrator_bulk_consumer_changes_total", map[string]string{"change": "released"})
			released += v
		}
		return released >= 1
	})
	if released > float64(len(regs)) {
		t.Errorf("released consumers counted %v by %d workers, want 1 to %d", released, len(regs), len(regs))
	}
}

// TestHeldConsumerKept: with a negative ReleaseHeld a held conversation
// keeps its consumer, as before ReleaseHeld existed.
func TestHeldConsumerKept(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	svc := b.start(t, b.js, allChannels(b.rec), orchestrator.Config{ReleaseHeld: -1, DiscoverInterval: 50 * time.Millisecond})
	svc.Controls().SetConversation("acme", "held", control.StatePaused)
	var acts []*wire.Activation
	for i := range 20 {
		acts = append(acts, activation(fmt.Sprintf("h%d", i), wire.LaneBulk, "acme", "held", dispatch.ChannelEmail, "a@example.com"))
	}
	b.publish(t, acts)
	stream, err := b.js.Stream(ctx, orchestrator.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	name := orchestrator.BulkConsumerName(wire.Subject(wire.LaneBulk, "acme", "held"))
	waitFor(t, 10*time.Second, "the held conversation's consumer", func() bool {
		_, err := stream.Consumer(ctx, name)
		return err == nil
	})
	time.Sleep(time.Second)
	if _, err := stream.Consumer(ctx, name); err != nil {
		t.Fatalf("the held conversation's consumer is gone with ReleaseHeld < 0: %v", err)
	}
}
