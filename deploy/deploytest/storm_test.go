package deploytest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/wire"
)

// connectJS connects to NATS for publishing, closed at the test's end.
func connectJS(t *testing.T, natsURL string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(natsURL, nats.Name("promtest-publisher"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// storm publishes the bulk storm, as fast as the server acknowledges:
// every 20th message of a conversation is valid, the others have an empty
// or malformed address.
func storm(t *testing.T, natsURL string) {
	t.Helper()
	pub := orchestrator.NewPublisher(connectJS(t, natsURL), 0)
	for i := range stormConversations * stormPerConversation {
		conv := fmt.Sprintf("storm-%02d", i%stormConversations)
		to := fmt.Sprintf("user%d@", i)
		switch {
		case i%20 == 0:
			to = fmt.Sprintf("user%d@example.com", i)
		case i%2 == 0:
			to = ""
		}
		a := &wire.Activation{
			ID: fmt.Sprintf("%s-%d", conv, i), Tenant: "promtest", Conversation: conv,
			Lane: wire.LaneBulk, Channel: string(dispatch.ChannelEmail), To: to, EnqueuedAt: time.Now().UTC(),
		}
		if _, err := pub.PublishAsync(a); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := pub.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// trickle publishes valid transactional messages at trickleRate until ctx
// ends: the transactional latency and the providers' request series.
func trickle(ctx context.Context, t *testing.T, natsURL string) {
	pub := orchestrator.NewPublisher(connectJS(t, natsURL), 0)
	tick := time.NewTicker(time.Second / trickleRate)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		a := &wire.Activation{
			ID: fmt.Sprintf("tx-%d", i), Tenant: "promtest", Conversation: "resets",
			Lane: wire.LaneTransactional, Channel: string(dispatch.ChannelEmail),
			To: fmt.Sprintf("reset%d@example.com", i), EnqueuedAt: time.Now().UTC(),
		}
		if err := pub.Publish(ctx, a); err != nil && ctx.Err() == nil {
			t.Errorf("trickle: %v", err)
			return
		}
	}
}
