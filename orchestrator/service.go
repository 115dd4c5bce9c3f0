package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/wire"
)

// TransactionalConsumer is the durable consumer of the transactional lane.
const TransactionalConsumer = "sluice_transactional"

// Config configures the worker pipeline. Zero values take the documented
// defaults.
type Config struct {
	Transactional LaneConfig
	Bulk          LaneConfig
	// MaxVarsBytes bounds the encoded template variables of one activation;
	// a larger map is recorded as vars_too_large. Default
	// wire.DefaultMaxVarsBytes (8 KiB).
	MaxVarsBytes int
	// SendTimeout bounds one provider call. Default 10s.
	SendTimeout time.Duration
	// RetryBase and RetryMax shape the NakWithDelay backoff of transient
	// failures: RetryBase doubled per delivery, capped at RetryMax, ±20%
	// jitter. Defaults 1s and 2m.
	RetryBase, RetryMax time.Duration
	// DiscoverInterval is how often the bulk lane looks for conversations
	// with queued messages. Default 250ms.
	DiscoverInterval time.Duration
	// StatsInterval is how often consumer pending gauges are refreshed.
	// Default 5s.
	StatsInterval time.Duration
	// BulkYield is the scheduler latency (99th percentile over 100ms) above
	// which the bulk lane yields: the number of bulk messages handled at
	// once halves (down to 2), and grows back by one every 100ms below it
	// (bulkGate). Default 1ms; negative turns the yielding off.
	BulkYield time.Duration
	// ConversationConsumersInMemory keeps the bulk lane's conversation
	// consumers' state in the servers' memory rather than in files
	// (bulkSource.createConsumer): less work for the server per message,
	// most with many conversations at once (BENCHMARKS.md), but a restart of
	// a single server, or of every replica of a cluster, forgets which
	// messages were in flight and which acked ones the reclaim pass had not
	// yet removed, and they are sent again. Off by default; meant for
	// replicated streams, where losing a node loses nothing.
	ConversationConsumersInMemory bool
}

func (c *Config) setDefaults() {
	c.Transactional.setDefaults(wire.LaneTransactional)
	c.Bulk.setDefaults(wire.LaneBulk)
	if c.MaxVarsBytes == 0 {
		c.MaxVarsBytes = wire.DefaultMaxVarsBytes
	}
	if c.SendTimeout == 0 {
		c.SendTimeout = 10 * time.Second
	}
	if c.RetryBase == 0 {
		c.RetryBase = time.Second
	}
	if c.RetryMax == 0 {
		c.RetryMax = 2 * time.Minute
	}
	if c.DiscoverInterval == 0 {
		c.DiscoverInterval = 250 * time.Millisecond
	}
	if c.StatsInterval == 0 {
		c.StatsInterval = 5 * time.Second
	}
	if c.BulkYield == 0 {
		c.BulkYield = time.Millisecond
	}
}

func (c *Config) validate() error {
	if err := c.Transactional.validate(wire.LaneTransactional); err != nil {
		return err
	}
	if err := c.Bulk.validate(wire.LaneBulk); err != nil {
		return err
	}
	switch {
	case c.SendTimeout >= c.Transactional.AckWait || c.SendTimeout >= c.Bulk.AckWait:
		return errors.New("orchestrator: SendTimeout must be shorter than each lane's AckWait")
	case c.RetryBase <= 0 || c.RetryMax < c.RetryBase:
		return errors.New("orchestrator: RetryBase must be positive and RetryMax at least RetryBase")
	}
	return nil
}

func (c *Config) lane(l wire.Lane) *LaneConfig {
	if l == wire.LaneBulk {
		return &c.Bulk
	}
	return &c.Transactional
}

// Service consumes both lanes. Start returns once consuming has begun; Stop
// drains.
type Service struct {
	js     jetstream.JetStream
	txJS   jetstream.JetStream // the transactional lane's connection; nil: js
	cfg    Config
	log    *slog.Logger
	m      *metrics
	sm     *streamGauges
	pipe   *pipeline
	stream jetstream.Stream

	cancelFetch context.CancelFunc // stops fetching
	cancelWork  context.CancelFunc // aborts in-flight sends; only when a drain times out
	fetchers    sync.WaitGroup
	pools       []*pool
	bulk        *bulkSource
	trans       jetstream.Consumer
	stopped     bool
	controls    *Controls
}

// NewService wires the pipeline. providers maps each channel to its
// provider; elog receives undeliverable messages.
func NewService(js jetstream.JetStream, providers map[dispatch.Channel]dispatch.Provider, elog ErrorLog, cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if elog == nil {
		return nil, errors.New("orchestrator: an ErrorLog is required")
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("orchestrator: metrics: %w", err)
	}
	sm, err := newStreamGauges(reg)
	if err != nil {
		return nil, err
	}
	s := &Service{js: js, cfg: cfg, log: logger, m: m, sm: sm, controls: newControls()}
	s.pipe = &pipeline{providers: providers, elog: elog, cfg: &s.cfg, m: m, log: logger, controls: s.controls, now: time.Now}
	s.pipe.park = s.park
	return s, nil
}

// SetTransactionalConn has the transactional lane fetch and ack over js,
// a connection of its own, so that its messages never queue behind the
// bulk lane's batches on one socket. Call it before Start; without it both
// lanes share the service's connection.
func (s *Service) SetTransactionalConn(js jetstream.JetStream) { s.txJS = js }

// Start ensures the stream and the transactional consumer exist and starts
// fetching on both lanes.
func (s *Service) Start(ctx context.Context) error {
	stream, err := s.js.Stream(ctx, StreamName)
	if err != nil {
		return fmt.Errorf("orchestrator: stream %s (run EnsureStreams first): %w", StreamName, err)
	}
	txJS := s.txJS
	if txJS == nil {
		txJS = s.js
	}
	txStream, err := txJS.Stream(ctx, TransactionalStreamName)
	if err != nil {
		return fmt.Errorf("orchestrator: stream %s (run EnsureStreams first): %w", TransactionalStreamName, err)
	}
	s.stream = stream
	s.pipe.sources = map[wire.Lane]string{wire.LaneBulk: Source(stream.CachedInfo()), wire.LaneTransactional: Source(txStream.CachedInfo())}
	tc := s.cfg.Transactional
	s.trans, err = txStream.CreateOrUpdateConsumer(ctx, consumerConfig(TransactionalConsumer, wire.Subject(wire.LaneTransactional, "*", "*"), tc, 0))
	if err != nil {
		return fmt.Errorf("orchestrator: transactional consumer: %w", err)
	}

	fetchCtx, cancelFetch := context.WithCancel(context.Background())
	workCtx, cancelWork := context.WithCancel(context.Background())
	s.cancelFetch, s.cancelWork = cancelFetch, cancelWork

	tp := newPool(wire.LaneTransactional, tc.Workers, tc.AckWait, s.pipe.handle)
	bp := newPool(wire.LaneBulk, s.cfg.Bulk.Workers, s.cfg.Bulk.AckWait, s.pipe.handle)
	s.m.bulkLimit.Set(float64(s.cfg.Bulk.Workers))
	if s.cfg.BulkYield > 0 {
		bp.gate = newBulkGate(s.cfg.BulkYield, s.cfg.Bulk.Workers, s.m.bulkLimit)
		tp.seen = bp.gate.transactional
		s.fetchers.Add(1)
		go func() { defer s.fetchers.Done(); bp.gate.run(fetchCtx.Done()) }()
	}
	tp.start(workCtx, tc.Workers)
	bp.start(workCtx, s.cfg.Bulk.Workers)
	s.pools = []*pool{tp, bp}

	s.pipe.acks = map[wire.Lane]*ackReplay{
		wire.LaneBulk:          s.replayAcks(fetchCtx, wire.LaneBulk, s.js.Conn(), StreamName, s.cfg.Bulk),
		wire.LaneTransactional: s.replayAcks(fetchCtx, wire.LaneTransactional, txJS.Conn(), TransactionalStreamName, tc),
	}
	ts := &transactionalSource{cons: s.trans, batch: tc.FetchBatch, log: s.log}
	s.bulk = newBulkSource(s.js, stream, s.cfg.Bulk, s.cfg.DiscoverInterval, s.log, s.m)
	s.bulk.inMemory = s.cfg.ConversationConsumersInMemory
	s.bulk.isClosed = func(ch dispatch.Channel) bool { return s.providerClosed(ch) && !s.controls.ChannelDisabled(ch) }
	s.bulk.controls = s.controls
	s.pipe.unavailable = s.bulk.deferred
	if err := s.bulk.discover(ctx); err != nil {
		s.log.Warn("first bulk discovery failed; retrying in the background", "err", err)
	}
	s.pipe.tpl = newTemplates(s.log)
	s.fetchers.Add(5)
	go func() { defer s.fetchers.Done(); s.pipe.tpl.watch(fetchCtx, s.js) }()
	go func() { defer s.fetchers.Done(); ts.run(fetchCtx, tp) }()
	go func() { defer s.fetchers.Done(); s.bulk.run(fetchCtx, bp) }()
	go func() { defer s.fetchers.Done(); s.bulk.discoverLoop(fetchCtx) }()
	go func() { defer s.fetchers.Done(); s.statsLoop(fetchCtx) }()
	s.log.Info("workers started",
		"transactional_workers", tc.Workers, "bulk_workers", s.cfg.Bulk.Workers,
		"ack_wait", tc.AckWait, "max_deliver", tc.MaxDeliver)
	return nil
}

// replayAcks remembers the lane's acks and sends them again when the server
// announces a new leader for one of the stream's consumers, and when nc has
// reconnected (see ackReplay), until ctx ends.
func (s *Service) replayAcks(ctx context.Context, lane wire.Lane, nc *nats.Conn, stream string, c LaneConfig) *ackReplay {
	r := newAckReplay(c.MaxAckPending+c.FetchBatch, s.m.reacks.MustCurryWith(prometheus.Labels{"lane": string(lane)}), nc.Publish)
	sub, err := nc.Subscribe(leaderElectedPrefix+stream+".*", r.leaderElected)
	if err != nil {
		s.log.Warn("cannot follow consumer leader changes; acks lost with a leader wait for AckWait", "stream", stream, "err", err)
	}
	reconnected := nc.StatusChanged(nats.CONNECTED)
	s.fetchers.Add(1)
	go func() {
		defer s.fetchers.Done()
		defer nc.RemoveStatusListener(reconnected)
		if sub != nil {
			defer func() { _ = sub.Unsubscribe() }()
		}
		sweep := time.NewTicker(ackReplayIdle / 2)
		defer sweep.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-reconnected:
				if n := r.replayRepeatedly(stream, "", reackReconnected); n > 0 {
					s.log.Info("acks sent again after reconnecting", "lane", lane, "acks", n)
				}
			case now := <-sweep.C:
				r.forget(now.Add(-ackReplayIdle))
			}
		}
	}()
	return r
}

// Stop stops fetching, lets the workers finish every message already
// fetched, and returns. If ctx ends first, in-flight sends are cancelled
// (their messages are redelivered after AckWait) and ctx's error returned.
// Callers flush the error log after Stop, so that the acks of recorded
// messages are sent. Stop is not safe for concurrent use; a second call
// returns nil.
func (s *Service) Stop(ctx context.Context) error {
	if s.cancelFetch == nil || s.stopped {
		return nil
	}
	s.stopped = true
	s.cancelFetch()
	done := make(chan struct{})
	go func() {
		s.fetchers.Wait()
		for _, p := range s.pools {
			p.close()
		}
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		s.cancelWork()
		<-done
		err = fmt.Errorf("orchestrator: drain cut short: %w", ctx.Err())
	}
	return err
}

// LaneLoad is one lane's load in this process.
type LaneLoad struct {
	Lane wire.Lane
	// Workers is the lane's concurrency; InFlight how many messages its
	// workers are handling now.
	Workers, InFlight int
}

// Load returns each lane's load, transactional first; nothing before Start.
func (s *Service) Load() []LaneLoad {
	out := make([]LaneLoad, 0, len(s.pools))
	for _, p := range s.pools {
		out = append(out, LaneLoad{Lane: p.lane, Workers: p.workers, InFlight: int(p.inFlight.Load())})
	}
	return out
}

// SetSuppressions has the pipeline check every valid recipient against
// the tenants' suppression lists before sending (a suppressed message is
// counted suppressed and never sent) and report the providers' permanent
// refusals to them. Call it before Start; nil turns the check off.
func (s *Service) SetSuppressions(supp Suppressions) { s.pipe.supp = supp }

// SetNotifier has every recorded outcome told to n once its count is
// durable. Call it before Start.
func (s *Service) SetNotifier(n Notifier) { s.pipe.notify = n }

// SetUnsubscribe has the pipeline add the headers u gives (List-Unsubscribe
// and List-Unsubscribe-Post, unsubscribe.Signer) to every bulk-lane email.
// Call it before Start; nil sends bulk email without them.
func (s *Service) SetUnsubscribe(u Unsubscribe) { s.pipe.unsub = u }

// Controls returns the live control state the service's lanes consult;
// the caller keeps it current (node feeds it from the control plane's
// watches). Every conversation is active and every channel enabled until
// told otherwise.
func (s *Service) Controls() *Controls { return s.controls }

// providerClosed reports whether ch's provider accepts sends: false while its
// circuit breaker is open. Providers without a breaker are always closed.
func (s *Service) providerClosed(ch dispatch.Channel) bool {
	b, ok := s.pipe.providers[ch].(interface{ Open() bool })
	return !ok || !b.Open()
}

func (s *Service) statsLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.StatsInterval)
	defer t.Stop()
	for {
		if info, err := s.trans.Info(ctx); err == nil {
			s.m.pending.WithLabelValues(string(wire.LaneTransactional)).Set(float64(info.NumPending))
			s.m.ackPending.WithLabelValues(string(wire.LaneTransactional)).Set(float64(info.NumAckPending))
		}
		p, ap := s.bulk.pendingTotals(ctx)
		s.m.pending.WithLabelValues(string(wire.LaneBulk)).Set(float64(p))
		s.m.ackPending.WithLabelValues(string(wire.LaneBulk)).Set(float64(ap))
		s.sm.update(ctx, s.js)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
