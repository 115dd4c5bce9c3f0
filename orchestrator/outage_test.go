package orchestrator_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/wire"
)

// TestEmailProviderDownOthersFlow takes the email provider down behind its
// circuit breaker: SMS and push conversations keep flowing at full speed,
// email conversations wait (skipped by the bulk lane while the breaker is
// open, never failed), and every email is delivered once it recovers.
func TestEmailProviderDownOthersFlow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var down atomic.Bool
	down.Store(true)
	var emailCalls atomic.Int64
	email := funcProvider(func(ctx context.Context, m *dispatch.Message) error {
		emailCalls.Add(1)
		if down.Load() {
			return errors.New("dial tcp 127.0.0.1:25: connection refused")
		}
		return b.rec.Send(ctx, m)
	})
	guarded, err := dispatch.Guard(email, dispatch.GuardConfig{Name: "smtp", ConsecutiveFailures: 3, OpenTimeout: 500 * time.Millisecond}, b.log, nil)
	if err != nil {
		t.Fatal(err)
	}
	providers := map[dispatch.Channel]dispatch.Provider{dispatch.ChannelEmail: guarded, dispatch.ChannelSMS: b.rec, dispatch.ChannelPush: b.rec}
	b.start(t, b.js, providers, orchestrator.Config{RetryBase: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond})

	const per = 2000
	var acts []*wire.Activation
	for i := range per {
		for _, ch := range channels {
			acts = append(acts, activation(fmt.Sprintf("%s-%d", ch, i), wire.LaneBulk, "acme", "news-"+string(ch), ch, validAddrs[ch](i)))
		}
	}
	b.publish(t, acts)
	waitFor(t, time.Minute, "SMS and push to be delivered while email is down", func() bool {
		return b.rec.Ledger.Conversation("acme", "news-sms") == per && b.rec.Ledger.Conversation("acme", "news-push") == per
	})
	callsWhileDown := emailCalls.Load()
	if got := b.rec.Ledger.Conversation("acme", "news-email"); got != 0 {
		t.Fatalf("%d emails delivered while the provider was down", got)
	}
	down.Store(false)
	waitFor(t, time.Minute, "every email to be delivered after recovery", func() bool {
		return b.rec.Ledger.Conversation("acme", "news-email") == per
	})
	waitFor(t, 30*time.Second, "the stream to empty", func() bool { return b.streamMsgs(t) == 0 })
	if c := b.errorCounts(t); sum(c) != 0 {
		t.Errorf("outage recorded as failures: %v", c)
	}
	if d := b.rec.Ledger.Stats().Duplicates; d != 0 {
		t.Errorf("%d duplicate sends", d)
	}
	t.Logf("email down: %d provider calls reached it for %d queued emails (the breaker and the lane's skip kept the rest away)", callsWhileDown, per)
}
