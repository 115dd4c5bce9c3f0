package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Replay bounds.
const (
	// replayAttempts is how many times a replayed batch is tried.
	replayAttempts = 5
	// replaysAtOnce bounds the replays one process runs together.
	replaysAtOnce = 4
)

// ErrReplayBusy is returned when the endpoint's previous replay is still
// running, or the process runs replaysAtOnce already.
var ErrReplayBusy = errors.New("webhook: a replay is already running")

// Replayer re-delivers the events of a time range still retained in the
// stream (StreamMaxAge) to one endpoint, in the background of the process
// that was asked (an API process). A replayed batch has a new webhook-id
// (it is a new message; each event keeps its id, data.replay is true) and
// is tried replaysAttempts times with backoff before the replay is
// abandoned. Create it with NewReplayer; Stop ends running replays.
type Replayer struct {
	js    jetstream.JetStream
	store *Store
	cfg   DispatcherConfig
	send  *sender
	m     *Metrics
	log   *slog.Logger

	mu      sync.Mutex
	running map[string]bool
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// NewReplayer returns a Replayer delivering as cfg says (batch size and
// wait, timeout, backoff, internal addresses).
func NewReplayer(js jetstream.JetStream, store *Store, cfg DispatcherConfig, m *Metrics, logger *slog.Logger) (*Replayer, error) {
	logger, m, err := prepare(&cfg, m, logger)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Replayer{js: js, store: store, cfg: cfg, send: newSender(cfg.Timeout, cfg.AllowInternal, m), m: m, log: logger,
		running: map[string]bool{}, ctx: ctx, cancel: cancel}, nil
}

// Replay starts re-delivering tenant's endpoint id's events stored from
// from to to, and returns the endpoint.
func (r *Replayer) Replay(ctx context.Context, tenant, id string, from, to time.Time) (Endpoint, error) {
	if from.IsZero() || to.IsZero() || !from.Before(to) {
		return Endpoint{}, fmt.Errorf("%w: from and to: want two times, from before to", ErrInvalid)
	}
	if oldest := time.Now().Add(-StreamMaxAge); to.Before(oldest) {
		return Endpoint{}, fmt.Errorf("%w: to: events are kept %v; nothing before %s is left", ErrInvalid, StreamMaxAge, oldest.UTC().Format(time.RFC3339))
	}
	ep, err := r.store.withSecret(ctx, tenant, id)
	if err != nil {
		return Endpoint{}, err
	}
	stream, err := EnsureStream(ctx, r.js, 0)
	if err != nil {
		return Endpoint{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running[id] || len(r.running) >= replaysAtOnce || r.ctx.Err() != nil {
		return Endpoint{}, ErrReplayBusy
	}
	r.running[id] = true
	target := ep // with its secret; ep is returned without
	r.wg.Go(func() {
		defer func() { r.mu.Lock(); delete(r.running, id); r.mu.Unlock() }()
		result := "done"
		if err := r.run(r.ctx, stream, target, from, to); err != nil {
			result = "failed"
			r.log.Warn("webhook replay abandoned", "endpoint", id, "err", err)
		}
		r.m.replays.WithLabelValues(result).Inc()
	})
	ep.Secret = ""
	return ep, nil
}

// run sends the range's events in batches.
func (r *Replayer) run(ctx context.Context, stream jetstream.Stream, ep Endpoint, from, to time.Time) error {
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: filters(ep), DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &from,
	})
	if err != nil {
		return err
	}
	for done := false; !done; {
		var events []Event
		events, done, err = r.fetch(ctx, cons, to)
		if err != nil {
			return err
		}
		if len(events) > 0 {
			if err := r.deliver(ctx, ep, events); err != nil {
				return err
			}
		}
	}
	return nil
}

// fetch returns the next events stored up to to, and whether they are the
// last.
func (r *Replayer) fetch(ctx context.Context, cons jetstream.Consumer, to time.Time) ([]Event, bool, error) {
	fctx, cancel := context.WithTimeout(ctx, r.cfg.BatchWait)
	defer cancel()
	batch, err := cons.Fetch(r.cfg.BatchMax, jetstream.FetchContext(fctx))
	if err != nil {
		return nil, false, err
	}
	var events []Event
	done := true
	for msg := range batch.Messages() {
		meta, err := msg.Metadata()
		if err != nil || meta.Timestamp.After(to) {
			return events, true, nil
		}
		var ev Event
		if json.Unmarshal(msg.Data(), &ev) == nil {
			events = append(events, ev)
		}
		done = meta.NumPending == 0
	}
	return events, done, nil
}

// deliver sends one replayed batch, retrying under its id.
func (r *Replayer) deliver(ctx context.Context, ep Endpoint, events []Event) error {
	data, err := body(ep.ID, events, true, time.Now())
	if err != nil {
		return err
	}
	id := newMessageID()
	for attempt := 1; ; attempt++ {
		err = r.send.send(ctx, ep, id, data)
		if err == nil {
			r.m.events.Add(float64(len(events)))
			return nil
		}
		if attempt == replayAttempts || !sleep(ctx, backoff(attempt, r.cfg.RetryBase, r.cfg.RetryMax)) {
			return err
		}
	}
}

// Stop ends running replays (waiting until ctx ends at most).
func (r *Replayer) Stop(ctx context.Context) {
	r.cancel()
	waitUntil(ctx, &r.wg)
}
