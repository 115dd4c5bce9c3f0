package errorlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrInvalidQuery is wrapped by TopErrors' error for a window or limit out
// of range.
var ErrInvalidQuery = errors.New("errorlog: invalid query")

// TopError is one conversation's undeliverable messages over a window.
type TopError struct {
	Tenant       string `json:"tenant"`
	Conversation string `json:"conversation"`
	Total        int64  `json:"total"`
	// Reasons break Total down, most frequent first.
	Reasons []ReasonCount `json:"reasons"`
}

// ReasonCount is how many messages failed for one reason.
type ReasonCount struct {
	Reason string `json:"reason"`
	Count  int64  `json:"count"`
}

// Limits of TopErrors' arguments.
const (
	MaxTopWindow = 31 * 24 * time.Hour
	MaxTopLimit  = 1000
)

// The conversations with the most failures since the start of the minute
// that contains now() - window (the database's clock), and each one's
// failures per reason, summed over channels. The counters are per minute, so
// the window is rounded out to whole minutes.
const topErrorsSQL = `
WITH per_reason AS (
  SELECT tenant, conversation, reason, sum(count)::bigint AS n
  FROM error_counts
  WHERE minute >= date_trunc('minute', now() - $1::interval)
  GROUP BY tenant, conversation, reason
), top AS (
  SELECT tenant, conversation, sum(n)::bigint AS total
  FROM per_reason
  GROUP BY tenant, conversation
  ORDER BY total DESC, tenant, conversation
  LIMIT $2
)
SELECT t.tenant, t.conversation, t.total, r.reason, r.n
FROM top t JOIN per_reason r USING (tenant, conversation)
ORDER BY t.total DESC, t.tenant, t.conversation, r.n DESC, r.reason`

// TopErrors returns the limit conversations with the most undeliverable
// messages over the last window (rounded out to whole minutes), from the
// exact per-minute counters in error_counts, most failures first (ties by
// tenant and conversation), each with its failures per reason. window must be
// positive and at most MaxTopWindow, limit 1 to MaxTopLimit.
func TopErrors(ctx context.Context, q Querier, window time.Duration, limit int) ([]TopError, error) {
	if window <= 0 || window > MaxTopWindow {
		return nil, fmt.Errorf("%w: window %v: want more than 0 and at most %v", ErrInvalidQuery, window, MaxTopWindow)
	}
	if limit < 1 || limit > MaxTopLimit {
		return nil, fmt.Errorf("%w: limit %d: want 1 to %d", ErrInvalidQuery, limit, MaxTopLimit)
	}
	rows, err := q.Query(ctx, topErrorsSQL, window, limit)
	if err != nil {
		return nil, fmt.Errorf("errorlog: top errors: %w", err)
	}
	out := []TopError{}
	var (
		tenant, conversation, reason string
		total, n                     int64
	)
	_, err = pgx.ForEachRow(rows, []any{&tenant, &conversation, &total, &reason, &n}, func() error {
		if len(out) == 0 || out[len(out)-1].Tenant != tenant || out[len(out)-1].Conversation != conversation {
			out = append(out, TopError{Tenant: tenant, Conversation: conversation, Total: total})
		}
		last := &out[len(out)-1]
		last.Reasons = append(last.Reasons, ReasonCount{Reason: reason, Count: n})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("errorlog: top errors: %w", err)
	}
	return out, nil
}
