package suppression

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
)

// Sources of an entry, the values of suppressions.source.
const (
	SourceProvider = "provider"
	SourceAPI      = "api"
	// SourceUnsubscribe is a recipient's own unsubscribe (List-Unsubscribe).
	SourceUnsubscribe = "unsubscribe"
	// SourceFeedback is a hard bounce or complaint reported to the feedback
	// endpoint.
	SourceFeedback = "feedback"
)

// ReasonManual is the reason of an entry added through the API without one.
const ReasonManual = "manual"

// Entry is one suppressed recipient of a tenant, as stored.
type Entry struct {
	// Hash is the hex HMAC-SHA256 of the normalised address.
	Hash      string    `json:"hash"`
	Kind      string    `json:"kind"`
	Reason    string    `json:"reason"`
	Source    string    `json:"source"`
	CreatedAt time.Time `json:"created_at"`
}

// Store reads and changes the suppressions table and publishes every change
// for the workers' Sets. Safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	js   jetstream.JetStream
	h    *Hasher
	log  *slog.Logger
}

// NewStore returns a Store over pool, publishing changes on js, hashing with
// h. logger may be nil.
func NewStore(pool *pgxpool.Pool, js jetstream.JetStream, h *Hasher, logger *slog.Logger) *Store {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Store{pool: pool, js: js, h: h, log: logger}
}

// Add puts address on tenant's list and tells the workers. created is false
// if it was there already; the entry returned is the stored one.
func (s *Store) Add(ctx context.Context, tenant, address, reason, source string) (e Entry, created bool, err error) {
	sum, kind, err := s.sum(address)
	if err != nil {
		return Entry{}, false, err
	}
	return s.addHash(ctx, tenant, sum, kind, reason, source)
}

// AddHash is Add for an address known only by its hash (an unsubscribe
// link carries the hash, never the address).
func (s *Store) AddHash(ctx context.Context, tenant string, sum [32]byte, kind, reason, source string) (Entry, bool, error) {
	return s.addHash(ctx, tenant, sum, kind, reason, source)
}

func (s *Store) addHash(ctx context.Context, tenant string, sum [32]byte, kind, reason, source string) (Entry, bool, error) {
	e := Entry{Hash: hex.EncodeToString(sum[:]), Kind: kind, Reason: reason, Source: source}
	err := s.pool.QueryRow(ctx, `INSERT INTO suppressions (tenant, hash, kind, reason, source)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, hash) DO NOTHING RETURNING created_at`,
		tenant, sum[:], kind, reason, source).Scan(&e.CreatedAt)
	created := err == nil
	if errors.Is(err, pgx.ErrNoRows) {
		var ok bool
		e, ok, err = s.getHash(ctx, tenant, sum)
		if err == nil && !ok {
			err = errors.New("removed while being added; try again")
		}
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("suppression: add: %w", err)
	}
	// Published even when it was there already: a change whose publish
	// failed before reaches the workers now.
	s.publish(ctx, tenant, opAdd, sum)
	return e, created, nil
}

// Remove takes address off tenant's list and tells the workers. It reports
// whether it was there.
func (s *Store) Remove(ctx context.Context, tenant, address string) (bool, error) {
	sum, _, err := s.sum(address)
	if err != nil {
		return false, err
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM suppressions WHERE tenant = $1 AND hash = $2`, tenant, sum[:])
	if err != nil {
		return false, fmt.Errorf("suppression: remove: %w", err)
	}
	s.publish(ctx, tenant, opRemove, sum)
	return tag.RowsAffected() > 0, nil
}

// Get returns tenant's entry for address, if there is one.
func (s *Store) Get(ctx context.Context, tenant, address string) (Entry, bool, error) {
	sum, _, err := s.sum(address)
	if err != nil {
		return Entry{}, false, err
	}
	return s.getHash(ctx, tenant, sum)
}

func (s *Store) getHash(ctx context.Context, tenant string, sum [32]byte) (Entry, bool, error) {
	e := Entry{Hash: hex.EncodeToString(sum[:])}
	err := s.pool.QueryRow(ctx, `SELECT kind, reason, source, created_at FROM suppressions WHERE tenant = $1 AND hash = $2`,
		tenant, sum[:]).Scan(&e.Kind, &e.Reason, &e.Source, &e.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("suppression: get: %w", err)
	}
	return e, true, nil
}

// List returns up to limit of tenant's entries in hash order, starting after
// the hex hash after ("" for the first page).
func (s *Store) List(ctx context.Context, tenant, after string, limit int) ([]Entry, error) {
	from, err := hex.DecodeString(after)
	if err != nil {
		return nil, fmt.Errorf("%w: after: want a hash in hex", ErrInvalid)
	}
	rows, err := s.pool.Query(ctx, `SELECT hash, kind, reason, source, created_at FROM suppressions
		WHERE tenant = $1 AND hash > $2 ORDER BY hash LIMIT $3`, tenant, from, limit)
	if err != nil {
		return nil, fmt.Errorf("suppression: list: %w", err)
	}
	defer rows.Close()
	out := []Entry{}
	for rows.Next() {
		var e Entry
		var sum []byte
		if err := rows.Scan(&sum, &e.Kind, &e.Reason, &e.Source, &e.CreatedAt); err != nil {
			return nil, fmt.Errorf("suppression: list: %w", err)
		}
		e.Hash = hex.EncodeToString(sum)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("suppression: list: %w", err)
	}
	return out, nil
}

// ErrInvalid is matched by errors about the caller's input.
var ErrInvalid = errors.New("suppression: invalid input")

func (s *Store) sum(address string) ([32]byte, string, error) {
	n, _ := Normalize(address)
	if n == "" {
		return [32]byte{}, "", fmt.Errorf("%w: %w", ErrInvalid, ErrEmptyAddress)
	}
	sum, kind := s.h.Sum(address)
	return sum, kind, nil
}

// publish tells the workers of a committed change. A failure is logged: the
// change is in Postgres, and a worker that missed it loads it at its next
// start.
func (s *Store) publish(ctx context.Context, tenant string, op string, sum [32]byte) {
	data, _ := json.Marshal(change{Op: op, Hash: hex.EncodeToString(sum[:])})
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := s.js.Publish(pctx, Subject(tenant), data); err != nil {
		s.log.Error("suppression change stored but not published; workers learn it at their next start", "tenant", tenant, "op", op, "err", err)
	}
}
