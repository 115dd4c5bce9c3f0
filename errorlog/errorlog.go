package errorlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	// ErrBufferFull is reported to done by Record, at once, when the buffer holds
	// Config.BufferSize events. The caller should nak the message with a delay.
	ErrBufferFull = errors.New("errorlog: buffer full")
	// ErrStopped is reported to done for events recorded after Stop, and (wrapped)
	// for buffered events that Stop's context did not leave time to write.
	ErrStopped = errors.New("errorlog: stopped")
)

// Config tunes a Log. The zero value is valid only with KeepAddresses set;
// otherwise MaskKey is required.
type Config struct {
	// BatchSize is the most events written per transaction (one COPY).
	// Default 1000.
	BatchSize int
	// FlushInterval is the longest an event waits for its batch to fill before
	// the batch is written anyway. Default 100ms.
	FlushInterval time.Duration
	// BufferSize is the most events waiting to be written; Record reports
	// ErrBufferFull beyond it. Default 50000.
	BufferSize int
	// MaskKey is the HMAC-SHA256 key MaskAddress uses for addresses, at least 16
	// bytes. Required unless KeepAddresses.
	MaskKey []byte
	// KeepAddresses stores addresses in clear instead of masked. Default false.
	KeepAddresses bool
}

const minMaskKey = 16

func (c *Config) setDefaults() {
	if c.BatchSize == 0 {
		c.BatchSize = 1000
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = 100 * time.Millisecond
	}
	if c.BufferSize == 0 {
		c.BufferSize = 50000
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("errorlog: Config.BatchSize must be positive (0 means 1000), got %d", c.BatchSize))
	}
	if c.FlushInterval < 0 {
		errs = append(errs, fmt.Errorf("errorlog: Config.FlushInterval must be positive (0 means 100ms), got %v", c.FlushInterval))
	}
	if c.BufferSize < 0 {
		errs = append(errs, fmt.Errorf("errorlog: Config.BufferSize must be positive (0 means 50000), got %d", c.BufferSize))
	}
	if !c.KeepAddresses && len(c.MaskKey) < minMaskKey {
		errs = append(errs, fmt.Errorf("errorlog: Config.MaskKey must be at least %d bytes (got %d) unless Config.KeepAddresses is set", minMaskKey, len(c.MaskKey)))
	}
	return errors.Join(errs...)
}

// item is an event waiting in the buffer with its callback.
type item struct {
	ev   Event
	done func(error)
}

// Log is the error log. Create it with New, then Start; Record from any number of
// goroutines; Stop once.
type Log struct {
	pool *pgxpool.Pool
	cfg  Config
	log  *slog.Logger
	m    *metrics
	now  func() time.Time

	mu      sync.RWMutex // guards stopped, started and sending on ch
	ch      chan item
	stopped bool
	started bool

	writeCtx    context.Context // canceled when Stop's context ends: abandon writes
	abortWrites context.CancelFunc
	maintCtx    context.Context // canceled when Stop begins: partition upkeep ends
	stopMaint   context.CancelFunc
	writerDone  chan struct{}
	maintDone   chan struct{}

	// Writer-goroutine scratch space, reused between batches.
	seen map[eventKey]struct{}
	rows []Event

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
		ch:         make(chan item, cfg.BufferSize),
		writerDone: make(chan struct{}),
		maintDone:  make(chan struct{}),
		seen:       make(map[eventKey]struct{}, cfg.BatchSize),
	}
	l.writeCtx, l.abortWrites = context.WithCancel(context.Background())
	l.maintCtx, l.stopMaint = context.WithCancel(context.Background())
	m, err := newMetrics(reg, func() float64 { return float64(len(l.ch)) })
	if err != nil {
		return nil, err
	}
	l.m = m
	return l, nil
}

// Start makes sure the day partitions exist (yesterday through the day after
// tomorrow, UTC), then starts the writer and the hourly partition upkeep. ctx
// bounds only the initial partition check: the writer runs until Stop.
func (l *Log) Start(ctx context.Context) error {
	if err := l.ensurePartitions(ctx); err != nil {
		return fmt.Errorf("errorlog: start: %w", err)
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
	return nil
}

// Stop stops accepting events, writes everything already buffered, and returns
// when it is committed. If ctx ends first, the write in progress is abandoned,
// every event not yet written gets an error wrapping ErrStopped, and Stop returns
// ctx's error. Stopping a Log that was never started fails its buffered events
// with ErrStopped. Calling Stop again returns nil at once.
func (l *Log) Stop(ctx context.Context) error {
	l.mu.Lock()
	first := !l.stopped
	if first {
		l.stopped = true
		close(l.ch)
	}
	started := l.started
	l.mu.Unlock()
	if !first {
		return nil
	}
	if !started {
		for it := range l.ch {
			l.m.failed.Inc()
			l.notify(it.done, ErrStopped)
		}
		return nil
	}
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
	l.abortWrites()
	return err
}

// Record queues ev to be written and never blocks. done is called exactly once:
// with nil after the transaction holding ev has committed (also when ev was
// already stored: duplicates succeed), or with an error: ErrBufferFull or
// ErrStopped immediately (from the calling goroutine, before Record returns),
// ErrInvalidEvent immediately, or a write error if Stop's context ended first.
//
// done runs on the writer goroutine for queued events, one batch after another,
// so it must be cheap and must not block: ack or nak a message, signal a
// channel. A panic in done is recovered and logged. done may be nil.
func (l *Log) Record(ev Event, done func(error)) {
	if done == nil {
		done = func(error) {}
	}
	it := item{ev: ev.prepared(l.cfg.MaskKey, l.cfg.KeepAddresses), done: done}
	if err := it.ev.check(); err != nil {
		l.m.rejected.Inc()
		done(err)
		return
	}
	l.mu.RLock()
	if l.stopped {
		l.mu.RUnlock()
		l.m.rejected.Inc()
		done(ErrStopped)
		return
	}
	select {
	case l.ch <- it:
		l.mu.RUnlock()
	default:
		l.mu.RUnlock()
		l.m.rejected.Inc()
		done(ErrBufferFull)
	}
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
