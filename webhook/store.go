package webhook

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
)

// ChangedSubject is the core NATS subject a Store announces every change
// of an endpoint on; Publishers and Dispatchers reload when they hear it.
const ChangedSubject = "sluice.webhookcfg.changed"

// MaxEndpointsPerTenant bounds the endpoints one tenant may register.
const MaxEndpointsPerTenant = 20

// Endpoint is one registered webhook endpoint.
type Endpoint struct {
	ID     string   `json:"id"`
	Tenant string   `json:"tenant"`
	URL    string   `json:"url"`
	Events []string `json:"events"`
	// Secret is shown once, in the answer to the registration; a Store
	// returns it to the Dispatcher only.
	Secret       string     `json:"secret,omitempty"`
	CreatedAt    time.Time  `json:"created_at"`
	FailingSince *time.Time `json:"failing_since,omitempty"`
	LastError    string     `json:"last_error,omitempty"`
	DisabledAt   *time.Time `json:"disabled_at,omitempty"`
}

// Store reads and changes the webhooks table and announces every change.
// Safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	nc   *nats.Conn
	log  *slog.Logger
	// allowInternal lets endpoints resolve to loopback and private
	// addresses (dev and test only).
	allowInternal bool
	resolver      *net.Resolver
}

// NewStore returns a Store over pool, announcing changes on nc (may be
// nil). allowInternal admits URLs that resolve to loopback or private
// addresses; only dev and test deployments set it.
func NewStore(pool *pgxpool.Pool, nc *nats.Conn, allowInternal bool, logger *slog.Logger) *Store {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Store{pool: pool, nc: nc, allowInternal: allowInternal, log: logger}
}

// ErrNotFound is returned for an endpoint that does not exist (or is
// another tenant's).
var ErrNotFound = errors.New("webhook: no such endpoint")

// ErrTooMany is returned when a tenant already has MaxEndpointsPerTenant.
var ErrTooMany = fmt.Errorf("%w: a tenant may register at most %d endpoints", ErrInvalid, MaxEndpointsPerTenant)

// Create registers an endpoint for tenant and returns it with its secret,
// the only time the secret is shown.
func (s *Store) Create(ctx context.Context, tenant, url string, events []string) (Endpoint, error) {
	if err := checkToken(tenant); err != nil {
		return Endpoint{}, err
	}
	if err := checkEvents(events); err != nil {
		return Endpoint{}, err
	}
	if err := CheckURL(ctx, url, s.allowInternal, s.resolver); err != nil {
		return Endpoint{}, err
	}
	e := Endpoint{ID: newID(), Tenant: tenant, URL: url, Events: canonicalEvents(events), Secret: NewSecret()}
	err := s.pool.QueryRow(ctx, `INSERT INTO webhooks (id, tenant, url, events, secret)
		SELECT $1, $2, $3, $4, $5 WHERE (SELECT count(*) FROM webhooks WHERE tenant = $2) < $6
		RETURNING created_at`, e.ID, tenant, url, e.Events, e.Secret, MaxEndpointsPerTenant).Scan(&e.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Endpoint{}, ErrTooMany
	}
	if err != nil {
		return Endpoint{}, fmt.Errorf("webhook: create: %w", err)
	}
	s.announce()
	return e, nil
}

func checkEvents(events []string) error {
	if len(events) == 0 {
		return fmt.Errorf("%w: events: at least one of %v", ErrInvalid, eventNames)
	}
	for _, ev := range events {
		if !ValidEvent(ev) {
			return fmt.Errorf("%w: events: %q is not one of %v", ErrInvalid, ev, eventNames)
		}
	}
	return nil
}

// canonicalEvents returns events deduplicated, in eventNames' order.
func canonicalEvents(events []string) []string {
	out := []string{}
	for _, n := range eventNames {
		if slices.Contains(events, n) {
			out = append(out, n)
		}
	}
	return out
}

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "wh_" + hex.EncodeToString(b)
}

const endpointColumns = `id, tenant, url, events, created_at, failing_since, last_error, disabled_at`

func scanEndpoint(row pgx.Row, withSecret bool) (Endpoint, error) {
	var e Endpoint
	dest := []any{&e.ID, &e.Tenant, &e.URL, &e.Events, &e.CreatedAt, &e.FailingSince, &e.LastError, &e.DisabledAt}
	if withSecret {
		dest = append(dest, &e.Secret)
	}
	err := row.Scan(dest...)
	return e, err
}

// List returns tenant's endpoints, oldest first, without their secrets.
func (s *Store) List(ctx context.Context, tenant string) ([]Endpoint, error) {
	return s.query(ctx, false, `SELECT `+endpointColumns+` FROM webhooks WHERE tenant = $1 ORDER BY created_at, id`, tenant)
}

// Get returns tenant's endpoint id, without its secret.
func (s *Store) Get(ctx context.Context, tenant, id string) (Endpoint, error) {
	e, err := scanEndpoint(s.pool.QueryRow(ctx, `SELECT `+endpointColumns+` FROM webhooks WHERE tenant = $1 AND id = $2`, tenant, id), false)
	if errors.Is(err, pgx.ErrNoRows) {
		return Endpoint{}, ErrNotFound
	}
	if err != nil {
		return Endpoint{}, fmt.Errorf("webhook: get: %w", err)
	}
	return e, nil
}

// Delete removes tenant's endpoint id and returns it as it was.
func (s *Store) Delete(ctx context.Context, tenant, id string) (Endpoint, error) {
	e, err := scanEndpoint(s.pool.QueryRow(ctx, `DELETE FROM webhooks WHERE tenant = $1 AND id = $2 RETURNING `+endpointColumns, tenant, id), false)
	if errors.Is(err, pgx.ErrNoRows) {
		return Endpoint{}, ErrNotFound
	}
	if err != nil {
		return Endpoint{}, fmt.Errorf("webhook: delete: %w", err)
	}
	s.announce()
	return e, nil
}

// Enabled returns every tenant's enabled endpoints, with their secrets
// (for the Dispatcher).
func (s *Store) Enabled(ctx context.Context) ([]Endpoint, error) {
	return s.query(ctx, true, `SELECT `+endpointColumns+`, secret FROM webhooks WHERE disabled_at IS NULL ORDER BY id`)
}

// withSecret returns endpoint id with its secret (for replay).
func (s *Store) withSecret(ctx context.Context, tenant, id string) (Endpoint, error) {
	e, err := scanEndpoint(s.pool.QueryRow(ctx, `SELECT `+endpointColumns+`, secret FROM webhooks WHERE tenant = $1 AND id = $2`, tenant, id), true)
	if errors.Is(err, pgx.ErrNoRows) {
		return Endpoint{}, ErrNotFound
	}
	return e, err
}

func (s *Store) query(ctx context.Context, withSecret bool, q string, args ...any) ([]Endpoint, error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("webhook: list: %w", err)
	}
	defer rows.Close()
	out := []Endpoint{}
	for rows.Next() {
		e, err := scanEndpoint(rows, withSecret)
		if err != nil {
			return nil, fmt.Errorf("webhook: list: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Tenants returns the tenants with at least one enabled endpoint and, for
// each, the events those endpoints ask for.
func (s *Store) Tenants(ctx context.Context) (map[string][]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT tenant, array_agg(DISTINCT ev) FROM webhooks, unnest(events) AS ev
		WHERE disabled_at IS NULL GROUP BY tenant`)
	if err != nil {
		return nil, fmt.Errorf("webhook: tenants: %w", err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var t string
		var evs []string
		if err := rows.Scan(&t, &evs); err != nil {
			return nil, fmt.Errorf("webhook: tenants: %w", err)
		}
		out[t] = evs
	}
	return out, rows.Err()
}

// failing records a failed delivery: it starts the failure streak if none
// is running, and returns how long the streak has lasted (by the
// database's clock, the same for every process).
func (s *Store) failing(ctx context.Context, id, lastErr string) (time.Duration, error) {
	var secs float64
	err := s.pool.QueryRow(ctx, `UPDATE webhooks SET failing_since = coalesce(failing_since, now()), last_error = $2
		WHERE id = $1 RETURNING extract(epoch FROM now() - failing_since)::float8`, id, truncate(lastErr, 512)).Scan(&secs)
	return time.Duration(secs * float64(time.Second)), err
}

// recovered ends a failure streak.
func (s *Store) recovered(ctx context.Context, id string) error {
	_, err := s.pool.Exec(ctx, `UPDATE webhooks SET failing_since = NULL, last_error = '' WHERE id = $1 AND failing_since IS NOT NULL`, id)
	return err
}

// disable disables endpoint id, failing since too long.
func (s *Store) disable(ctx context.Context, id string) error {
	_, err := s.pool.Exec(ctx, `UPDATE webhooks SET disabled_at = now() WHERE id = $1 AND disabled_at IS NULL`, id)
	if err == nil {
		s.announce()
	}
	return err
}

// announce tells every process that an endpoint changed.
func (s *Store) announce() {
	if s.nc == nil {
		return
	}
	if err := s.nc.Publish(ChangedSubject, nil); err != nil {
		s.log.Warn("webhook change not announced; processes notice it at their next reload", "err", err)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
