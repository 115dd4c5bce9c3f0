package orchestrator_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/control"
	"github.com/sluicehq/sluice/wire"
)

// TestPurgeCountsWhatNoWorkerHandled: on the bulk stream, which keeps acked
// messages until the reclaim pass removes them, purging a stopped
// conversation counts exactly the messages no worker handled: not the
// delivered ones still in the stream, and, for those waiting for a retry
// when the stop came (Nak'd with a delay), once their retry is due (the
// first purge leaves them, a later one, the sweep's, takes them).
func TestPurgeCountsWhatNoWorkerHandled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	sends := &countingProvider{next: funcProvider(func(ctx context.Context, m *dispatch.Message) error {
		if strings.HasPrefix(m.To, "retry") {
			return errors.New("try again later") // transient: retried with a delay
		}
		time.Sleep(2 * time.Millisecond)
		return nil
	})}
	// Retries due 3s after each try: still waiting when the first purge
	// comes, a second after the stop.
	cfg := orchestrator.Config{SendTimeout: time.Second, RetryBase: 3 * time.Second, RetryMax: 3 * time.Second,
		DiscoverInterval: 50 * time.Millisecond}
	cfg.Bulk.AckWait = 5 * time.Second
	svc := b.start(t, b.js, allChannels(sends), cfg)
	const n, retrying = 3000, 10
	var acts []*wire.Activation
	for i := range n {
		to := fmt.Sprintf("u%d@example.com", i)
		if i < retrying {
			to = fmt.Sprintf("retry%d@example.com", i)
		}
		acts = append(acts, activation(fmt.Sprintf("c-%d", i), wire.LaneBulk, "acme", "c", dispatch.ChannelEmail, to))
	}
	b.publish(t, acts)
	waitFor(t, 20*time.Second, "a part sent", func() bool { return sends.distinct("c-") >= 500 })
	svc.Controls().SetConversation("acme", "c", control.StateStopped)
	time.Sleep(time.Second) // the settle: the sends in flight end
	sent := sends.distinct("c-")

	purged, err := orchestrator.PurgeConversation(ctx, b.js, "acme", "c")
	if err != nil {
		t.Fatal(err)
	}
	if q, err := orchestrator.QueuedConversation(ctx, b.js, "acme", "c"); err != nil || q == 0 {
		t.Fatalf("after the first purge %d queued (%v), want the messages waiting for their retry", q, err)
	}
	waitFor(t, 30*time.Second, "the retries purged by a later purge", func() bool {
		more, err := orchestrator.PurgeConversation(ctx, b.js, "acme", "c")
		if err != nil {
			t.Fatal(err)
		}
		purged += more
		q, err := orchestrator.QueuedConversation(ctx, b.js, "acme", "c")
		return err == nil && q == 0
	})
	if s := sends.distinct("c-"); s != sent {
		t.Fatalf("%d sent after the stop (%d before)", s-sent, sent)
	}
	delivered := sent - retrying // the retrying ones were tried, never delivered
	if int(purged) != n-delivered {
		t.Fatalf("purged %d, want the %d of %d neither delivered (%d) nor otherwise handled", purged, n-delivered, n, delivered)
	}
	var counted int64
	if err := b.db.Pool.QueryRow(ctx, `SELECT coalesce(sum(count), 0)::bigint FROM delivery_counts`).Scan(&counted); err != nil || counted != int64(delivered) {
		t.Fatalf("delivery_counts %d (%v), want %d", counted, err, delivered)
	}
	waitFor(t, 10*time.Second, "the stream reclaimed", func() bool { return b.streamMsgs(t) == 0 })
}
