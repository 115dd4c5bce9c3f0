package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/errorlog"
)

// Defaults of a Publisher.
const (
	// QueueDefault is how many events wait for publishing; more are
	// dropped and counted (sluice_webhook_events_dropped_total).
	QueueDefault = 16384
	// ReloadIntervalDefault is how often the set of tenants with endpoints
	// is reloaded besides the change notices.
	ReloadIntervalDefault = 30 * time.Second
)

// Publisher turns outcomes into events in the stream, for the tenants
// that have endpoints asking for them. Its methods never block. Create it
// with NewPublisher, Start it once, Stop it once.
type Publisher struct {
	js     jetstream.JetStream
	store  *Store
	log    *slog.Logger
	m      *publisherMetrics
	reload time.Duration

	wanted atomic.Pointer[map[string]map[string]bool] // tenant → event → wanted
	queue  chan queued
	acks   chan publishing // futures of events published, awaited by ackLoop
	cancel context.CancelFunc
	stop   sync.Once
	wg     sync.WaitGroup // the reload and publish loops
	ackWG  sync.WaitGroup // ackLoop
	seq    atomic.Uint64  // for the ids of conversation events
}

// NewPublisher returns a Publisher over js and store's table, with a queue
// of queue events (0: QueueDefault).
func NewPublisher(js jetstream.JetStream, store *Store, queue int, logger *slog.Logger, reg prometheus.Registerer) (*Publisher, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if queue <= 0 {
		queue = QueueDefault
	}
	p := &Publisher{js: js, store: store, log: logger, reload: ReloadIntervalDefault, queue: make(chan queued, queue),
		acks: make(chan publishing, 4096)}
	empty := map[string]map[string]bool{}
	p.wanted.Store(&empty)
	var err error
	p.m, err = newPublisherMetrics(reg, func() float64 { return float64(len(p.queue)) })
	return p, err
}

// Wants reports whether tenant has an enabled endpoint asking for event.
func (p *Publisher) Wants(tenant, event string) bool { return (*p.wanted.Load())[tenant][event] }

// Notify publishes the event of a message's outcome, recorded and durable
// (orchestrator's Notifier). It is called on the error log's writer
// goroutine and costs a map lookup for a tenant without endpoints.
func (p *Publisher) Notify(ev errorlog.Event, then func()) {
	t := string(ev.Outcome)
	if !p.Wants(ev.Tenant, t) {
		runThen(then)
		return
	}
	p.enqueue(Event{ID: ev.ID + ":" + t, Type: t, Tenant: ev.Tenant, Conversation: ev.Conversation,
		Activation: ev.ID, Channel: ev.Channel, Reason: ev.Reason, At: time.Now().UTC()}, then)
}

// Quarantined publishes a conversation's quarantine.
func (p *Publisher) Quarantined(tenant, conversation, reason string) {
	if p.Wants(tenant, EventQuarantined) {
		p.enqueue(Event{ID: p.uniqueID(), Type: EventQuarantined, Tenant: tenant, Conversation: conversation, Reason: reason, At: time.Now().UTC()}, nil)
	}
}

// Purged publishes that n queued messages of a stopped conversation were
// purged.
func (p *Publisher) Purged(tenant, conversation string, n uint64) {
	if p.Wants(tenant, EventPurged) {
		p.enqueue(Event{ID: p.uniqueID(), Type: EventPurged, Tenant: tenant, Conversation: conversation, Count: n, At: time.Now().UTC()}, nil)
	}
}

func (p *Publisher) uniqueID() string {
	return "evt_" + strconv.FormatInt(time.Now().UnixNano(), 36) + strconv.FormatUint(p.seq.Add(1), 36)
}

// queued is an event waiting to be published, and what to run once it is
// stored or given up (nil for events of no message).
type queued struct {
	ev   Event
	then func()
}

// enqueue queues ev; when the queue is full the event is dropped, counted,
// and then runs at once (the message is not held for its event).
func (p *Publisher) enqueue(ev Event, then func()) {
	select {
	case p.queue <- queued{ev: ev, then: then}:
	default:
		p.m.dropped.WithLabelValues("queue_full").Inc()
		runThen(then)
	}
}

func runThen(then func()) {
	if then != nil {
		then()
	}
}

// Start loads the tenants with endpoints, follows their changes and starts
// publishing. It returns once the tenants are loaded.
func (p *Publisher) Start(ctx context.Context) error {
	if err := p.load(ctx); err != nil {
		return err
	}
	changed, sub, err := subscribeChanges(p.js.Conn())
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Go(func() {
		defer func() { _ = sub.Unsubscribe() }()
		reloadLoop(runCtx, p.reload, changed, func() {
			if err := p.load(runCtx); err != nil && runCtx.Err() == nil {
				p.log.Warn("webhook tenants not reloaded", "err", err)
			}
		})
	})
	p.wg.Go(func() { p.publishLoop(runCtx) })
	p.ackWG.Go(p.ackLoop)
	return nil
}

// subscribeChanges returns a channel that holds a signal whenever a Store
// announces a change, and the subscription feeding it.
func subscribeChanges(nc *nats.Conn) (<-chan struct{}, *nats.Subscription, error) {
	changed := make(chan struct{}, 1)
	sub, err := nc.Subscribe(ChangedSubject, func(*nats.Msg) {
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return nil, nil, fmt.Errorf("webhook: follow changes: %w", err)
	}
	return changed, sub, nil
}

// reloadLoop calls reload on every tick and every change (changed may be
// nil) until ctx ends.
func reloadLoop(ctx context.Context, every time.Duration, changed <-chan struct{}, reload func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-changed:
		}
		reload()
	}
}

func (p *Publisher) load(ctx context.Context) error {
	tenants, err := p.store.Tenants(ctx)
	if err != nil {
		return err
	}
	w := make(map[string]map[string]bool, len(tenants))
	for t, evs := range tenants {
		w[t] = map[string]bool{}
		for _, e := range evs {
			w[t][e] = true
		}
	}
	p.wanted.Store(&w)
	return nil
}

// publishLoop publishes queued events until ctx ends.
func (p *Publisher) publishLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case q := <-p.queue:
			p.publish(q)
		}
	}
}

func (p *Publisher) publish(q queued) {
	ev := q.ev
	data, err := json.Marshal(ev)
	if err != nil {
		p.m.dropped.WithLabelValues("publish_failed").Inc()
		runThen(q.then)
		return
	}
	f, err := p.js.PublishMsgAsync(&nats.Msg{Subject: Subject(ev.Tenant, ev.Type), Data: data},
		jetstream.WithMsgID(ev.Tenant+"."+ev.ID))
	if err != nil {
		p.m.dropped.WithLabelValues("publish_failed").Inc()
		p.log.Warn("webhook event not published", "tenant", ev.Tenant, "type", ev.Type, "err", err)
		runThen(q.then)
		return
	}
	p.acks <- publishing{f: f, tenant: ev.Tenant, typ: ev.Type, then: q.then}
}

// publishing is an event published, waiting for the stream's answer.
type publishing struct {
	f           jetstream.PubAckFuture
	tenant, typ string
	then        func()
}

// ackLoop counts the stream's answers until acks is closed.
func (p *Publisher) ackLoop() {
	for a := range p.acks {
		select {
		case <-a.f.Ok():
			p.m.published.Inc()
		case err := <-a.f.Err():
			p.m.dropped.WithLabelValues("publish_failed").Inc()
			p.log.Warn("webhook event not stored", "tenant", a.tenant, "type", a.typ, "err", err)
		}
		runThen(a.then)
	}
}

// Stop stops following changes, publishes what is queued and waits for
// the stream's answers until ctx ends. Calls after the first do nothing.
func (p *Publisher) Stop(ctx context.Context) {
	if p.cancel != nil {
		p.stop.Do(func() { p.stopOnce(ctx) })
	}
}

func (p *Publisher) stopOnce(ctx context.Context) {
	p.cancel()
	p.wg.Wait()
	// Publishing is asynchronous and the queue bounded: it is drained
	// whole; only the stream's answers are awaited until ctx ends.
	for drained := false; !drained; {
		select {
		case q := <-p.queue:
			p.publish(q)
		default:
			drained = true
		}
	}
	close(p.acks)
	waitUntil(ctx, &p.ackWG)
}
