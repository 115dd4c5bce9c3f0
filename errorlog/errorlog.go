package errorlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluicehq/sluice/wire"
	"github.com/sony/gobreaker/v2"
)

var (
	// ErrBufferFull is reported to done by Record, at once, when MaxPending
	// events already wait for their counters to be written. The caller naks
	// the message with a delay: nothing is lost.
	ErrBufferFull = errors.New("errorlog: buffer full")
	// ErrStopped is reported to done for events recorded after Stop, and (wrapped)
	// for pending events that Stop's context did not leave time to write.
	ErrStopped = errors.New("errorlog: stopped")
)

// Config tunes a Log. The zero value is valid only with KeepAddresses set;
// otherwise MaskKey is required.
type Config struct {
	// Mode is the mode at start, until SetMode changes it. Default full.
	Mode Mode
	// BatchSize is the number of pending events that triggers a write at
	// once. Default 1000.
	BatchSize int
	// FlushInterval is how long the writer, once idle, waits after a batch's
	// first event for more before it writes (group commit: while a write
	// runs, the next batch gathers, so under load batches grow with the
	// write's duration). Messages are acked only after their batch commits,
	// so it bounds the added ack delay at low rates. Default 10ms.
	FlushInterval time.Duration
	// BufferSize is the most detail rows waiting to be written; beyond it a
	// row is dropped and counted (sluice_errorlog_dropped_total), never its
	// counter. Default 50000.
	BufferSize int
	// MaxPending is the most events (counter entries with their callbacks)
	// waiting to be made durable; beyond it Record reports ErrBufferFull and
	// the message is retried later. It is reached only when Postgres and the
	// spill stream are both unavailable. Default 200000.
	MaxPending int
	// WriteTimeout bounds one write attempt before the batch goes to the
	// spill stream. Default 3s.
	WriteTimeout time.Duration
	// LockTimeout bounds the wait for a lock (a LOCK TABLE on error_log, a
	// long ALTER) within an attempt: short, so that a locked table sends
	// batches to the spill at once instead of holding up acks. Default 500ms.
	LockTimeout time.Duration
	// BreakerTimeout is how long the writer's breaker stays open (every batch
	// spilled, Postgres left alone) before it tries Postgres again. Default 5s.
	BreakerTimeout time.Duration
	// Spill is where batches go while Postgres is down, slow or locked; the
	// stream SLUICE_ERRORLOG_SPILL is created on Start. nil: no spill, a
	// failing batch is retried in place (acks wait).
	Spill jetstream.JetStream
	// SpillReplicas is the spill stream's number of replicas: 1 on one
	// server, 3 on a three-node cluster. An existing stream is scaled to it.
	// Default 1.
	SpillReplicas int
	// Source names the activation stream whose sequences identify events
	// (Event.Seq) across redeliveries, e.g. its name and creation time.
	// Default "default".
	Source string
	// MaskKey is the HMAC-SHA256 key MaskAddress uses for addresses, at least 16
	// bytes. Required unless KeepAddresses.
	MaskKey []byte
	// KeepAddresses stores addresses in clear instead of masked. Default false.
	KeepAddresses bool
}

const minMaskKey = 16

// DefaultFlushInterval is Config.FlushInterval's default.
const DefaultFlushInterval = 10 * time.Millisecond

func (c *Config) setDefaults() {
	if c.Mode.Name == "" {
		c.Mode = DefaultMode
	}
	if c.BatchSize == 0 {
		c.BatchSize = 1000
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.BufferSize == 0 {
		c.BufferSize = 50000
	}
	if c.MaxPending == 0 {
		c.MaxPending = 200000
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 3 * time.Second
	}
	if c.BreakerTimeout == 0 {
		c.BreakerTimeout = 5 * time.Second
	}
	if c.LockTimeout == 0 {
		c.LockTimeout = 500 * time.Millisecond
	}
	if c.Source == "" {
		c.Source = "default"
	}
}

func (c *Config) validate() error {
	var errs []error
	for name, v := range map[string]int{"BatchSize": c.BatchSize, "BufferSize": c.BufferSize, "MaxPending": c.MaxPending, "SpillReplicas": c.SpillReplicas} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("errorlog: Config.%s must be positive (0 means the default), got %d", name, v))
		}
	}
	for name, v := range map[string]time.Duration{"FlushInterval": c.FlushInterval, "WriteTimeout": c.WriteTimeout, "LockTimeout": c.LockTimeout, "BreakerTimeout": c.BreakerTimeout} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("errorlog: Config.%s must be positive (0 means the default), got %v", name, v))
		}
	}
	if c.Mode.Name != "" {
		if err := c.Mode.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("errorlog: Config.Mode: %w", err))
		}
	}
	if !c.KeepAddresses && len(c.MaskKey) < minMaskKey {
		errs = append(errs, fmt.Errorf("errorlog: Config.MaskKey must be at least %d bytes (got %d) unless Config.KeepAddresses is set", minMaskKey, len(c.MaskKey)))
	}
	return errors.Join(errs...)
}

// Log is the error log. Create it with New, then Start; Record from any number of
// goroutines; Stop once.
type Log struct {
	pool    *pgxpool.Pool
	cfg     Config
	log     *slog.Logger
	m       *metrics
	now     func() time.Time
	mode    atomic.Pointer[Mode]
	sampler *sampler
	masker  *masker
	breaker *gobreaker.CircuitBreaker[int64]

	mu      sync.Mutex // guards cur, spare, stopped, started
	cur     *batch
	spare   *batch // the last batch written, emptied, for swap to reuse
	stopped bool
	started bool
	kick    chan struct{} // a batch is full
	ready   chan struct{} // the first event of a batch arrived
	closing chan struct{} // Stop began

	writeCtx    context.Context // canceled when Stop's context ends: abandon writes
	abortWrites context.CancelFunc
	maintCtx    context.Context // canceled when Stop begins: upkeep and drain end
	stopMaint   context.CancelFunc
	writerDone  chan struct{}
	maintDone   chan struct{}
	drainDone   chan struct{}

	spill *spill

	hooks testHooks
}

// testHooks let tests inject failures into the write path. Zero in production.
type testHooks struct {
	beforeCommit func() error // an error (or panic) fails the attempt before COMMIT
	afterCommit  func() error // an error after COMMIT simulates a lost acknowledgement
}

// New returns a stopped Log writing to pool, which must hold the schema of
// internal/migrate. logger may be nil (discard); reg may be nil (no metrics
// registered).
func New(pool *pgxpool.Pool, cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Log, error) {
	if pool == nil {
		return nil, errors.New("errorlog: pool is nil")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	cfg.MaskKey = append([]byte(nil), cfg.MaskKey...)
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &Log{
		pool:       pool,
		cfg:        cfg,
		log:        logger,
		now:        time.Now,
		cur:        newBatch(),
		masker:     newMasker(cfg.MaskKey),
		kick:       make(chan struct{}, 1),
		ready:      make(chan struct{}, 1),
		closing:    make(chan struct{}),
		writerDone: make(chan struct{}),
		maintDone:  make(chan struct{}),
		drainDone:  make(chan struct{}),
	}
	l.sampler = newSampler()
	l.writeCtx, l.abortWrites = context.WithCancel(context.Background())
	l.maintCtx, l.stopMaint = context.WithCancel(context.Background())
	m, err := newMetrics(reg, l.depth)
	if err != nil {
		return nil, err
	}
	l.m = m
	l.breaker = gobreaker.NewCircuitBreaker[int64](gobreaker.Settings{
		Name:    "errorlog-writer",
		Timeout: cfg.BreakerTimeout,
		// One failed write opens it: the next batches go straight to the
		// spill rather than each waiting out a timeout.
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= 1
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			l.m.breakerState.Set(float64(to))
			l.log.Warn("errorlog: writer breaker changed state", "from", from.String(), "to", to.String())
		},
	})
	mode := cfg.Mode
	l.SetMode(mode)
	return l, nil
}

// SetMode switches the mode for events recorded from now on. Safe to call
// at any time, from any goroutine.
func (l *Log) SetMode(m Mode) {
	if err := m.Validate(); err != nil {
		l.log.Error("errorlog: ignoring invalid mode", "err", err)
		return
	}
	m = m.WithDefaults()
	old := l.mode.Swap(&m)
	l.sampler.reset()
	if old != nil && *old != m {
		l.log.Info("errorlog: mode changed", "from", old.String(), "to", m.String())
	}
	for _, name := range []ModeName{ModeFull, ModeSample, ModeOff, ModeSync} {
		v := 0.0
		if name == m.Name {
			v = 1
		}
		l.m.mode.WithLabelValues(string(name)).Set(v)
	}
}

// BreakerState returns the state of the writer's circuit breaker: "closed",
// "half-open" or "open" (batches go to the spill stream).
func (l *Log) BreakerState() string { return l.breaker.State().String() }

// Mode returns the current mode.
func (l *Log) Mode() Mode { return *l.mode.Load() }

// Start makes sure the day partitions and the spill stream exist, then starts
// the writer, the spill drain and the hourly upkeep. ctx bounds only the
// initial checks: the writer runs until Stop.
func (l *Log) Start(ctx context.Context) error {
	if err := l.ensurePartitions(ctx); err != nil {
		return fmt.Errorf("errorlog: start: %w", err)
	}
	if l.cfg.Spill != nil {
		sp, err := openSpill(ctx, l.cfg.Spill, l.cfg.SpillReplicas, l.log)
		if err != nil {
			return fmt.Errorf("errorlog: start: %w", err)
		}
		l.spill = sp
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return ErrStopped
	}
	if l.started {
		return errors.New("errorlog: already started")
	}
	l.started = true
	go l.runWriter()
	go l.maintain()
	go l.drain()
	return nil
}

// Stop stops accepting events, writes everything pending, and returns when it
// is durable. If ctx ends first, the write in progress is abandoned, every
// event not yet durable gets an error wrapping ErrStopped, and Stop returns
// ctx's error. Calling Stop again returns nil at once.
func (l *Log) Stop(ctx context.Context) error {
	l.mu.Lock()
	first := !l.stopped
	l.stopped = true
	started := l.started
	l.mu.Unlock()
	if !first {
		return nil
	}
	if !started {
		b := l.swap()
		l.m.failed.Add(float64(len(b.events)))
		for _, e := range b.events {
			l.notify(e.done, ErrStopped)
		}
		return nil
	}
	close(l.closing)
	l.stopMaint()
	var err error
	select {
	case <-l.writerDone:
	case <-ctx.Done():
		l.abortWrites()
		<-l.writerDone
		err = fmt.Errorf("errorlog: stop: %w", ctx.Err())
	}
	<-l.maintDone
	<-l.drainDone
	l.abortWrites()
	return err
}

// Record accounts for ev and never blocks (except in sync mode, whose point is
// to block). ev's counter is always kept; its row is kept or not according to
// the mode, and dropped (counted) when BufferSize rows already wait.
//
// done is called exactly once: with nil once ev's counter delta, and its row
// where kept, is durable in Postgres or in the spill stream (also when ev was
// counted before: a redelivery succeeds); or with an error: ErrBufferFull,
// ErrStopped or ErrInvalidEvent at once (before Record returns), or a write
// error if Stop's context ended first. done runs on the writer goroutine, one
// batch after another, so it must be cheap and must not block: ack or nak a
// message. A panic in done is recovered and logged. done may be nil.
func (l *Log) Record(ev Event, done func(error)) {
	if done == nil {
		done = func(error) {}
	}
	ev = ev.cleaned()
	if err := ev.check(); err != nil {
		l.m.rejected.Inc()
		done(err)
		return
	}
	mode := l.mode.Load()
	// A delivery is counted, never detailed: no row in any mode, and
	// batched in sync mode too (sync is the error rows' legacy design).
	delivered := ev.Outcome == wire.OutcomeDelivered
	if mode.Name == ModeSync && !delivered {
		l.recordSync(ev, done)
		return
	}
	keep := !delivered && (mode.Name == ModeFull || mode.Name == ModeSample && l.sampler.keep(ev.Conversation, ev.Reason, l.now(), *mode))
	if keep && !l.cfg.KeepAddresses {
		ev.Address = clean(l.masker.mask(ev.Address), maxAddress)
	}

	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		l.m.rejected.Inc()
		done(ErrStopped)
		return
	}
	if len(l.cur.events) >= l.cfg.MaxPending {
		l.mu.Unlock()
		l.m.rejected.Inc()
		done(ErrBufferFull)
		return
	}
	dropped := false
	if keep {
		if len(l.cur.details) < l.cfg.BufferSize {
			l.cur.details = append(l.cur.details, ev)
		} else {
			dropped = true
		}
	}
	first := len(l.cur.events) == 0
	l.cur.add(ev, done)
	full := len(l.cur.events) >= l.cfg.BatchSize
	l.mu.Unlock()

	switch {
	case dropped:
		l.m.dropped.WithLabelValues("buffer_full").Inc()
	case !keep && !delivered:
		l.m.sampledOut.Inc()
	}
	if full {
		signal(l.kick)
	} else if first {
		signal(l.ready)
	}
}

// signal wakes the writer through c without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// swap takes the pending batch, leaving an empty one.
func (l *Log) swap() *batch {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.cur
	if l.cur = l.spare; l.cur == nil {
		l.cur = newBatch()
	}
	l.spare = nil
	return b
}

// recycle takes back a batch the writer has finished with, emptied, for the
// next swap; one that grew past four batches (a backlog while Postgres was
// away) is left to the collector.
func (l *Log) recycle(b *batch) {
	if cap(b.events) > 4*l.cfg.BatchSize {
		return
	}
	b.reset()
	l.mu.Lock()
	l.spare = b
	l.mu.Unlock()
}

// depth is the number of events pending, for the buffer-depth gauge.
func (l *Log) depth() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return float64(len(l.cur.events))
}

// notify calls a done callback, surviving its panics.
func (l *Log) notify(done func(error), err error) {
	defer func() {
		if r := recover(); r != nil {
			l.log.Error("errorlog: done callback panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	done(err)
}
