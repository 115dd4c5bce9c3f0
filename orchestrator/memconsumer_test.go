package orchestrator_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/wire"
)

// TestConversationConsumersInMemory: with ConversationConsumersInMemory the
// bulk lane's conversation consumers keep their state in the server's
// memory. A file-stored consumer left by an earlier configuration is
// replaced, and one that vanishes underneath (a server restart forgets
// memory-stored consumers) is created again. Every queued message is sent,
// each counted once; only the vanished consumer's messages may be sent
// twice (those in flight when it went).
func TestConversationConsumersInMemory(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	stream, err := b.js.Stream(ctx, orchestrator.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	var acts []*wire.Activation
	for i := range 60 {
		conv := []string{"c1", "c2"}[i%2]
		acts = append(acts, activation(fmt.Sprintf("m%d", i), wire.LaneBulk, "acme", conv, dispatch.ChannelEmail, fmt.Sprintf("u%d@example.com", i)))
	}
	b.publish(t, acts)
	c1 := wire.Subject(wire.LaneBulk, "acme", "c1")
	if _, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: orchestrator.BulkConsumerName(c1),
		FilterSubject: c1, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}

	// The first send waits until the consumers have been looked at.
	release := make(chan struct{})
	var mu sync.Mutex
	sent := map[string]int{}
	first := sync.Once{}
	provider := funcProvider(func(ctx context.Context, m *dispatch.Message) error {
		first.Do(func() { <-release })
		mu.Lock()
		sent[m.ID]++
		mu.Unlock()
		return nil
	})
	b.start(t, b.js, allChannels(provider), orchestrator.Config{ConversationConsumersInMemory: true})

	for _, conv := range []string{"c1", "c2"} {
		name := orchestrator.BulkConsumerName(wire.Subject(wire.LaneBulk, "acme", conv))
		waitFor(t, 10*time.Second, conv+"'s consumer kept in memory", func() bool {
			c, err := stream.Consumer(ctx, name)
			return err == nil && c.CachedInfo().Config.MemoryStorage
		})
	}
	// As a restart of the server would: c2's consumer is gone.
	if err := stream.DeleteConsumer(ctx, orchestrator.BulkConsumerName(wire.Subject(wire.LaneBulk, "acme", "c2"))); err != nil {
		t.Fatal(err)
	}
	close(release)

	waitFor(t, 30*time.Second, "every message sent", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(sent) == len(acts)
	})
	waitFor(t, 10*time.Second, "the stream emptied", func() bool { return b.streamMsgs(t) == 0 })
	mu.Lock()
	defer mu.Unlock()
	for i, a := range acts {
		if n := sent[a.ID]; n != 1 && (a.Conversation != "c2" || n != 2) {
			t.Errorf("message %d of %s sent %d times", i, a.Conversation, n)
		}
	}
	waitFor(t, 10*time.Second, "each message counted once", func() bool {
		var n int64
		err := b.db.Pool.QueryRow(ctx, `SELECT coalesce(sum(count), 0)::bigint FROM delivery_counts`).Scan(&n)
		return err == nil && n == int64(len(acts))
	})
}
