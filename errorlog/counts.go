package errorlog

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/wire"
)

// Outcomes are a conversation's counted outcomes, as the pipeline decided
// and stored them: each activation counted once, delivered in
// delivery_counts, every other outcome in error_counts with its reason.
type Outcomes struct {
	// Count is the number of activations per outcome.
	Count map[wire.Outcome]int64
	// Reasons splits each outcome but delivered by reason.
	Reasons map[wire.Outcome]map[string]int64
}

func newOutcomes() *Outcomes {
	return &Outcomes{Count: map[wire.Outcome]int64{}, Reasons: map[wire.Outcome]map[string]int64{}}
}

// Querier is what Counts needs: *pgxpool.Pool, *pgx.Conn and pgx.Tx have it.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// countsQuery sums both counter tables by conversation, outcome and reason.
const countsQuery = `SELECT conversation, 'delivered', '', sum(count)::bigint FROM delivery_counts
	WHERE tenant = $1 AND conversation = ANY($2) GROUP BY conversation
UNION ALL
SELECT conversation, outcome, reason, sum(count)::bigint FROM error_counts
	WHERE tenant = $1 AND conversation = ANY($2) GROUP BY conversation, outcome, reason`

// Counts returns the exact outcomes of one conversation, summed over all
// minutes. Pass a REPEATABLE READ transaction to read them with other
// tables from one snapshot.
func Counts(ctx context.Context, q Querier, tenant, conversation string) (Outcomes, error) {
	m, err := CountsOf(ctx, q, tenant, []string{conversation})
	if err != nil {
		return Outcomes{}, err
	}
	if o, ok := m[conversation]; ok {
		return o, nil
	}
	return *newOutcomes(), nil
}

// CountsOf returns the exact outcomes of a tenant's conversations, by
// conversation; a conversation with nothing counted is absent.
func CountsOf(ctx context.Context, q Querier, tenant string, conversations []string) (map[string]Outcomes, error) {
	cleaned := make([]string, len(conversations))
	asked := make(map[string]string, len(conversations)) // stored name -> the caller's
	for i, c := range conversations {
		cleaned[i] = clean(c, maxField)
		asked[cleaned[i]] = c
	}
	rows, err := q.Query(ctx, countsQuery, clean(tenant, maxField), cleaned)
	if err != nil {
		return nil, fmt.Errorf("errorlog: counts: %w", err)
	}
	byConv := map[string]*Outcomes{}
	var (
		conv, outcome, reason string
		n                     int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&conv, &outcome, &reason, &n}, func() error {
		o := byConv[conv]
		if o == nil {
			o = newOutcomes()
			byConv[conv] = o
		}
		oc := wire.Outcome(outcome)
		o.Count[oc] += n
		if oc != wire.OutcomeDelivered {
			if o.Reasons[oc] == nil {
				o.Reasons[oc] = map[string]int64{}
			}
			o.Reasons[oc][reason] += n
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("errorlog: counts: %w", err)
	}
	out := make(map[string]Outcomes, len(byConv))
	for c, o := range byConv {
		out[asked[c]] = *o
	}
	return out, nil
}

// Rows returns how many detail rows error_log holds for a tenant's
// conversations.
func Rows(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, tenant string, conversations []string) (int64, error) {
	var n int64
	if err := q.QueryRow(ctx, `SELECT count(*) FROM error_log WHERE tenant = $1 AND conversation = ANY($2)`, tenant, conversations).Scan(&n); err != nil {
		return 0, fmt.Errorf("errorlog: count rows: %w", err)
	}
	return n, nil
}

// Minute is one minute of a conversation's outcomes.
type Minute struct {
	Minute time.Time
	Count  map[wire.Outcome]int64
}

// minutesQuery sums both counter tables of one conversation by minute and
// outcome, from a minute on.
const minutesQuery = `SELECT minute, 'delivered', sum(count)::bigint FROM delivery_counts
	WHERE tenant = $1 AND conversation = $2 AND minute >= $3 GROUP BY minute
UNION ALL
SELECT minute, outcome, sum(count)::bigint FROM error_counts
	WHERE tenant = $1 AND conversation = $2 AND minute >= $3 GROUP BY minute, outcome
ORDER BY 1`

// Minutes returns a conversation's outcomes per minute since the minute
// that holds since, oldest first; a minute with nothing counted is absent.
func Minutes(ctx context.Context, q Querier, tenant, conversation string, since time.Time) ([]Minute, error) {
	rows, err := q.Query(ctx, minutesQuery, clean(tenant, maxField), clean(conversation, maxField), since.Truncate(time.Minute))
	if err != nil {
		return nil, fmt.Errorf("errorlog: minutes: %w", err)
	}
	var (
		out     []Minute
		minute  time.Time
		outcome string
		n       int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&minute, &outcome, &n}, func() error {
		if len(out) == 0 || !out[len(out)-1].Minute.Equal(minute) {
			out = append(out, Minute{Minute: minute, Count: map[wire.Outcome]int64{}})
		}
		out[len(out)-1].Count[wire.Outcome(outcome)] += n
		return nil
	}); err != nil {
		return nil, fmt.Errorf("errorlog: minutes: %w", err)
	}
	return out, nil
}

// DeliveredSince returns how many of a conversation's messages were
// delivered in the minutes from the one that holds since on.
func DeliveredSince(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, tenant, conversation string, since time.Time) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, `SELECT coalesce(sum(count), 0)::bigint FROM delivery_counts
		WHERE tenant = $1 AND conversation = $2 AND minute >= date_trunc('minute', $3::timestamptz)`,
		clean(tenant, maxField), clean(conversation, maxField), since).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("errorlog: delivered since: %w", err)
	}
	return n, nil
}
