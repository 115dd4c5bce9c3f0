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

// TestHeldConversation: a conversation paused while its messages are being
// sent keeps its bulk consumer (with the stream's Limits retention it costs
// the live conversations nothing) and nothing more of it is sent; the live
// conversation is served meanwhile; messages published while it is held
// wait; once it is active again every queued message is sent, each once,
// counted once, the sends in flight at the pause included; then the reclaim
// pass empties the stream and discovery deletes the drained consumers. With
// two workers, each with its own connection and error log as two
// processes.
func TestHeldConversation(t *testing.T) {
	t.Parallel()
	for _, workers := range []int{1, 2} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			t.Parallel()
			testHeldConversation(t, workers)
		})
	}
}

func testHeldConversation(t *testing.T, workers int) {
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
	cfg := orchestrator.Config{SendTimeout: time.Second, DiscoverInterval: 50 * time.Millisecond}
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

	add("live", 0, 200)
	waitFor(t, 20*time.Second, "the live conversation sent", func() bool { return sends.distinct("live-") == 200 })
	time.Sleep(time.Second) // the sends in flight at the pause end
	atPause := sends.distinct("big-")
	if atPause == 0 || atPause >= 2000 {
		t.Fatalf("%d of big's 2000 sent before the pause took hold: the test did not pause it mid-send", atPause)
	}
	add("big", 2000, 100) // published while held: queued
	time.Sleep(2 * time.Second)
	if !exists() {
		t.Fatal("the held conversation's consumer is gone")
	}
	if n := sends.distinct("big-"); n != atPause {
		t.Fatalf("big sent %d while held (%d a second after the pause)", n, atPause)
	}

	setState(control.StateActive)
	b.waitDrained(t, sends, acts)
	sends.sentOnce(t, acts, nil)
	waitFor(t, 10*time.Second, "the drained conversations' consumers deleted", func() bool { return !exists() })
	// Every message the stream held went: those published and the copies
	// of those held (parked, the originals acked).
	var reclaimed, parked float64
	for _, reg := range regs {
		for _, how := range []string{"floor", "drained", "subject"} {
			v, _ := metrictest.Value(t, reg, "sluice_orchestrator_bulk_reclaimed_total", map[string]string{"how": how})
			reclaimed += v
		}
		v, _ := metrictest.Value(t, reg, "sluice_orchestrator_held_total", map[string]string{"lane": "bulk", "reason": "paused"})
		parked += v
	}
	if parked == 0 || reclaimed != float64(len(acts))+parked {
		t.Errorf("the reclaim passes counted %v messages removed, want the %d published and the %v parked", reclaimed, len(acts), parked)
	}
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
