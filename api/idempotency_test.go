package api

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"
)

// TestPruneRequests: Idempotency-Keys older than the retention are forgotten
// (finished requests, and running ones whose lease ran out as long ago),
// newer ones and live leases are kept, and a forgotten key is a new request.
func TestPruneRequests(t *testing.T) {
	t.Parallel()
	f := setup(t)
	key := f.key("acme", ScopeSend)
	f.conversation(key, "promo")
	ctx := context.Background()
	for _, k := range []string{"old-done", "recent-done"} {
		if r := f.activate(key, "promo", k, ndjsonRows(1, 3, nil), true); r.status != http.StatusAccepted {
			t.Fatalf("%s: %d %s", k, r.status, r.body)
		}
	}
	old := time.Now().Add(-DefaultIdempotencyRetention - time.Hour)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := f.db.Pool.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`UPDATE activation_requests SET created_at = $1 WHERE idempotency_key = 'old-done'`, old)
	exec(`INSERT INTO activation_requests (tenant, conversation, idempotency_key, state, owner, lease_until, created_at)
		VALUES ('acme', 'promo', 'old-running-live', 'running', 'x', now() + interval '1 minute', $1),
		       ('acme', 'promo', 'old-running-dead', 'running', 'x', $1, $1)`, old)
	// More than one batch of old failed requests.
	exec(`INSERT INTO activation_requests (tenant, conversation, idempotency_key, state, owner, lease_until, created_at)
		SELECT 'acme', 'promo', 'old-failed-' || i, 'failed', 'x', $1, $1 FROM generate_series(1, $2::int) i`, old, pruneBatch+1234)

	n, err := f.c.PruneRequests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(pruneBatch + 1234 + 2); n != want {
		t.Errorf("pruned %d, want %d", n, want)
	}
	rows, err := f.db.Pool.Query(ctx, `SELECT idempotency_key FROM activation_requests ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		left = append(left, k)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"old-running-live", "recent-done"}; !slices.Equal(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
	if n, err := f.c.PruneRequests(ctx); err != nil || n != 0 {
		t.Errorf("second prune: %d, %v", n, err)
	}

	// The forgotten key is a new request; the kept one still replays.
	if r := f.activate(key, "promo", "old-done", ndjsonRows(1, 3, nil), true); r.status != http.StatusAccepted || r.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("forgotten key: %d, replayed %q", r.status, r.header.Get("Idempotent-Replayed"))
	}
	if r := f.activate(key, "promo", "recent-done", ndjsonRows(1, 3, nil), true); r.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("kept key: %d, replayed %q", r.status, r.header.Get("Idempotent-Replayed"))
	}

	// Negative retention: never pruned.
	g := setup(t, func(d *CampaignDeps) { d.IdempotencyRetention = -1 })
	if n, err := g.c.PruneRequests(ctx); err != nil || n != 0 {
		t.Errorf("retention forever: %d, %v", n, err)
	}
}
