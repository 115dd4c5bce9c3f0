package errorlog

import (
	"context"
	"fmt"
	"time"
)

// recordSync is mode sync: the legacy design, one INSERT per event in its own
// transaction before the caller may ack. It blocks the calling worker for a
// round trip and a commit per event; that is the point of keeping it.
// Counters are exact through the row's primary key (a redelivered event
// inserts nothing and adds nothing).
func (l *Log) recordSync(ev Event, done func(error)) {
	if !l.cfg.KeepAddresses {
		ev.Address = clean(l.masker.mask(ev.Address), maxAddress)
	}
	err := l.insertOne(ev)
	if err != nil {
		l.m.flushErrors.Inc()
		l.m.failed.Inc()
	}
	done(err)
}

func (l *Log) insertOne(ev Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("errorlog: sync insert panic: %v", r)
		}
	}()
	ctx, cancel := context.WithTimeout(l.writeCtx, l.cfg.WriteTimeout)
	defer cancel()
	conn, err := l.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("errorlog: sync insert: %w", err)
	}
	defer conn.Release()
	// Timed from the connection on (a wait for one is not Postgres's time),
	// into the flush histogram: in this mode every event is a flush.
	start := time.Now()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("errorlog: sync insert: %w", err)
	}
	defer tx.Rollback(context.Background())
	tag, err := tx.Exec(ctx, `INSERT INTO error_log (event_id, event_time, tenant, conversation, lane, channel, reason, detail, address)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`,
		ev.ID, ev.Time, ev.Tenant, ev.Conversation, ev.Lane, ev.Channel, ev.Reason, ev.Detail, ev.Address)
	if err != nil {
		return fmt.Errorf("errorlog: sync insert: %w", err)
	}
	if tag.RowsAffected() == 1 {
		if _, err := tx.Exec(ctx, addCounts, []string{ev.Tenant}, []string{ev.Conversation}, []string{ev.Channel}, []string{ev.Reason}, []string{string(ev.Outcome)}, []int64{1}); err != nil {
			return fmt.Errorf("errorlog: sync insert: counts: %w", err)
		}
		l.m.counted.Inc()
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("errorlog: sync insert: commit: %w", err)
	}
	l.m.flushDuration.Observe(time.Since(start).Seconds())
	if tag.RowsAffected() == 1 {
		l.m.written.Inc()
	} else {
		l.m.duplicate.Inc()
	}
	return nil
}
