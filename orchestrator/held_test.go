package orchestrator_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
	stream := b.stream(t, orchestrator.StreamName)
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

// TestParkedTwiceCountedOnce: a worker killed between publishing a held
// message's parked copy and acknowledging the original gets the original
// back after AckWait, when the copy's Nats-Msg-Id may have left the
// duplicate window, and parks it again: two copies. Both carry the original
// as their origin, so once the conversation resumes each is sent (at least
// once: twice here) and counted once, delivered or invalid. The second copy
// is made here as that second parking would make it, with a fresh
// Nats-Msg-Id.
func TestParkedTwiceCountedOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	stream := b.stream(t, orchestrator.StreamName)
	sends := &countingProvider{next: funcProvider(func(ctx context.Context, m *dispatch.Message) error {
		time.Sleep(20 * time.Millisecond) // messages fetched and waiting when the pause comes
		return nil
	})}
	svc := b.start(t, b.js, allChannels(sends), orchestrator.Config{SendTimeout: time.Second, DiscoverInterval: 50 * time.Millisecond})

	var acts []*wire.Activation
	valid := 0
	for i := range 400 {
		to := fmt.Sprintf("u%d@example.com", i)
		if i%2 == 1 {
			to = "not-an-address"
		} else {
			valid++
		}
		acts = append(acts, activation(fmt.Sprintf("m-%d", i), wire.LaneBulk, "acme", "c", dispatch.ChannelEmail, to))
	}
	b.publish(t, acts)
	waitFor(t, 10*time.Second, "the first sends", func() bool { return sends.distinct("") >= 20 })
	svc.Controls().SetConversation("acme", "c", control.StatePaused)
	time.Sleep(time.Second) // the fetched messages are parked

	// Every parked copy, copied again.
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	again := 0
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil || m.Header.Get(orchestrator.OriginHeader) == "" {
			continue
		}
		hdr := nats.Header{}
		hdr.Set(orchestrator.OriginHeader, m.Header.Get(orchestrator.OriginHeader))
		hdr.Set(jetstream.MsgIDHeader, fmt.Sprintf("parked-again:%d", seq))
		if _, err := b.js.PublishMsg(ctx, &nats.Msg{Subject: m.Subject, Data: m.Data, Header: hdr}); err != nil {
			t.Fatal(err)
		}
		again++
	}
	if again == 0 {
		t.Fatal("no message was parked at the pause: the test did not exercise parking")
	}

	svc.Controls().SetConversation("acme", "c", control.StateActive)
	waitFor(t, 30*time.Second, "every valid message sent", func() bool { return sends.distinct("") == valid })
	waitFor(t, 10*time.Second, "the stream emptied", func() bool { return b.streamMsgs(t) == 0 })
	var delivered int64
	if err := b.db.Pool.QueryRow(ctx, `SELECT coalesce(sum(count), 0)::bigint FROM delivery_counts`).Scan(&delivered); err != nil {
		t.Fatal(err)
	}
	invalid := sum(b.errorCounts(t))
	if delivered != int64(valid) || invalid != int64(len(acts)-valid) {
		t.Errorf("counted %d delivered and %d invalid, want %d and %d (%d parked copies copied again)", delivered, invalid, valid, len(acts)-valid, again)
	}
	twice := 0
	for _, a := range acts {
		if n := sends.count(a.ID); n == 2 {
			twice++
		} else if n > 2 {
			t.Errorf("%s sent %d times", a.ID, n)
		}
	}
	t.Logf("%d parked copies copied again; %d valid messages sent twice", again, twice)
}
