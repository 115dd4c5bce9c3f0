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

// TestRetireTheEarlierStream: a SLUICE_ACTIVATIONS of an earlier release (a
// work queue, here one from before the split of the lanes, holding both
// and the transactional consumer and a conversation consumer) is retired:
// its transactional messages move to SLUICE_TRANSACTIONAL and its bulk ones
// to SLUICE_BULK (same subjects, same Nats-Msg-Id, in order), its
// consumers and then the stream itself are deleted. A second start finds
// nothing to move.
func TestRetireTheEarlierStream(t *testing.T) {
	t.Parallel()
	nc, _ := natstest.Start(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	old, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:      orchestrator.LegacyStreamName,
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
	if _, err := old.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "sluice_bulk_acme_c1",
		FilterSubject: wire.Subject(wire.LaneBulk, "acme", "c1"), AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
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
		if bi.State.Msgs != 20 || fmt.Sprint(bi.Config.Subjects) != "[sluice.act.bulk.*.*]" || bi.Config.Retention != jetstream.LimitsPolicy {
			t.Fatalf("bulk stream: %d messages, subjects %v, retention %v; want the 20 bulk ones, its lane alone, limits", bi.State.Msgs, bi.Config.Subjects, bi.Config.Retention)
		}
		ti, err := streams.Transactional.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ti.State.Msgs != 10 {
			t.Fatalf("transactional stream holds %d, want the 10 moved", ti.State.Msgs)
		}
		if _, err := js.Stream(ctx, orchestrator.LegacyStreamName); err == nil {
			t.Fatal("the earlier stream is still there")
		}
	}
	ts, _ := js.Stream(ctx, orchestrator.TransactionalStreamName)
	bs, _ := js.Stream(ctx, orchestrator.StreamName)
	checkMoved(t, ts, 10, func(seq uint64) string { return fmt.Sprintf("m%d", 3*seq-2) })
	// The bulk ones were m0, m2, m3, m5, m6, ...: two of each three.
	checkMoved(t, bs, 20, func(seq uint64) string { return fmt.Sprintf("m%d", (seq-1)/2*3+map[uint64]uint64{1: 0, 0: 2}[seq%2]) })
}

// checkMoved checks that s holds n messages, the one at each sequence the
// activation want names, under its Nats-Msg-Id.
func checkMoved(t *testing.T, s jetstream.Stream, n uint64, want func(seq uint64) string) {
	t.Helper()
	for seq := uint64(1); seq <= n; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		a, err := wire.Decode(m.Data, 0)
		if w := want(seq); err != nil || a.ID != w || m.Header.Get(jetstream.MsgIDHeader) != w {
			t.Fatalf("%s: moved message %d: %+v %v, id header %q; want %s", s.CachedInfo().Config.Name, seq, a, err, m.Header.Get(jetstream.MsgIDHeader), w)
		}
	}
}
