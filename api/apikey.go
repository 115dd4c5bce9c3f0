package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sluicehq/sluice/wire"
)

// Scope is a permission of an API key.
type Scope string

// The scopes. They do not imply each other: a key that creates
// conversations and reads their counts has send and read.
const (
	ScopeSend  Scope = "send"  // create conversations, queue activations
	ScopeRead  Scope = "read"  // read conversations and their counts
	ScopeAdmin Scope = "admin" // pause, resume, stop and list the tenant's own conversations
	// ScopeOperator is the scope of operator keys, which belong to no
	// tenant: the fleet-wide controls (error-log mode, intake, channels, top
	// errors) and the admin routes of every tenant's conversations. It is
	// never given to a tenant's key.
	ScopeOperator Scope = "operator"
)

// AllScopes lists the scopes of a tenant's keys, in a stable order.
var AllScopes = []Scope{ScopeSend, ScopeRead, ScopeAdmin}

// Valid reports whether s is a scope of a tenant's keys.
func (s Scope) Valid() bool { return slices.Contains(AllScopes, s) }

// ParseScopes parses a comma-separated list such as "send,read". It is an
// error for the list to be empty or to name an unknown scope; duplicates are
// dropped.
func ParseScopes(list string) ([]Scope, error) {
	var out []Scope
	for part := range strings.SplitSeq(list, ",") {
		s := Scope(strings.TrimSpace(part))
		if s == "" {
			continue
		}
		if s == ScopeOperator {
			return nil, errors.New("api: operator is not a scope of a tenant's key: create an operator key instead (sluice ctl apikey create --operator)")
		}
		if !s.Valid() {
			return nil, fmt.Errorf("api: unknown scope %q (want send, read or admin)", truncate(string(s), 32))
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("api: at least one scope is required (send, read, admin)")
	}
	return out, nil
}

// API key formats:
//
//	tenant key    sk_<tenant>_<id>_<secret>
//	operator key  sko_<id>_<secret>
//
// where id is 16 hex digits (the public handle of the key, the primary key of
// api_keys) and secret 48 hex digits (192 random bits). A tenant key names
// its tenant so that a leaked key says whose it is; an operator key starts
// with "sko_" (third byte "o") where every tenant key starts with "sk_"
// (third byte "_"), so whatever a tenant's id, neither kind can be taken for
// the other. The server trusts only the row the id finds, after
// the hash of the whole key matches: an operator key's row has no tenant
// (NULL) and the scopes {operator}, a tenant key's row its tenant.
const (
	keyPrefix         = "sk_"
	operatorKeyPrefix = "sko_"
	keyIDBytes        = 8
	secretBytes       = 24
	maxKeyLength      = len(keyPrefix) + 64 + 1 + 2*keyIDBytes + 1 + 2*secretBytes
)

// ErrKeyNotFound is returned by RevokeAPIKey for an id that names no key.
var ErrKeyNotFound = errors.New("api: no such API key")

// APIKey describes a stored key (never the key itself).
type APIKey struct {
	ID string
	// Tenant is the key's tenant, "" for an operator key.
	Tenant    string
	Name      string
	Scopes    []Scope
	CreatedAt time.Time
	RevokedAt *time.Time
}

// Operator reports whether k is an operator key.
func (k APIKey) Operator() bool { return k.Tenant == "" && slices.Contains(k.Scopes, ScopeOperator) }

// CreateAPIKey creates a key for tenant with scopes and returns it. The key is
// returned only here: the database keeps its SHA-256.
func CreateAPIKey(ctx context.Context, pool *pgxpool.Pool, tenant, name string, scopes []Scope) (key string, info APIKey, err error) {
	if !wire.ValidToken(tenant) {
		return "", APIKey{}, errors.New("api: tenant must be 1-64 of [A-Za-z0-9_-]")
	}
	if len(scopes) == 0 {
		return "", APIKey{}, errors.New("api: at least one scope is required")
	}
	for _, s := range scopes {
		if !s.Valid() {
			return "", APIKey{}, fmt.Errorf("api: %q is not a scope of a tenant's key (send, read, admin)", truncate(string(s), 32))
		}
	}
	return insertKey(ctx, pool, APIKey{Tenant: tenant, Name: name, Scopes: slices.Clone(scopes)})
}

// CreateOperatorKey creates an operator key (scope operator, no tenant) and
// returns it, only here. name should say who holds it: it is part of the
// audited actor of every change made with the key. Rotation: create a new
// key, move its holder to it, revoke the old one (RevokeAPIKey).
func CreateOperatorKey(ctx context.Context, pool *pgxpool.Pool, name string) (key string, info APIKey, err error) {
	return insertKey(ctx, pool, APIKey{Name: name, Scopes: []Scope{ScopeOperator}})
}

// insertKey generates a key for info (a tenant key, or an operator key when
// info.Tenant is "") and stores its hash.
func insertKey(ctx context.Context, pool *pgxpool.Pool, info APIKey) (string, APIKey, error) {
	if len(info.Name) > 200 {
		return "", APIKey{}, errors.New("api: key name longer than 200 bytes")
	}
	if err := checkText("name", info.Name); err != nil {
		return "", APIKey{}, fmt.Errorf("api: key %w", err)
	}
	names := make([]string, len(info.Scopes))
	for i, s := range info.Scopes {
		names[i] = string(s)
	}
	var tenant *string // NULL for an operator key
	if info.Tenant != "" {
		tenant = &info.Tenant
	}
	for attempt := 0; ; attempt++ {
		id := randomHex(keyIDBytes)
		key := operatorKeyPrefix + id + "_" + randomHex(secretBytes)
		if tenant != nil {
			key = keyPrefix + *tenant + "_" + id + "_" + randomHex(secretBytes)
		}
		sum := sha256.Sum256([]byte(key))
		info.ID = id
		err := pool.QueryRow(ctx, `INSERT INTO api_keys (id, tenant, name, hash, scopes)
			VALUES ($1, $2, $3, $4, $5) RETURNING created_at`,
			id, tenant, info.Name, sum[:], names).Scan(&info.CreatedAt)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" && attempt < 3 {
			continue // an id collision: 64 random bits make it a curiosity
		}
		if err != nil {
			return "", APIKey{}, fmt.Errorf("api: create key: %w", err)
		}
		return key, info, nil
	}
}

// ListAPIKeys lists the keys of tenant, or every key (operator keys
// included) when tenant is "", oldest first.
func ListAPIKeys(ctx context.Context, pool *pgxpool.Pool, tenant string) ([]APIKey, error) {
	rows, err := pool.Query(ctx, `SELECT id, coalesce(tenant, ''), name, scopes, created_at, revoked_at FROM api_keys
		WHERE $1 = '' OR tenant = $1 ORDER BY created_at, id`, tenant)
	if err != nil {
		return nil, fmt.Errorf("api: list keys: %w", err)
	}
	var (
		out    []APIKey
		k      APIKey
		scopes []string
	)
	_, err = pgx.ForEachRow(rows, []any{&k.ID, &k.Tenant, &k.Name, &scopes, &k.CreatedAt, &k.RevokedAt}, func() error {
		c := k
		c.Scopes = make([]Scope, len(scopes))
		for i, s := range scopes {
			c.Scopes[i] = Scope(s)
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("api: list keys: %w", err)
	}
	return out, nil
}

// RevokeAPIKey revokes the key with this id; requests with it are refused
// from then on. Revoking a revoked key keeps its first revocation time.
func RevokeAPIKey(ctx context.Context, pool *pgxpool.Pool, id string) (APIKey, error) {
	var (
		k      APIKey
		scopes []string
	)
	err := pool.QueryRow(ctx, `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1
		RETURNING id, coalesce(tenant, ''), name, scopes, created_at, revoked_at`, id).
		Scan(&k.ID, &k.Tenant, &k.Name, &scopes, &k.CreatedAt, &k.RevokedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return APIKey{}, fmt.Errorf("%w: %q", ErrKeyNotFound, truncate(id, 32))
	}
	if err != nil {
		return APIKey{}, fmt.Errorf("api: revoke key: %w", err)
	}
	for _, s := range scopes {
		k.Scopes = append(k.Scopes, Scope(s))
	}
	return k, nil
}

// parsedKey is what a key says about itself, before the database confirms
// it.
type parsedKey struct {
	tenant   string // "" for an operator key
	id       string
	operator bool
}

// parseKey splits a key into its tenant and id. ok is false when key does not
// have the shape of a sluice key.
func parseKey(key string) (parsedKey, bool) {
	if len(key) > maxKeyLength {
		return parsedKey{}, false
	}
	rest, operator := strings.CutPrefix(key, operatorKeyPrefix)
	if !operator {
		var found bool
		if rest, found = strings.CutPrefix(key, keyPrefix); !found {
			return parsedKey{}, false
		}
	}
	rest, secret, found := cutLast(rest, "_")
	if !found || len(secret) != 2*secretBytes || !isHex(secret) {
		return parsedKey{}, false
	}
	if operator {
		return parsedKey{id: rest, operator: true}, len(rest) == 2*keyIDBytes && isHex(rest)
	}
	tenant, id, found := cutLast(rest, "_")
	if !found || len(id) != 2*keyIDBytes || !isHex(id) || !wire.ValidToken(tenant) {
		return parsedKey{}, false
	}
	return parsedKey{tenant: tenant, id: id}, true
}

func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
