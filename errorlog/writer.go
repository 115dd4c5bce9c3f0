package errorlog

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	attemptTimeout = 30 * time.Second // one transaction, COPY included
	backoffBase    = 50 * time.Millisecond
	backoffMax     = 5 * time.Second
)

// stageTable is the per-connection staging table. Its name carries a version so
// that changing its shape never meets an old definition on a pooled connection.
const stageTable = "errorlog_stage_v1"

var stageColumns = []string{"event_id", "event_time", "tenant", "conversation", "lane", "channel", "reason", "detail", "address"}

// createStage runs at the start of every batch transaction: cheap when the table
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
// and adds exactly the inserted rows to error_counts, in one statement. Rows are
// taken in key order so concurrent writers lock them in the same order and do not
// deadlock. It returns how many rows were new.
const mergeStage = `WITH ins AS (
  INSERT INTO error_log (event_id, event_time, tenant, conversation, lane, channel, reason, detail, address)
  SELECT event_id, event_time, tenant, conversation, lane, channel, reason, detail, address
  FROM ` + stageTable + `
  ORDER BY event_id, event_time
  ON CONFLICT DO NOTHING
  RETURNING tenant, conversation, channel, reason
), counted AS (
  INSERT INTO error_counts AS c (tenant, conversation, channel, reason, minute, count)
  SELECT tenant, conversation, channel, reason, date_trunc('minute', now()), count(*)
  FROM ins
  GROUP BY tenant, conversation, channel, reason
  ORDER BY tenant, conversation, channel, reason
  ON CONFLICT (tenant, conversation, channel, reason, minute)
  DO UPDATE SET count = c.count + EXCLUDED.count
)
SELECT count(*) FROM ins`

type eventKey struct {
	id     string
	micros int64
}

// runWriter collects events into batches and writes them until Stop closes the
// buffer; it then writes what is left and returns.
func (l *Log) runWriter() {
	defer close(l.writerDone)
	batch := make([]item, 0, l.cfg.BatchSize)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var due <-chan time.Time
	flush := func() {
		timer.Stop()
		due = nil
		l.flush(batch)
		clear(batch) // drop references to callbacks
		batch = batch[:0]
	}
	for {
		select {
		case it, ok := <-l.ch:
			if !ok {
				flush()
				return
			}
			batch = append(batch, it)
			if len(batch) == 1 {
				timer.Reset(l.cfg.FlushInterval)
				due = timer.C
			}
			if len(batch) >= l.cfg.BatchSize {
				flush()
			}
		case <-due:
			flush()
		}
	}
}

// flush writes one batch and reports the outcome to every callback in it.
func (l *Log) flush(batch []item) {
	if len(batch) == 0 {
		return
	}
	notified := 0
	defer func() {
		if r := recover(); r != nil {
			err := fmt.Errorf("errorlog: writer panic: %v", r)
			l.log.Error("errorlog: writer panic; failing the batch", "panic", r, "stack", string(debug.Stack()))
			l.m.failed.Add(float64(len(batch) - notified))
			for _, it := range batch[notified:] {
				l.notify(it.done, err)
			}
		}
	}()

	l.m.batchRows.Observe(float64(len(batch)))
	rows := l.dedupe(batch)
	written, err := l.write(rows)
	if err == nil {
		l.m.written.Add(float64(written))
		l.m.duplicate.Add(float64(int64(len(batch)) - written))
	} else {
		l.m.failed.Add(float64(len(batch)))
	}
	for i, it := range batch {
		notified = i + 1
		l.notify(it.done, err)
	}
}

// dedupe returns the batch's distinct events by (ID, Time).
func (l *Log) dedupe(batch []item) []Event {
	clear(l.seen)
	rows := l.rows[:0]
	for _, it := range batch {
		k := eventKey{it.ev.ID, it.ev.Time.UnixMicro()}
		if _, dup := l.seen[k]; dup {
			continue
		}
		l.seen[k] = struct{}{}
		rows = append(rows, it.ev)
	}
	l.rows = rows
	return rows
}

// write commits rows, retrying failures with capped exponential backoff and
// jitter until it succeeds or Stop's context ends. A panic is not retried.
func (l *Log) write(rows []Event) (written int64, err error) {
	for attempt := 0; ; attempt++ {
		start := time.Now()
		written, err = l.writeOnce(rows)
		if err == nil {
			l.m.flushDuration.Observe(time.Since(start).Seconds())
			if attempt > 0 {
				l.log.Info("errorlog: batch written after retries", "rows", len(rows), "attempts", attempt+1)
			}
			return written, nil
		}
		l.m.flushErrors.Inc()
		var p *panicError
		if errors.As(err, &p) {
			l.log.Error("errorlog: writer panic; failing the batch", "panic", p.value, "stack", p.stack)
			return 0, err
		}
		if l.writeCtx.Err() != nil {
			return 0, fmt.Errorf("%w: batch not written: %w", ErrStopped, err)
		}
		delay := backoff(attempt)
		l.log.Warn("errorlog: batch write failed; retrying", "rows", len(rows), "attempt", attempt+1, "retry_in", delay, "err", err)
		select {
		case <-time.After(delay):
		case <-l.writeCtx.Done():
			return 0, fmt.Errorf("%w: batch not written: %w", ErrStopped, err)
		}
	}
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

// writeOnce is one attempt: one transaction that stages rows with COPY and merges
// them into error_log and error_counts.
func (l *Log) writeOnce(rows []Event) (written int64, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{value: r, stack: string(debug.Stack())}
		}
	}()
	ctx, cancel := context.WithTimeout(l.writeCtx, attemptTimeout)
	defer cancel()

	tx, err := l.pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx) // no-op after Commit; on a broken connection the pool discards it

	if _, err := tx.Exec(ctx, createStage); err != nil {
		return 0, fmt.Errorf("create staging table: %w", err)
	}
	vals := make([]any, len(stageColumns))
	_, err = tx.CopyFrom(ctx, pgx.Identifier{stageTable}, stageColumns, pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
		ev := &rows[i]
		vals[0], vals[1], vals[2], vals[3], vals[4] = ev.ID, ev.Time, ev.Tenant, ev.Conversation, ev.Lane
		vals[5], vals[6], vals[7], vals[8] = ev.Channel, ev.Reason, ev.Detail, ev.Address
		return vals, nil
	}))
	if err != nil {
		return 0, fmt.Errorf("copy: %w", err)
	}
	if err := tx.QueryRow(ctx, mergeStage).Scan(&written); err != nil {
		return 0, fmt.Errorf("merge: %w", err)
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
	return written, nil
}
