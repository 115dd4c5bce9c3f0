package main

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/webhooktest"
	"github.com/sluicehq/sluice/webhook"
	"github.com/sluicehq/sluice/wire"
)

// TestKill9WebhookEvents: a worker process delivering to a tenant with a
// webhook endpoint is killed with SIGKILL mid-stream and another started.
// The receiver verifies every request's signature and, deduplicating by
// webhook-id as a receiver must, sees every message's event exactly once:
// none lost with the killed process (a message is acked only after its
// event is stored), none stored twice.
func TestKill9WebhookEvents(t *testing.T) {
	n := 6_000
	if testing.Short() {
		n = 3_000
	}
	k := startKillBench(t)
	natsURL, db, smtpSink := k.natsURL, k.db, k.smtp
	ctx := context.Background()
	rec := webhooktest.New(t)
	ep, err := webhook.NewStore(db.Pool, k.nc, true, nil).Create(ctx, "acme", rec.URL, []string{webhook.EventDelivered, webhook.EventInvalid})
	if err != nil {
		t.Fatal(err)
	}
	rec.SetSecret(ep.Secret)
	first := startWorker(t, natsURL, db.URL, smtpSink.Addr())

	wantInvalid := 0
	acts := make([]*wire.Activation, n)
	for i := range n {
		to := fmt.Sprintf("user%d@example.com", i)
		if i%5 == 0 {
			to, wantInvalid = "not-an-address", wantInvalid+1
		}
		acts[i] = &wire.Activation{ID: fmt.Sprintf("w-%d", i), Tenant: "acme", Conversation: "hooks",
			Lane: wire.LaneBulk, Channel: "email", To: to, EnqueuedAt: time.Now().UTC()}
	}
	k.publish(t, acts)
	waitFor(t, 2*time.Minute, "the first worker's events to arrive", func() bool { return rec.Stats().Distinct >= n/5 })
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	atKill := rec.Stats().Distinct
	startWorker(t, natsURL, db.URL, smtpSink.Addr())
	// The endpoint's lease and the killed worker's unacked messages come
	// back after their timeouts (15 s and 30 s).
	waitFor(t, 3*time.Minute, "every message's event", func() bool { return rec.Stats().Distinct >= n })
	time.Sleep(2 * time.Second) // anything sent twice would have arrived by now
	st := rec.Stats()
	if len(st.Bad) > 0 || st.Duplicates > 0 || st.Distinct != n {
		t.Errorf("%d distinct events (want %d), %d under two webhook-ids, %d failed verification: %v", st.Distinct, n, st.Duplicates, len(st.Bad), st.Bad)
	}
	if st.Types[webhook.EventInvalid] != wantInvalid || st.Types[webhook.EventDelivered] != n-wantInvalid {
		t.Errorf("events by type %v, want %d invalid and %d delivered", st.Types, wantInvalid, n-wantInvalid)
	}
	t.Logf("killed with %d of %d events received; after the restart %d distinct, %d webhook-ids retried", atKill, n, st.Distinct, st.Retried)
}
