package control

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/wire"
)

// Limits of Audit.
const (
	// DefaultAuditLimit is AuditFilter.Limit's default.
	DefaultAuditLimit = 100
	// MaxAuditLimit is the most entries one Audit call returns.
	MaxAuditLimit = 1000
)

// AuditEntry is one row of control_audit: who changed which key, when,
// from what to what. Old is null when the key was not set before.
type AuditEntry struct {
	ID    int64           `json:"id"`
	At    time.Time       `json:"at"`
	Actor string          `json:"actor"`
	Key   string          `json:"key"`
	Old   json.RawMessage `json:"old"`
	New   json.RawMessage `json:"new"`
}

// AuditFilter selects audit entries; its zero value selects the latest
// DefaultAuditLimit entries of every key.
type AuditFilter struct {
	// Tenant, when set, keeps the entries of that tenant's conversations
	// only (keys conversation.<tenant>.*): what a tenant's admin may read.
	Tenant string
	// KeyPrefix keeps the keys that start with it ("errorlog.mode",
	// "conversation.acme.spring", "channel.").
	KeyPrefix string
	// Actor keeps the entries of that actor only ("quarantine",
	// "operator:ab12 (alice)").
	Actor string
	// Since keeps the entries at or after it (zero: no bound).
	Since time.Time
	// Before keeps the entries whose id is below it, to page back (0: no
	// bound).
	Before int64
	// Limit is the most entries returned, newest first. Default
	// DefaultAuditLimit, at most MaxAuditLimit.
	Limit int
}

// validate checks f and fills its default.
func (f *AuditFilter) validate() error {
	if f.Limit == 0 {
		f.Limit = DefaultAuditLimit
	}
	switch {
	case f.Limit < 1 || f.Limit > MaxAuditLimit:
		return fmt.Errorf("%w: audit limit %d: want 1 to %d", ErrInvalid, f.Limit, MaxAuditLimit)
	case f.Tenant != "" && !wire.ValidToken(f.Tenant):
		return fmt.Errorf("%w: tenant id %q: want 1 to 64 of [A-Za-z0-9_-]", ErrInvalid, f.Tenant)
	case f.Before < 0:
		return fmt.Errorf("%w: audit before %d: want a positive entry id", ErrInvalid, f.Before)
	case len(f.KeyPrefix) > 256 || len(f.Actor) > 256:
		return fmt.Errorf("%w: audit key or actor longer than 256 bytes", ErrInvalid)
	}
	return nil
}

// auditSQL selects control_audit rows, newest first; each filter applies
// when its parameter is not NULL. starts_with, not LIKE: ids may hold "_".
const auditSQL = `SELECT id, at, actor, key, old_value, new_value FROM control_audit
WHERE ($1::text IS NULL OR starts_with(key, $1))
  AND ($2::text IS NULL OR starts_with(key, $2))
  AND ($3::text IS NULL OR actor = $3)
  AND ($4::timestamptz IS NULL OR at >= $4)
  AND ($5::bigint IS NULL OR id < $5)
ORDER BY id DESC LIMIT $6`

// Audit returns the audit trail's entries that f selects, newest first
// (ErrNoDatabase without a database; a filter out of range wraps
// ErrInvalid).
func (s *Store) Audit(ctx context.Context, f AuditFilter) ([]AuditEntry, error) {
	if s.pool == nil {
		return nil, ErrNoDatabase
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	var tenantPrefix, keyPrefix, actor *string
	if f.Tenant != "" {
		p := conversationPrefix + f.Tenant + "."
		tenantPrefix = &p
	}
	if f.KeyPrefix != "" {
		keyPrefix = &f.KeyPrefix
	}
	if f.Actor != "" {
		actor = &f.Actor
	}
	var since *time.Time
	if !f.Since.IsZero() {
		since = &f.Since
	}
	var before *int64
	if f.Before > 0 {
		before = &f.Before
	}
	rows, err := s.pool.Query(ctx, auditSQL, tenantPrefix, keyPrefix, actor, since, before, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("control: read audit: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (AuditEntry, error) {
		var e AuditEntry
		var old, cur []byte
		err := row.Scan(&e.ID, &e.At, &e.Actor, &e.Key, &old, &cur)
		e.Old, e.New = rawOrNull(old), rawOrNull(cur)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("control: read audit: %w", err)
	}
	return out, nil
}

// rawOrNull is b as JSON, null for a NULL column.
func rawOrNull(b []byte) json.RawMessage {
	if b == nil {
		return json.RawMessage("null")
	}
	return b
}

// ConversationOfKey returns the tenant and conversation of a
// conversation.<tenant>.<conversation> key, or ok false for another key.
func ConversationOfKey(key string) (tenant, conversation string, ok bool) {
	rest, found := strings.CutPrefix(key, conversationPrefix)
	if !found {
		return "", "", false
	}
	tenant, conversation, ok = strings.Cut(rest, ".")
	return tenant, conversation, ok && wire.ValidToken(tenant) && wire.ValidToken(conversation)
}
