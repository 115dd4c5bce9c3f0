// Package conversation owns the conversations table: a conversation's
// definition (name, channel, lane, template), its state as mirrored from the
// control plane, and the two counts that are not a worker's outcomes:
// accepted (added by the API as the stream stores activations) and purged
// (added by a stop). Every other package reads and writes the table through
// these functions; none has SQL of its own on it.
//
// The workers never read the table: the API publishes each conversation to
// the NATS KV bucket sluice_conversations and they cache that; the live
// state is the control plane's (orchestrator/control), mirrored here for
// listing and reporting.
package conversation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// States a conversation's row mirrors (the control plane's values).
const (
	StateActive      = "active"
	StatePaused      = "paused"
	StateQuarantined = "quarantined"
	StateStopped     = "stopped"
)

// ErrNotFound is returned for a conversation that does not exist in the
// tenant.
var ErrNotFound = errors.New("conversation: not found")

// Querier is what the readers and Insert need, Execer what the updates
// need: *pgxpool.Pool, *pgx.Conn and pgx.Tx have both.
type (
	Querier interface {
		QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	}
	Execer interface {
		Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	}
)

// Template is a conversation's message template, stored as JSON.
type Template struct {
	Subject string `json:"subject,omitempty"`
	Text    string `json:"text,omitempty"`
	HTML    string `json:"html,omitempty"`
}

// Row is a conversation as stored.
type Row struct {
	Tenant, ID, Name, Channel, Lane string
	Template                        Template
	TemplateVersion                 int
	State                           string
	// TTLSeconds is the default time-to-live of the conversation's
	// messages (0: none): the API stamps each activation without its own
	// expires_at with its acceptance time plus TTLSeconds.
	TTLSeconds           int
	CreatedAt, UpdatedAt time.Time
}

// Insert stores a new conversation (Name, Channel, Lane, Template, TTLSeconds of r) and
// fills r's stored fields. If the id is taken in the tenant it changes
// nothing and reports created false; Load tells what is there.
func Insert(ctx context.Context, q Querier, r *Row) (created bool, err error) {
	err = q.QueryRow(ctx, `INSERT INTO conversations (tenant, id, name, channel, lane, template, ttl_seconds)
		VALUES ($1, $2, $3, $4, $5, $6, nullif($7, 0)) ON CONFLICT (tenant, id) DO NOTHING
		RETURNING template_version, state, created_at, updated_at`,
		r.Tenant, r.ID, r.Name, r.Channel, r.Lane, r.Template, r.TTLSeconds).Scan(&r.TemplateVersion, &r.State, &r.CreatedAt, &r.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("conversation: insert %s/%s: %w", r.Tenant, r.ID, err)
	}
	return true, nil
}

// Load returns a tenant's conversation, or ErrNotFound.
func Load(ctx context.Context, q Querier, tenant, id string) (Row, error) {
	r := Row{Tenant: tenant}
	err := q.QueryRow(ctx, `SELECT id, name, channel, lane, template, template_version, state, coalesce(ttl_seconds, 0), created_at, updated_at
		FROM conversations WHERE tenant = $1 AND id = $2`, tenant, id).
		Scan(&r.ID, &r.Name, &r.Channel, &r.Lane, &r.Template, &r.TemplateVersion, &r.State, &r.TTLSeconds, &r.CreatedAt, &r.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Row{}, fmt.Errorf("%w: %s/%s", ErrNotFound, tenant, id)
	}
	if err != nil {
		return Row{}, fmt.Errorf("conversation: load %s/%s: %w", tenant, id, err)
	}
	return r, nil
}

// Exists returns nil if the tenant's conversation exists, else ErrNotFound
// (wrapped) or the query's error.
func Exists(ctx context.Context, q Querier, tenant, id string) error {
	var one int
	err := q.QueryRow(ctx, `SELECT 1 FROM conversations WHERE tenant = $1 AND id = $2`, tenant, id).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: %s/%s", ErrNotFound, tenant, id)
	}
	return err
}

// Totals returns the counts the table holds: accepted and purged.
func Totals(ctx context.Context, q Querier, tenant, id string) (accepted, purged int64, err error) {
	err = q.QueryRow(ctx, `SELECT accepted, purged FROM conversations WHERE tenant = $1 AND id = $2`, tenant, id).
		Scan(&accepted, &purged)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, fmt.Errorf("%w: %s/%s", ErrNotFound, tenant, id)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("conversation: totals %s/%s: %w", tenant, id, err)
	}
	return accepted, purged, nil
}

// AddAccepted adds n activations the stream stored. Call it in the
// transaction that records the request's progress.
func AddAccepted(ctx context.Context, q Execer, tenant, id string, n int64) error {
	if _, err := q.Exec(ctx, `UPDATE conversations SET accepted = accepted + $3 WHERE tenant = $1 AND id = $2`, tenant, id, n); err != nil {
		return fmt.Errorf("conversation: count accepted: %w", err)
	}
	return nil
}

// RecordState mirrors a state change of the control plane and adds the
// messages a stop purged. A stopped conversation stays stopped.
func RecordState(ctx context.Context, q Execer, tenant, id, state string, purged uint64) error {
	_, err := q.Exec(ctx, `UPDATE conversations SET purged = purged + $3,
			state = CASE WHEN state = 'stopped' THEN state ELSE $4 END, updated_at = now()
		WHERE tenant = $1 AND id = $2`, tenant, id, int64(purged), state)
	if err != nil {
		return fmt.Errorf("conversation: record state of %s/%s: %w", tenant, id, err)
	}
	return nil
}

// MarkQuarantined mirrors an automatic quarantine: only an active
// conversation becomes quarantined.
func MarkQuarantined(ctx context.Context, q Execer, tenant, id string) error {
	_, err := q.Exec(ctx, `UPDATE conversations SET state = 'quarantined', updated_at = now()
		WHERE tenant = $1 AND id = $2 AND state = 'active'`, tenant, id)
	if err != nil {
		return fmt.Errorf("conversation: record quarantine of %s/%s: %w", tenant, id, err)
	}
	return nil
}

// Listed is a conversation as List returns it: its row with the counts the
// table holds.
type Listed struct {
	Row
	Accepted, Purged int64
}

// ListFilter selects conversations for List.
type ListFilter struct {
	// Tenant keeps one tenant's conversations ("": every tenant's).
	Tenant string
	// Search keeps those whose id or name contains it, ignoring case.
	Search string
	// State keeps those in this state ("": any).
	State string
	// Limit is the most returned, most recently created first. Default
	// DefaultListLimit, at most MaxListLimit.
	Limit int
}

// Limits of List.
const (
	DefaultListLimit = 200
	MaxListLimit     = 1000
)

// RowsQuerier is what List needs: *pgxpool.Pool, *pgx.Conn and pgx.Tx have
// it.
type RowsQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// List returns the conversations f selects, most recently created first.
func List(ctx context.Context, q RowsQuerier, f ListFilter) ([]Listed, error) {
	if f.Limit <= 0 {
		f.Limit = DefaultListLimit
	}
	f.Limit = min(f.Limit, MaxListLimit)
	rows, err := q.Query(ctx, `SELECT tenant, id, name, channel, lane, template, template_version, state,
			created_at, updated_at, accepted, purged
		FROM conversations
		WHERE ($1 = '' OR tenant = $1) AND ($2 = '' OR state = $2)
		  AND ($3 = '' OR strpos(lower(id), lower($3)) > 0 OR strpos(lower(name), lower($3)) > 0)
		ORDER BY created_at DESC, tenant, id LIMIT $4`, f.Tenant, f.State, f.Search, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("conversation: list: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Listed, error) {
		var l Listed
		err := row.Scan(&l.Tenant, &l.ID, &l.Name, &l.Channel, &l.Lane, &l.Template, &l.TemplateVersion, &l.State,
			&l.CreatedAt, &l.UpdatedAt, &l.Accepted, &l.Purged)
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("conversation: list: %w", err)
	}
	return out, nil
}
