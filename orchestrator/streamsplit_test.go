package orchestrator_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/internal/natstest"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/wire"
)

// TestSplitOfTheEarlierStream: a SLUICE_ACTIVATIONS of the release before
// the split, holding both lanes and the transactional consumer, is narrowed
// to the bulk lane; its transactional messages move to SLUICE_TRANSACTIONAL
// (same subjects, same Nats-Msg-Id, in order) and its bulk messages stay.
// A second start finds nothing to move.
func TestSplitOfTheEarlierStream(t *testing.T) {
	t.Parallel()
	nc, _ := natstest.Start(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	old, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:      orchestrator.StreamName,
		Subjects:  []string{wire.Subject(wire.LaneTransactional, "*", "*"), wire.Subject(wire.LaneBulk, "*", "*")},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: orchestrator.TransactionalConsumer,
		FilterSubject: wire.Subject(wire.LaneTransactional, "*", "*"), AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		lane := []wire.Lane{wire.LaneBulk, wire.LaneTransactional, wire.LaneBulk}[i%3]
		a := activation(fmt.Sprintf("m%d", i), lane, "acme", "c1", dispatch.ChannelEmail, "x@example.com")
		data, err := wire.Encode(a)
		if err != nil {
			t.Fatal(err)
		}
		msg := &nats.Msg{Subject: a.Subject(), Data: data, Header: nats.Header{jetstream.MsgIDHeader: []string{a.ID}}}
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}

	for range 2 {
		streams, err := orchestrator.EnsureStreams(ctx, js, orchestrator.StreamConfig{})
		if err != nil {
			t.Fatal(err)
		}
		bi, err := streams.Bulk.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if bi.State.Msgs != 20 || fmt.Sprint(bi.Config.Subjects) != "[sluice.act.bulk.*.*]" {
			t.Fatalf("bulk stream: %d messages, subjects %v; want the 20 bulk ones and its lane alone", bi.State.Msgs, bi.Config.Subjects)
		}
		ti, err := streams.Transactional.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ti.State.Msgs != 10 {
			t.Fatalf("transactional stream holds %d, want the 10 moved", ti.State.Msgs)
		}
		if _, err := js.Consumer(ctx, orchestrator.StreamName, orchestrator.TransactionalConsumer); err == nil {
			t.Fatal("the earlier transactional consumer is still on the bulk stream")
		}
	}
	ts, _ := js.Stream(ctx, orchestrator.TransactionalStreamName)
	for seq := uint64(1); seq <= 10; seq++ {
		m, err := ts.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		a, err := wire.Decode(m.Data, 0)
		if want := fmt.Sprintf("m%d", 3*seq-2); err != nil || a.ID != want || m.Header.Get(jetstream.MsgIDHeader) != want {
			t.Fatalf("moved message %d: %+v %v, id header %q; want %s", seq, a, err, m.Header.Get(jetstream.MsgIDHeader), want)
		}
	}
}
