package suppression

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/wire"
)

// ReportQueueDefault is the default number of provider refusals a Mirror
// holds for storing; more are dropped from the queue (and logged) but still
// kept in this worker's Set.
const ReportQueueDefault = 4096

// Mirror is a worker's view of the suppression lists: a Set loaded from
// Postgres at Start and kept current through the stream of changes, and the
// way in for the permanent refusals the worker sees (Suppress). Create it
// with NewMirror, Start it once, Stop it once.
type Mirror struct {
	set   *Set
	store *Store
	js    jetstream.JetStream
	pool  *pgxpool.Pool
	log   *slog.Logger

	queue  chan report
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type report struct {
	tenant string
	sum    [32]byte
	kind   string
	reason wire.Reason
}

// NewMirror returns a Mirror over pool and js, hashing with h. queue bounds
// the refusals waiting to be stored (0: ReportQueueDefault).
func NewMirror(pool *pgxpool.Pool, js jetstream.JetStream, h *Hasher, queue int, logger *slog.Logger) *Mirror {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if queue <= 0 {
		queue = ReportQueueDefault
	}
	return &Mirror{set: NewSet(h), store: NewStore(pool, js, h, logger), js: js, pool: pool, log: logger,
		queue: make(chan report, queue)}
}

// Set is the mirror's in-memory set.
func (m *Mirror) Set() *Set { return m.set }

// Suppressed reports whether address is on tenant's list, from memory.
func (m *Mirror) Suppressed(tenant, address string) bool { return m.set.Suppressed(tenant, address) }

// Suppress puts address on tenant's list for a provider's permanent refusal
// (reason): in this worker's Set at once, and in Postgres and every other
// worker's Set shortly after. It never blocks.
func (m *Mirror) Suppress(tenant, address string, reason wire.Reason) {
	sum, kind := m.set.h.Sum(address)
	m.set.addHash(tenant, sum[:])
	select {
	case m.queue <- report{tenant: tenant, sum: sum, kind: kind, reason: reason}:
	default:
		m.log.Warn("suppression queue full; a provider refusal is kept in this worker only", "tenant", tenant, "reason", reason)
	}
}

// Start ensures the stream of changes, loads every tenant's list and starts
// following the changes and storing the refusals reported. It returns once
// the list is loaded.
func (m *Mirror) Start(ctx context.Context) error {
	st, err := EnsureStream(ctx, m.js, 0)
	if err != nil {
		return err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("suppression: stream info: %w", err)
	}
	// Everything published after this sequence is replayed over what is
	// loaded, so a change committed while loading is not missed.
	from := info.State.LastSeq + 1
	start := time.Now()
	if err := m.load(ctx); err != nil {
		return err
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from,
	})
	if err != nil {
		return fmt.Errorf("suppression: follow changes: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("suppression: follow changes: %w", err)
	}
	m.log.Info("suppression lists loaded", "entries", m.set.Len(), "took", time.Since(start).Round(time.Millisecond))
	runCtx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.wg.Go(func() { m.follow(it) })
	m.wg.Go(func() { <-runCtx.Done(); it.Stop() })
	m.wg.Go(func() { m.storeReports(runCtx) })
	return nil
}

// Stop stops following, stores the refusals still queued (until ctx ends)
// and returns.
func (m *Mirror) Stop(ctx context.Context) {
	if m.cancel == nil {
		return
	}
	m.cancel()
	m.wg.Wait()
	for {
		select {
		case r := <-m.queue:
			m.storeOne(ctx, r)
		default:
			return
		}
	}
}

// load reads every tenant's hashes (their first 8 bytes) into the set.
func (m *Mirror) load(ctx context.Context) error {
	rows, err := m.pool.Query(ctx, `SELECT tenant, substring(hash from 1 for 8) FROM suppressions ORDER BY tenant`)
	if err != nil {
		return fmt.Errorf("suppression: load: %w", err)
	}
	defer rows.Close()
	var tenant string
	var batch [][]byte
	for rows.Next() {
		var t string
		var sum []byte
		if err := rows.Scan(&t, &sum); err != nil {
			return fmt.Errorf("suppression: load: %w", err)
		}
		if t != tenant && len(batch) > 0 {
			m.set.AddHashes(tenant, batch)
			batch = batch[:0]
		}
		tenant = t
		batch = append(batch, sum)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("suppression: load: %w", err)
	}
	if len(batch) > 0 {
		m.set.AddHashes(tenant, batch)
	}
	return nil
}

// follow applies changes until the iterator is stopped.
func (m *Mirror) follow(it jetstream.MessagesContext) {
	for {
		msg, err := it.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return
		}
		if err != nil {
			m.log.Warn("suppression changes: fetch failed", "err", err)
			continue
		}
		m.apply(msg.Subject(), msg.Data())
	}
}

func (m *Mirror) apply(subject string, data []byte) {
	tenant, ok := strings.CutPrefix(subject, subjectPrefix)
	var c change
	err := json.Unmarshal(data, &c)
	sum, herr := hex.DecodeString(c.Hash)
	if !ok || err != nil || herr != nil || len(sum) != 32 {
		m.log.Warn("suppression changes: undecodable change ignored", "subject", subject)
		return
	}
	switch c.Op {
	case opAdd:
		m.set.addHash(tenant, sum)
	case opRemove:
		m.set.removeHash(tenant, sum)
	}
}

// storeReports stores queued refusals until ctx ends.
func (m *Mirror) storeReports(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-m.queue:
			m.storeOne(ctx, r)
		}
	}
}

func (m *Mirror) storeOne(ctx context.Context, r report) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, _, err := m.store.addHash(sctx, r.tenant, r.sum, r.kind, string(r.reason), SourceProvider); err != nil {
		m.log.Warn("a provider refusal was not stored; it is kept in this worker and reported again at the next refusal",
			"tenant", r.tenant, "reason", r.reason, "err", err)
	}
}
