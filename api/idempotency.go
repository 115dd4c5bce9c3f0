package api

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sluicehq/sluice/conversation"
)

// Idempotency-Key handling of activation requests: the activation_requests
// table records, per (tenant, conversation, key), who is publishing the
// request (a lease), how far it got, and the answer once it is done. See the
// package documentation for the guarantees.

const maxIdempotencyKey = 255

// parseIdempotencyKey accepts 1-255 printable ASCII characters, bare or as a
// quoted structured-field string ("..."), as in the IETF Idempotency-Key
// draft.
func parseIdempotencyKey(h string) (string, error) {
	if len(h) >= 2 && h[0] == '"' && h[len(h)-1] == '"' {
		h = h[1 : len(h)-1]
	}
	if h == "" || len(h) > maxIdempotencyKey {
		return "", fmt.Errorf("Idempotency-Key: want 1-%d printable ASCII characters", maxIdempotencyKey)
	}
	for i := 0; i < len(h); i++ {
		if h[i] < 0x20 || h[i] > 0x7e || h[i] == '"' || h[i] == '\\' {
			return "", fmt.Errorf("Idempotency-Key: want 1-%d printable ASCII characters, without quotes or backslashes", maxIdempotencyKey)
		}
	}
	return h, nil
}

// idPrefix is the prefix of the activation ids of a request with an
// Idempotency-Key: "k" and 96 bits of SHA-256 over (tenant, conversation,
// key), so the ids of two requests never collide and the same request always
// gets the same ids.
func idPrefix(tenant, conversation, key string) string {
	h := sha256.New()
	h.Write([]byte("sluice/activation/v1\x00" + tenant + "\x00" + conversation + "\x00" + key))
	return "k" + fmt.Sprintf("%x", h.Sum(nil)[:12])
}

// activationID is the id (and Nats-Msg-Id) of one row: prefix-row, with the
// client's row id appended when it gave one, so it shows in the error log and
// reaches the provider. At most 1+24+1+19+1+64 = 110 bytes.
func activationID(prefix string, row int64, clientID string) string {
	var b strings.Builder
	b.Grow(len(prefix) + 22 + len(clientID))
	b.WriteString(prefix)
	b.WriteByte('-')
	b.WriteString(strconv.FormatInt(row, 10))
	if clientID != "" {
		b.WriteByte('-')
		b.WriteString(clientID)
	}
	return b.String()
}

// chainNext extends the hash chain of the rows of a body by one row:
// chain(n) = SHA-256(chain(n-1) || SHA-256(row n)), chain(0) = 32 zero bytes.
func chainNext(prev [32]byte, rowDigest [32]byte) [32]byte {
	var buf [64]byte
	copy(buf[:32], prev[:])
	copy(buf[32:], rowDigest[:])
	return sha256.Sum256(buf[:])
}

// Request states in activation_requests.
const (
	reqRunning = "running"
	reqFailed  = "failed"
	reqDone    = "done"
)

// claimResult is what a request with an Idempotency-Key finds.
type claimResult struct {
	// state is reqRunning when this request now owns the key (a first attempt
	// or a resumption), reqDone for a completed request to replay, and
	// "busy" when another attempt holds the lease.
	state     string
	rowsDone  int64
	rowsHash  [32]byte
	extras    []int64
	resumed   bool
	response  []byte
	leaseLeft time.Duration
}

const claimBusy = "busy"

// claim takes the key for owner, unless it is done or leased by a live
// attempt.
func (c *Campaigns) claim(ctx context.Context, tenant, conversation, key, owner string) (claimResult, error) {
	lease := c.deps.LeaseDuration.Milliseconds()
	for range 3 {
		var (
			res  claimResult
			hash []byte
		)
		err := c.pool.QueryRow(ctx, `INSERT INTO activation_requests
				(tenant, conversation, idempotency_key, state, owner, lease_until)
			VALUES ($1, $2, $3, 'running', $4, now() + $5 * interval '1 millisecond')
			ON CONFLICT (tenant, conversation, idempotency_key) DO UPDATE
				SET state = 'running', owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until, updated_at = now()
				WHERE activation_requests.state = 'failed'
				   OR (activation_requests.state = 'running' AND activation_requests.lease_until < now())
			RETURNING rows_done, rows_hash, extra_rows, xmax <> 0`,
			tenant, conversation, key, owner, lease).Scan(&res.rowsDone, &hash, &res.extras, &res.resumed)
		if err == nil {
			res.state = reqRunning
			copy(res.rowsHash[:], hash)
			return res, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return claimResult{}, fmt.Errorf("api: claim idempotency key: %w", err)
		}
		var (
			state string
			left  float64
		)
		err = c.pool.QueryRow(ctx, `SELECT state, rows_done, rows_hash, coalesce(response::text, ''),
				greatest(extract(epoch FROM lease_until - now()), 0)
			FROM activation_requests WHERE tenant = $1 AND conversation = $2 AND idempotency_key = $3`,
			tenant, conversation, key).Scan(&state, &res.rowsDone, &hash, &res.response, &left)
		if errors.Is(err, pgx.ErrNoRows) {
			continue // cannot happen without deletes; try again
		}
		if err != nil {
			return claimResult{}, fmt.Errorf("api: read idempotency key: %w", err)
		}
		copy(res.rowsHash[:], hash)
		switch state {
		case reqDone:
			res.state = reqDone
			return res, nil
		case reqRunning:
			if left > 0 {
				res.state = claimBusy
				res.leaseLeft = time.Duration(left * float64(time.Second))
				return res, nil
			}
		}
		// The state changed between the two statements: claim again.
	}
	return claimResult{}, errors.New("api: idempotency key changes state too fast to claim")
}

// errLeaseLost: another attempt took the key over; this one must stop.
var errLeaseLost = errors.New("api: idempotency key taken over by another attempt")

// progressWrite is one write of a request's progress.
type progressWrite struct {
	rowsDone int64
	rowsHash [32]byte
	extras   []int64
	delta    int64  // acknowledged activations not yet in conversations.accepted
	state    string // reqRunning (a checkpoint), reqFailed or reqDone
	response []byte // with reqDone
}

// writeProgress records progress in one transaction: the request's row (when
// keyed; errLeaseLost if owner no longer holds it) and the conversation's
// accepted count.
func (c *Campaigns) writeProgress(ctx context.Context, in *ingest, w progressWrite) error {
	return pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		if in.key != "" {
			extras := w.extras
			if extras == nil {
				extras = []int64{}
			}
			var response any
			if w.response != nil {
				response = string(w.response)
			}
			tag, err := tx.Exec(ctx, `UPDATE activation_requests
				SET rows_done = $5::bigint, rows_hash = $6, extra_rows = $7::bigint[], accepted = $5::bigint + cardinality($7::bigint[]),
					state = $8, response = $9::jsonb, updated_at = now(),
					lease_until = now() + $10 * interval '1 millisecond'
				WHERE tenant = $1 AND conversation = $2 AND idempotency_key = $3 AND owner = $4`,
				in.tenant, in.conv, in.key, in.owner,
				w.rowsDone, w.rowsHash[:], extras, w.state, response, c.deps.LeaseDuration.Milliseconds())
			if err != nil {
				return fmt.Errorf("api: record progress: %w", err)
			}
			if tag.RowsAffected() == 0 {
				return errLeaseLost
			}
		}
		if w.delta != 0 {
			if err := conversation.AddAccepted(ctx, tx, in.tenant, in.conv, w.delta); err != nil {
				return fmt.Errorf("api: %w", err)
			}
		}
		return nil
	})
}

// DefaultIdempotencyRetention is how long an Idempotency-Key is remembered
// by default: long enough for any client's retries, short enough that
// activation_requests stays small.
const DefaultIdempotencyRetention = 7 * 24 * time.Hour

// pruneBatch bounds the rows one DELETE of PruneRequests removes, so that
// pruning never holds long locks or writes a huge transaction.
const pruneBatch = 5000

// PruneRequests forgets the Idempotency-Keys of requests first sent more
// than the retention ago (CampaignDeps.IdempotencyRetention): finished ones
// (done or failed) and running ones whose lease ran out that long ago too (a
// crashed request nobody retried). It deletes in batches until none is left
// or ctx ends and returns how many it deleted. A retry with a forgotten key
// is a new request: its rows get the same ids, but the stream's duplicate
// window (2 minutes) is long past, so they are published again.
func (c *Campaigns) PruneRequests(ctx context.Context) (int64, error) {
	if c.deps.IdempotencyRetention < 0 {
		return 0, nil
	}
	return pruneRequests(ctx, c.pool, time.Now().Add(-c.deps.IdempotencyRetention))
}

func pruneRequests(ctx context.Context, pool *pgxpool.Pool, cutoff time.Time) (int64, error) {
	var total int64
	for {
		tag, err := pool.Exec(ctx, `DELETE FROM activation_requests WHERE ctid = ANY (ARRAY(
			SELECT ctid FROM activation_requests
			WHERE created_at < $1 AND (state <> 'running' OR lease_until < $1)
			LIMIT $2))`, cutoff, pruneBatch)
		if err != nil {
			return total, fmt.Errorf("api: prune activation_requests: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < pruneBatch {
			return total, nil
		}
	}
}

// PruneLoop runs PruneRequests every interval until ctx ends, logging what
// it deleted and any failure (the next round tries again).
func (c *Campaigns) PruneLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := c.PruneRequests(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			c.log.Warn("pruning old Idempotency-Keys failed; retried next round", "deleted", n, "err", err)
		case n > 0:
			c.log.Info("forgot old Idempotency-Keys", "deleted", n, "retention", c.deps.IdempotencyRetention)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
