package orchestrator

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// tally counts delivered messages per (tenant, conversation, channel) in
// memory and adds them to delivery_counts once a second, one statement for
// all keys: never a row or a transaction per message.
//
// It is at-least-once, not exact: a delivery redelivered after a lost ack is
// counted twice, and a worker killed with -9 loses up to a second of counts.
// (The error log's counters are exact; making these exact too means acking
// delivered messages after the count commits, the error log's design.)
type tally struct {
	pool *pgxpool.Pool
	log  *slog.Logger

	mu     sync.Mutex
	counts map[tallyKey]int64
}

type tallyKey struct{ tenant, conversation, channel string }

func newTally(pool *pgxpool.Pool, log *slog.Logger) *tally {
	return &tally{pool: pool, log: log, counts: map[tallyKey]int64{}}
}

func (t *tally) add(tenant, conversation, channel string) {
	t.mu.Lock()
	t.counts[tallyKey{tenant, conversation, channel}]++
	t.mu.Unlock()
}

// run flushes every interval until ctx ends, then once more with final.
func (t *tally) run(ctx, final context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			t.flush(final)
			return
		case <-tick.C:
			t.flush(ctx)
		}
	}
}

func (t *tally) flush(ctx context.Context) {
	t.mu.Lock()
	if len(t.counts) == 0 {
		t.mu.Unlock()
		return
	}
	pending := t.counts
	t.counts = map[tallyKey]int64{}
	t.mu.Unlock()

	var tn, cv, ch []string
	var n []int64
	for k, v := range pending {
		tn, cv, ch, n = append(tn, k.tenant), append(cv, k.conversation), append(ch, k.channel), append(n, v)
	}
	_, err := t.pool.Exec(ctx, `INSERT INTO delivery_counts AS d (tenant, conversation, channel, minute, count)
SELECT t, c, ch, date_trunc('minute', now()), n FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[]) AS u(t, c, ch, n)
ORDER BY t, c, ch
ON CONFLICT (tenant, conversation, channel, minute) DO UPDATE SET count = d.count + EXCLUDED.count`, tn, cv, ch, n)
	if err != nil {
		// Keep the counts for the next flush.
		t.mu.Lock()
		for k, v := range pending {
			t.counts[k] += v
		}
		t.mu.Unlock()
		t.log.Warn("delivered counts not written; retrying with the next flush", "err", err)
	}
}
