package errorlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// partitionLockKey serializes partition creation across processes
// (pg_advisory_xact_lock): 0x736c756963657070, the ASCII bytes of "sluicepp".
const partitionLockKey int64 = 0x736c756963657070

const (
	partitionCheckEvery = time.Hour
	partitionRetryEvery = time.Minute
)

// maintain re-ensures the day partitions hourly (every minute after a failure)
// until Stop.
func (l *Log) maintain() {
	defer close(l.maintDone)
	t := time.NewTimer(partitionCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-l.maintCtx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(l.maintCtx, time.Minute)
		err := l.ensurePartitions(ctx)
		l.forgetSeen(ctx)
		cancel()
		next := partitionCheckEvery
		if err != nil && l.maintCtx.Err() == nil {
			l.log.Warn("errorlog: cannot create day partitions; rows go to error_log_default meanwhile", "err", err, "retry_in", partitionRetryEvery)
			next = partitionRetryEvery
		}
		t.Reset(next)
	}
}

// ensurePartitions creates the UTC day partitions error_log_pYYYYMMDD for
// yesterday, today, tomorrow and the day after.
func (l *Log) ensurePartitions(ctx context.Context) error {
	now := l.now().UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	var errs []error
	for d := -1; d <= 2; d++ {
		from := today.AddDate(0, 0, d)
		if err := l.ensurePartition(ctx, from); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func partitionName(day time.Time) string { return "error_log_p" + day.Format("20060102") }

func (l *Log) ensurePartition(ctx context.Context, from time.Time) error {
	name := partitionName(from)
	var exists bool
	if err := l.pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&exists); err != nil {
		return fmt.Errorf("partition %s: %w", name, err)
	}
	if exists {
		return nil
	}
	to := from.AddDate(0, 0, 1)
	create := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s PARTITION OF error_log FOR VALUES FROM ('%s') TO ('%s')",
		pgx.Identifier{name}.Sanitize(), from.Format(time.RFC3339), to.Format(time.RFC3339))
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		// Creating a partition locks the parent: never queue behind a long
		// transaction while writers queue behind us.
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '5s'"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", partitionLockKey); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, create)
		return err
	})
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		l.log.Info("errorlog: created partition", "partition", name)
		return nil
	case errors.As(err, &pgErr) && pgErr.Code == "23514":
		// error_log_default already holds rows for this day (their Time was
		// outside the window when written). The day stays in the default
		// partition; everything else goes on.
		l.log.Warn("errorlog: rows for this day are already in error_log_default; not creating its partition", "partition", name)
		return nil
	case errors.As(err, &pgErr) && pgErr.Code == "42P17":
		// Another partition (created by hand?) already covers the day.
		return nil
	default:
		return fmt.Errorf("partition %s: %w", name, err)
	}
}

// seenHorizon is how long counted sequences are remembered: far beyond any
// redelivery (AckWait, retries, a worker restart).
const seenHorizon = 24 * time.Hour

// forgetSeen deletes error_seen rows older than seenHorizon: one row per
// written batch, so a few thousand rows, never a mass DELETE of events.
func (l *Log) forgetSeen(ctx context.Context) {
	tag, err := l.pool.Exec(ctx, `DELETE FROM error_seen WHERE recorded_at < now() - $1::interval`, seenHorizon.String())
	if err != nil {
		l.log.Warn("errorlog: cannot forget old counted sequences", "err", err)
		return
	}
	if n := tag.RowsAffected(); n > 0 {
		l.log.Info("errorlog: forgot old counted sequences", "batches", n)
	}
}

// PartitionsAhead returns how many day partitions of error_log exist for
// days after now's (UTC): 2 when the partition maintenance is current
// (tomorrow and the day after), 0 when rows of tomorrow would land in
// error_log_default.
func PartitionsAhead(ctx context.Context, pool *pgxpool.Pool, now time.Time) (int, error) {
	tomorrow := now.UTC().AddDate(0, 0, 1)
	var n int
	err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_inherits i
			JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'error_log'::regclass
			AND c.relname ~ '^error_log_p[0-9]{8}$' AND c.relname >= $1`,
		partitionName(time.Date(tomorrow.Year(), tomorrow.Month(), tomorrow.Day(), 0, 0, 0, 0, time.UTC))).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("errorlog: partitions ahead: %w", err)
	}
	return n, nil
}
