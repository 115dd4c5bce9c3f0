package errorlog

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// CountKey identifies one counter of a conversation.
type CountKey struct {
	Channel, Reason string
}

// Querier is what Counts needs: *pgxpool.Pool, *pgx.Conn and pgx.Tx have it.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Counts returns the exact number of distinct events recorded for a
// conversation, per channel and reason, summed over all minutes.
func Counts(ctx context.Context, q Querier, tenant, conversation string) (map[CountKey]int64, error) {
	rows, err := q.Query(ctx, `SELECT channel, reason, sum(count)::bigint FROM error_counts
		WHERE tenant = $1 AND conversation = $2 GROUP BY channel, reason`,
		clean(tenant, maxField), clean(conversation, maxField))
	if err != nil {
		return nil, fmt.Errorf("errorlog: counts: %w", err)
	}
	out := map[CountKey]int64{}
	var (
		k CountKey
		n int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&k.Channel, &k.Reason, &n}, func() error {
		out[k] = n
		return nil
	}); err != nil {
		return nil, fmt.Errorf("errorlog: counts: %w", err)
	}
	return out, nil
}
