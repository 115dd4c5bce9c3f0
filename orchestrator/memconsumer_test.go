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
	stream := b.stream(t, orchestrator.StreamName)
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
	first := sync.Once{}
	sends := &countingProvider{next: funcProvider(func(ctx context.Context, m *dispatch.Message) error {
		first.Do(func() { <-release })
		return nil
	})}
	b.start(t, b.js, allChannels(sends), orchestrator.Config{ConversationConsumersInMemory: true})

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

	b.waitDrained(t, sends, acts)
	sends.sentOnce(t, acts, func(a *wire.Activation) bool { return a.Conversation == "c2" })
}
