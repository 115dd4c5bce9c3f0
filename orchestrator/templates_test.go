package orchestrator_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/wire"
)

func TestConversationsBucketMatchesAPI(t *testing.T) {
	if orchestrator.ConversationsBucket != api.ConversationsBucket {
		t.Fatalf("orchestrator reads %q, api writes %q", orchestrator.ConversationsBucket, api.ConversationsBucket)
	}
}

// TestTemplatesRenderedFromConversation publishes a conversation's template
// the way the API does, then checks that messages are rendered with each
// recipient's variables, and that a message missing a variable is failed as
// template_error rather than sent or retried.
func TestTemplatesRenderedFromConversation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	kv, err := b.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: orchestrator.ConversationsBucket, History: 5})
	if err != nil {
		t.Fatal(err)
	}
	entry := `{"tenant":"acme","id":"spring","channel":"email","lane":"bulk","template_version":1,"state":"active",
		"template":{"subject":"Hi {{.name}}","text":"Spring is here, {{.name}}.","html":"<p>Hi {{.name}}</p>"}}`
	if _, err := kv.PutString(ctx, "acme.spring", entry); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]dispatch.Message{}
	capture := funcProvider(func(ctx context.Context, m *dispatch.Message) error {
		mu.Lock()
		got[m.ID] = *m
		mu.Unlock()
		return b.rec.Send(ctx, m)
	})
	b.start(t, b.js, allChannels(capture), orchestrator.Config{})
	ok := activation("t-ann", wire.LaneBulk, "acme", "spring", dispatch.ChannelEmail, "ann@example.com")
	ok.Vars = map[string]string{"name": "Ann <3"}
	missing := activation("t-nobody", wire.LaneBulk, "acme", "spring", dispatch.ChannelEmail, "nobody@example.com")
	// Published once the watch has had time to see the entry; the message
	// would otherwise go out with the default body, which the test catches.
	waitFor(t, 10*time.Second, "the bucket to be watched", func() bool { return true })
	time.Sleep(300 * time.Millisecond)
	b.publish(t, []*wire.Activation{ok, missing})

	waitFor(t, 30*time.Second, "the rendered message", func() bool { return b.rec.Ledger.Has("t-ann") })
	mu.Lock()
	m := got["t-ann"]
	mu.Unlock()
	if m.Subject != "Hi Ann <3" || m.Body != "Spring is here, Ann <3." || m.HTML != "<p>Hi Ann &lt;3</p>" {
		t.Errorf("rendered subject %q body %q html %q", m.Subject, m.Body, m.HTML)
	}
	waitFor(t, 30*time.Second, "the template failure to be recorded", func() bool {
		return b.errorCounts(t)[string(wire.ReasonTemplate)] == 1
	})
	if b.rec.Ledger.Has("t-nobody") {
		t.Error("a message missing a template variable was sent")
	}
}
