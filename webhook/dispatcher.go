package webhook

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/jsensure"
)

// Defaults of a Dispatcher's Config.
const (
	BatchMaxDefault     = 100
	BatchWaitDefault    = time.Second
	RetryBaseDefault    = time.Second
	RetryMaxDefault     = 5 * time.Minute
	DisableAfterDefault = 72 * time.Hour
	LeaseTTLDefault     = 15 * time.Second
	AckWaitDefault      = 30 * time.Second
)

// BucketName is the KV bucket of the dispatchers' leases and batch
// journal.
const BucketName = "sluice_webhooks"

// DispatcherConfig configures a Dispatcher. Zero values take the defaults.
type DispatcherConfig struct {
	// BatchMax is the most events in one request. Default 100.
	BatchMax int
	// BatchWait is how long a batch waits to fill. Default 1s.
	BatchWait time.Duration
	// Timeout bounds one request. Default 10s.
	Timeout time.Duration
	// RetryBase and RetryMax shape the backoff of failed requests: RetryBase
	// doubled per failure, capped at RetryMax. Defaults 1s and 5m.
	RetryBase, RetryMax time.Duration
	// DisableAfter disables an endpoint that has failed continuously for
	// this long. Default 72h.
	DisableAfter time.Duration
	// LeaseTTL is how long an endpoint's lease lasts unrenewed: another
	// process takes a dead owner's endpoints over after it. Default 15s.
	LeaseTTL time.Duration
	// AckWait is the endpoint consumers' AckWait (events held longer
	// without progress are redelivered). Default 30s.
	AckWait time.Duration
	// AllowInternal lets requests reach loopback and private addresses
	// (dev and test only).
	AllowInternal bool
	// Replicas is the bucket's replicas. Default 1.
	Replicas int
}

func (c *DispatcherConfig) setDefaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.BatchMax == 0 {
		c.BatchMax = BatchMaxDefault
	}
	set(&c.BatchWait, BatchWaitDefault)
	set(&c.Timeout, TimeoutDefault)
	set(&c.RetryBase, RetryBaseDefault)
	set(&c.RetryMax, RetryMaxDefault)
	set(&c.DisableAfter, DisableAfterDefault)
	set(&c.LeaseTTL, LeaseTTLDefault)
	set(&c.AckWait, AckWaitDefault)
	c.Replicas = max(c.Replicas, 1)
}

func (c *DispatcherConfig) validate() error {
	switch {
	case c.BatchMax < 1 || c.BatchMax > 1000:
		return fmt.Errorf("webhook: DispatcherConfig.BatchMax must be 1 to 1000, not %d", c.BatchMax)
	case c.BatchWait < 0 || c.Timeout < 0 || c.DisableAfter < 0:
		return errors.New("webhook: DispatcherConfig.BatchWait, Timeout and DisableAfter must not be negative")
	case c.RetryBase <= 0 || c.RetryMax < c.RetryBase:
		return errors.New("webhook: DispatcherConfig.RetryBase must be positive and RetryMax at least RetryBase")
	case c.LeaseTTL < 300*time.Millisecond:
		return fmt.Errorf("webhook: DispatcherConfig.LeaseTTL must be at least 300ms, not %v", c.LeaseTTL)
	case c.AckWait <= c.Timeout:
		return errors.New("webhook: DispatcherConfig.AckWait must be longer than Timeout")
	}
	return nil
}

// Dispatcher delivers events to the endpoints whose lease it holds. Create
// it with NewDispatcher, Start it once, Stop it once.
type Dispatcher struct {
	cfg    DispatcherConfig
	js     jetstream.JetStream
	store  *Store
	log    *slog.Logger
	m      *Metrics
	send   *sender
	owner  string
	stream jetstream.Stream
	kv     jetstream.KeyValue

	mu      sync.Mutex
	running map[string]context.CancelFunc // endpoint id → its runner's cancel
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// NewDispatcher returns a Dispatcher over js and store's endpoints.
func NewDispatcher(js jetstream.JetStream, store *Store, cfg DispatcherConfig, m *Metrics, logger *slog.Logger) (*Dispatcher, error) {
	logger, m, err := prepare(&cfg, m, logger)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return &Dispatcher{cfg: cfg, js: js, store: store, log: logger, m: m, send: newSender(cfg.Timeout, cfg.AllowInternal, m),
		owner: hex.EncodeToString(b), running: map[string]context.CancelFunc{}}, nil
}

// prepare sets cfg's defaults and checks it, and gives a logger and
// metrics that may be nil ones that are not.
func prepare(cfg *DispatcherConfig, m *Metrics, logger *slog.Logger) (*slog.Logger, *Metrics, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m, _ = NewMetrics(nil) // unregistered: cannot fail
	}
	return logger, m, nil
}

// EnsureBucket creates the dispatchers' KV bucket if it is missing.
func EnsureBucket(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := jsensure.KeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket: BucketName, Description: "sluice webhook dispatch: endpoint leases and the batch in flight per endpoint",
		History: 1, Storage: jetstream.FileStorage, Replicas: replicas,
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("webhook: bucket %s: %w", BucketName, err)
	}
	return kv, nil
}

// Start ensures the stream and the bucket and starts taking endpoints.
func (d *Dispatcher) Start(ctx context.Context) error {
	var err error
	if d.stream, err = EnsureStream(ctx, d.js, d.cfg.Replicas); err != nil {
		return err
	}
	if d.kv, err = EnsureBucket(ctx, d.js, d.cfg.Replicas); err != nil {
		return err
	}
	changed, sub, err := subscribeChanges(d.js.Conn())
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	d.reconcile(runCtx)
	d.wg.Go(func() {
		defer func() { _ = sub.Unsubscribe() }()
		reloadLoop(runCtx, d.cfg.LeaseTTL/3, changed, func() { d.reconcile(runCtx) })
	})
	return nil
}

// Stop stops every runner: a batch in flight is left to the next owner,
// which sends it again under the same webhook-id. Leases are released.
func (d *Dispatcher) Stop(ctx context.Context) {
	if d.cancel == nil {
		return
	}
	d.cancel()
	waitUntil(ctx, &d.wg)
}

// Owned returns the ids of the endpoints this process delivers to.
func (d *Dispatcher) Owned() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]string, 0, len(d.running))
	for id := range d.running {
		out = append(out, id)
	}
	return out
}

// reconcile starts a runner for each enabled endpoint whose lease it can
// take and stops those of endpoints deleted or disabled.
func (d *Dispatcher) reconcile(ctx context.Context) {
	eps, err := d.store.Enabled(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("webhook endpoints not loaded", "err", err)
		}
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	enabled := map[string]bool{}
	for _, ep := range eps {
		enabled[ep.ID] = true
		if _, ok := d.running[ep.ID]; ok {
			continue
		}
		rev, ok := d.takeLease(ctx, ep.ID)
		if !ok {
			continue
		}
		rctx, cancel := context.WithCancel(ctx)
		d.running[ep.ID] = cancel
		d.m.endpoints.Inc()
		d.wg.Go(func() {
			defer d.finished(ep.ID)
			d.run(rctx, ep, rev)
		})
	}
	for id, cancel := range d.running {
		if !enabled[id] {
			cancel()
		}
	}
}

func (d *Dispatcher) finished(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if cancel, ok := d.running[id]; ok {
		cancel()
		delete(d.running, id)
		d.m.endpoints.Dec()
	}
}

// lease is the value of lease.<endpoint>.
type lease struct {
	Owner string    `json:"owner"`
	Until time.Time `json:"until"`
}

func leaseKey(id string) string { return "lease." + id }

// takeLease takes endpoint id's lease if it is free or expired, returning
// its revision.
func (d *Dispatcher) takeLease(ctx context.Context, id string) (uint64, bool) {
	val, _ := json.Marshal(lease{Owner: d.owner, Until: time.Now().Add(d.cfg.LeaseTTL)})
	e, err := d.kv.Get(ctx, leaseKey(id))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		rev, err := d.kv.Create(ctx, leaseKey(id), val)
		return rev, err == nil
	case err != nil:
		return 0, false
	}
	var l lease
	if json.Unmarshal(e.Value(), &l) == nil && time.Now().Before(l.Until) && l.Owner != d.owner {
		return 0, false
	}
	rev, err := d.kv.Update(ctx, leaseKey(id), val, e.Revision())
	return rev, err == nil
}

// renewLease extends a held lease; an error means it was lost.
func (d *Dispatcher) renewLease(ctx context.Context, id string, rev uint64) (uint64, error) {
	val, _ := json.Marshal(lease{Owner: d.owner, Until: time.Now().Add(d.cfg.LeaseTTL)})
	rev, err := d.kv.Update(ctx, leaseKey(id), val, rev)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errLeaseLost, err)
	}
	return rev, nil
}

// releaseLease gives a lease up so that another process may take it at
// once.
func (d *Dispatcher) releaseLease(id string, rev uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = d.kv.Delete(ctx, leaseKey(id), jetstream.LastRevision(rev))
}

// ConsumerName is the durable consumer of endpoint id.
func ConsumerName(id string) string { return "wh_" + id }

// DeleteConsumer removes endpoint id's consumer (after the endpoint is
// deleted); a missing one is not an error.
func DeleteConsumer(ctx context.Context, js jetstream.JetStream, id string) error {
	err := js.DeleteConsumer(ctx, StreamName, ConsumerName(id))
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("webhook: delete consumer: %w", err)
	}
	return nil
}

// filters are the subjects of ep's events.
func filters(ep Endpoint) []string {
	out := make([]string, len(ep.Events))
	for i, e := range ep.Events {
		out[i] = Subject(ep.Tenant, e)
	}
	return out
}
