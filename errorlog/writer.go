package errorlog

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sluicehq/sluice/wire"
	"github.com/sony/gobreaker/v2"
)

const (
	backoffBase = 50 * time.Millisecond
	backoffMax  = 5 * time.Second
	// spillChunk bounds the events and rows of one spill message, well under
	// NATS's default 1 MiB payload.
	spillChunk = 500
)

// countLockKey serializes the counting section of batch writes across the
// fleet (pg_advisory_xact_lock), so two writers never both count the same
// redelivered sequence: 0x736c756963656374, "sluicect".
const countLockKey int64 = 0x736c756963656374

// stageTable is the per-connection staging table. Its name carries a version so
// that changing its shape never meets an old definition on a pooled connection.
const stageTable = "errorlog_stage_v1"

var stageColumns = []string{"event_id", "event_time", "tenant", "conversation", "lane", "channel", "reason", "detail", "address"}

// createStage runs before the COPY of a batch with rows: cheap when the table
// exists, and needed on every new connection. The NOTICE "already exists" is
// silenced.
const createStage = `SET LOCAL client_min_messages = warning;
CREATE TEMP TABLE IF NOT EXISTS ` + stageTable + ` (
  event_id     text        NOT NULL,
  event_time   timestamptz NOT NULL,
  tenant       text        NOT NULL,
  conversation text        NOT NULL,
  lane         text        NOT NULL,
  channel      text        NOT NULL,
  reason       text        NOT NULL,
  detail       text        NOT NULL,
  address      text        NOT NULL
) ON COMMIT DELETE ROWS`

// mergeStage moves the staged rows into error_log, skipping rows already there,
// in key order so concurrent writers do not deadlock. It returns how many rows
// were new.
const mergeStage = `WITH ins AS (
  INSERT INTO error_log (event_id, event_time, tenant, conversation, lane, channel, reason, detail, address)
  SELECT event_id, event_time, tenant, conversation, lane, channel, reason, detail, address
  FROM ` + stageTable + `
  ORDER BY event_id, event_time
  ON CONFLICT DO NOTHING
  RETURNING 1
)
SELECT count(*) FROM ins`

// seenIn returns, for each source of a batch (the arrays $1..$4 hold one
// entry per source: its name, its sequences as a multirange, and their
// span), the part of those sequences that earlier batches counted, as a
// multirange, numbered as the arrays are: per source one GiST scan over the
// error_seen rows that overlap its span, intersected in the server, so that
// a batch of first deliveries reads back '{}'; one query per batch whatever
// its sources (a batch holds the transactional and the bulk stream's).
const seenIn = `SELECT u.i, (SELECT coalesce(range_agg(r), '{}')::text FROM (
  SELECT unnest(e.seqs * u.mr::int8multirange) AS r
  FROM error_seen e
  WHERE e.source = u.src AND e.seqs && int8range(u.lo, u.hi, '[]')
) x)
FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[]) WITH ORDINALITY AS u(src, mr, lo, hi, i)`

// addSeen records the sequences a batch counted, a row per source.
const addSeen = `INSERT INTO error_seen (source, seqs)
SELECT src, mr::int8multirange FROM unnest($1::text[], $2::text[]) AS u(src, mr)`

const addCounts = `INSERT INTO error_counts AS c (tenant, conversation, channel, reason, outcome, minute, count)
SELECT t, cv, ch, r, o, date_trunc('minute', now()), n
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[]) AS u(t, cv, ch, r, o, n)
ORDER BY t, cv, ch, r
ON CONFLICT (tenant, conversation, channel, reason, minute)
DO UPDATE SET count = c.count + EXCLUDED.count`

const addDelivered = `INSERT INTO delivery_counts AS d (tenant, conversation, channel, minute, count)
SELECT t, cv, ch, date_trunc('minute', now()), n
FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[]) AS u(t, cv, ch, n)
ORDER BY t, cv, ch
ON CONFLICT (tenant, conversation, channel, minute)
DO UPDATE SET count = d.count + EXCLUDED.count`

// runWriter writes the pending batch when it fills, or FlushInterval after
// its first event arrived, until Stop; it then writes what is left and
// returns. Events recorded while a write runs wake it again at once.
func (l *Log) runWriter() {
	defer close(l.writerDone)
	linger := time.NewTimer(l.cfg.FlushInterval)
	linger.Stop()
	for {
		select {
		case <-l.kick:
		case <-l.ready:
			linger.Reset(l.cfg.FlushInterval)
			select {
			case <-linger.C:
			case <-l.kick:
				linger.Stop()
			case <-l.closing:
				linger.Stop()
			}
		case <-l.closing:
			l.flush(l.swap())
			return
		}
		b := l.swap()
		l.flush(b)
		l.recycle(b)
	}
}

// flush makes one batch durable and reports the outcome to every callback.
func (l *Log) flush(b *batch) {
	if len(b.events) == 0 {
		return
	}
	l.m.batchRows.Observe(float64(len(b.events)))
	err := l.persist(b)
	if err != nil {
		l.m.failed.Add(float64(len(b.events)))
	}
	for _, e := range b.events {
		l.notify(e.done, err)
	}
}

// persist writes b to Postgres through the breaker or, when that fails or the
// breaker is open, to the spill stream; it retries until one succeeds or
// Stop's context ends.
func (l *Log) persist(b *batch) error {
	var cause error // the last real failure, not a breaker refusal
	for attempt := 0; ; attempt++ {
		written, err := l.breaker.Execute(func() (int64, error) { return l.writeDB(b, l.cfg.Source) })
		if err == nil {
			l.m.written.Add(float64(written))
			l.m.duplicate.Add(float64(len(b.details)) - float64(written))
			return nil
		}
		if cause == nil || !isBreakerRefusal(err) {
			cause = err
		}
		if !isBreakerRefusal(err) {
			l.m.flushErrors.Inc()
			l.log.Warn("errorlog: batch write failed", "events", len(b.events), "rows", len(b.details), "err", err)
		}
		if l.spill != nil {
			serr := l.spill.put(l.writeCtx, b.chunks(l.cfg.Source, spillChunk))
			if serr == nil {
				l.m.spilled.Add(float64(len(b.events)))
				return nil
			}
			l.log.Warn("errorlog: spill failed too; retrying", "events", len(b.events), "err", serr)
		}
		if l.writeCtx.Err() != nil {
			return fmt.Errorf("%w: batch not written: %w", ErrStopped, cause)
		}
		select {
		case <-time.After(backoff(attempt)):
		case <-l.writeCtx.Done():
			return fmt.Errorf("%w: batch not written: %w", ErrStopped, cause)
		}
	}
}

// isBreakerRefusal tells the breaker refusing a call (open, or half-open and
// busy) from a failed write.
func isBreakerRefusal(err error) bool {
	return errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests)
}

// backoff is 50ms doubling per attempt up to 5s, with jitter in [d/2, d].
func backoff(attempt int) time.Duration {
	d := backoffMax
	if attempt < 10 {
		d = min(backoffBase<<attempt, backoffMax)
	}
	return d/2 + rand.N(d/2+1)
}

type panicError struct {
	value any
	stack string
}

func (p *panicError) Error() string { return fmt.Sprintf("errorlog: writer panic: %v", p.value) }

// writeDB is one attempt: one transaction that adds the counters of the
// events not counted before (by stream sequence), records their sequences,
// and merges the detail rows. It returns the number of new rows.
func (l *Log) writeDB(b *batch, source string) (written int64, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{value: r, stack: string(debug.Stack())}
			l.log.Error("errorlog: writer panic; batch goes to the spill", "panic", r, "stack", err.(*panicError).stack)
		}
	}()
	ctx, cancel := context.WithTimeout(l.writeCtx, l.cfg.WriteTimeout)
	defer cancel()
	start := time.Now()

	tx, err := l.pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx) // no-op after Commit; on a broken connection the pool discards it

	// A lock held on error_log (or Postgres stalling) fails the attempt fast,
	// and the batch goes to the spill instead of holding up acks.
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = "+ms(l.cfg.LockTimeout)+"; SET LOCAL statement_timeout = "+ms(l.cfg.WriteTimeout)); err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", countLockKey); err != nil {
		return 0, fmt.Errorf("count lock: %w", err)
	}
	if err := l.count(ctx, tx, b, source); err != nil {
		return 0, err
	}
	if len(b.details) > 0 {
		if written, err = l.merge(ctx, tx, b.details); err != nil {
			return 0, err
		}
	}
	if h := l.hooks.beforeCommit; h != nil {
		if err := h(); err != nil {
			return 0, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	if h := l.hooks.afterCommit; h != nil {
		if err := h(); err != nil {
			return 0, err
		}
	}
	l.m.flushDuration.Observe(time.Since(start).Seconds())
	return written, nil
}

// count adds b's counter deltas, leaving out events whose sequence an earlier
// batch already counted, and records the sequences counted now. Every event
// with a sequence is looked up, first deliveries too: a NATS node whose
// consumer state rolled back redelivers a message as if for the first time,
// so the delivery count cannot say which events may have been counted. The
// lookup is one query per batch (seenIn), not one per event.
func (l *Log) count(ctx context.Context, tx pgx.Tx, b *batch, source string) error {
	deltas := make([]int64, len(b.keys))
	sources, events := b.bySource(source)
	seen, dups, err := lookupSeen(ctx, tx, sources, events)
	if err != nil {
		return err
	}
	var added, ranges []string
	for i, src := range sources {
		if fresh := l.unseen(b.keys, events[src], seen[i], dups[i], deltas); len(fresh) > 0 {
			added, ranges = append(added, src), append(ranges, multirange(fresh))
		}
	}
	if len(added) > 0 {
		if _, err := tx.Exec(ctx, addSeen, added, ranges); err != nil {
			return fmt.Errorf("seen: %w", err)
		}
	}
	var errs, dlv counterRows
	for i, k := range b.keys {
		if deltas[i] == 0 {
			continue
		}
		if k.Outcome == wire.OutcomeDelivered {
			dlv.add(k, deltas[i])
		} else {
			errs.add(k, deltas[i])
		}
	}
	if len(errs.n) > 0 {
		if _, err := tx.Exec(ctx, addCounts, errs.t, errs.cv, errs.ch, errs.r, errs.o, errs.n); err != nil {
			return fmt.Errorf("counts: %w", err)
		}
	}
	if len(dlv.n) > 0 {
		if _, err := tx.Exec(ctx, addDelivered, dlv.t, dlv.cv, dlv.ch, dlv.n); err != nil {
			return fmt.Errorf("delivered counts: %w", err)
		}
	}
	l.m.counted.Add(float64(sum(errs.n) + sum(dlv.n)))
	return nil
}

// unseen adds to deltas the events of one source that no earlier batch
// counted (seen holds those that one did), and returns their sequences.
// dups says whether a sequence occurs twice in events (a redelivery within
// the batch), which only then are told apart by a set.
func (l *Log) unseen(keys []countKey, events []pending, seen rangeSet, dups bool, deltas []int64) []uint64 {
	fresh := make([]uint64, 0, len(events))
	var inBatch map[uint64]struct{}
	if dups {
		inBatch = make(map[uint64]struct{}, len(events))
	}
	for _, e := range events {
		if e.seq != 0 {
			if _, dup := inBatch[e.seq]; dup || seen.has(e.seq) {
				// Counted already (earlier in this batch, or by an earlier
				// one): a redelivery, never a second outcome.
				l.m.recounted.WithLabelValues(string(keys[e.key].Outcome)).Inc()
				continue
			}
			if dups {
				inBatch[e.seq] = struct{}{}
			}
			fresh = append(fresh, e.seq)
		}
		deltas[e.key]++
	}
	return fresh
}

// lookupSeen returns, for each of sources, which of its events' sequences
// earlier batches counted, in one query, and whether one of its sequences
// occurs more than once among its events.
func lookupSeen(ctx context.Context, tx pgx.Tx, sources []string, events map[string][]pending) (out []rangeSet, dups []bool, err error) {
	out, dups = make([]rangeSet, len(sources)), make([]bool, len(sources))
	var src, mrs []string
	var lo, hi []int64
	var at []int // index in sources of each queried source
	for i, s := range sources {
		seqs := make([]uint64, 0, len(events[s]))
		for _, e := range events[s] {
			if e.seq != 0 {
				seqs = append(seqs, e.seq)
			}
		}
		if len(seqs) == 0 {
			continue
		}
		mr := multirange(seqs) // sorts seqs
		dups[i] = repeats(seqs)
		src, mrs = append(src, s), append(mrs, mr)
		lo, hi = append(lo, int64(seqs[0])), append(hi, int64(seqs[len(seqs)-1]))
		at = append(at, i)
	}
	if len(src) == 0 {
		return out, dups, nil
	}
	rows, err := tx.Query(ctx, seenIn, src, mrs, lo, hi)
	if err != nil {
		return nil, nil, fmt.Errorf("seen: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var i int64
		var text string
		if err := rows.Scan(&i, &text); err != nil {
			return nil, nil, fmt.Errorf("seen: %w", err)
		}
		set, err := parseMultirange(text)
		if err != nil {
			return nil, nil, fmt.Errorf("seen: %w", err)
		}
		out[at[i-1]] = set
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("seen: %w", err)
	}
	return out, dups, nil
}

// counterRows are counter deltas as the columns of an unnest.
type counterRows struct {
	t, cv, ch, r, o []string
	n               []int64
}

func (c *counterRows) add(k countKey, n int64) {
	c.t, c.cv, c.ch = append(c.t, k.Tenant), append(c.cv, k.Conversation), append(c.ch, k.Channel)
	c.r, c.o, c.n = append(c.r, k.Reason), append(c.o, string(k.Outcome)), append(c.n, n)
}

// merge writes rows into error_log: by COPY straight into the table when
// none of them is there yet (the common case), else, when the COPY meets a
// row already stored (a redelivery, an id recorded twice in one batch), by
// COPY into a staging table merged with ON CONFLICT DO NOTHING. The direct
// COPY saves the staging table and the merge's sort: about a third of
// Postgres's CPU per row in the 200k load test (BENCHMARKS.md). Writers hold
// the count lock (countLockKey), so two never COPY at once.
func (l *Log) merge(ctx context.Context, tx pgx.Tx, rows []Event) (written int64, err error) {
	if _, err := tx.Exec(ctx, "SAVEPOINT direct_copy"); err != nil {
		return 0, fmt.Errorf("savepoint: %w", err)
	}
	written, err = tx.CopyFrom(ctx, pgx.Identifier{"error_log"}, stageColumns, copyRows(rows))
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		if _, err := tx.Exec(ctx, "RELEASE SAVEPOINT direct_copy"); err != nil {
			return 0, fmt.Errorf("release savepoint: %w", err)
		}
		return written, nil
	case errors.As(err, &pgErr) && pgErr.Code == "23505": // unique_violation
		if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT direct_copy"); err != nil {
			return 0, fmt.Errorf("rollback to savepoint: %w", err)
		}
	default:
		return 0, fmt.Errorf("copy: %w", err)
	}
	if _, err := tx.Exec(ctx, createStage); err != nil {
		return 0, fmt.Errorf("create staging table: %w", err)
	}
	if _, err = tx.CopyFrom(ctx, pgx.Identifier{stageTable}, stageColumns, copyRows(rows)); err != nil {
		return 0, fmt.Errorf("copy: %w", err)
	}
	if err := tx.QueryRow(ctx, mergeStage).Scan(&written); err != nil {
		return 0, fmt.Errorf("merge: %w", err)
	}
	return written, nil
}

// copyRows is rows as the COPY source of stageColumns.
func copyRows(rows []Event) pgx.CopyFromSource {
	vals := make([]any, len(stageColumns))
	return pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
		ev := &rows[i]
		vals[0], vals[1], vals[2], vals[3], vals[4] = ev.ID, ev.Time, ev.Tenant, ev.Conversation, ev.Lane
		vals[5], vals[6], vals[7], vals[8] = ev.Channel, ev.Reason, ev.Detail, ev.Address
		return vals, nil
	})
}

func sum(n []int64) int64 {
	var s int64
	for _, v := range n {
		s += v
	}
	return s
}
