package errorlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/sony/gobreaker/v2"

	"github.com/sluicehq/sluice/internal/ctxtime"
	"github.com/sluicehq/sluice/internal/jsensure"
)

// SpillStream holds error-log batches while Postgres is down, slow or locked.
// Bounded (DiscardNew at SpillMaxBytes: a full spill refuses, the batch stays
// pending and its messages wait), WorkQueue retention: a batch leaves the
// stream once it is committed to Postgres.
const (
	SpillStream   = "SLUICE_ERRORLOG_SPILL"
	spillSubject  = "sluice.errorlog.spill"
	spillConsumer = "errorlog_drain"
	// SpillMaxBytes bounds the spill stream: about 5M events with rows.
	SpillMaxBytes = 1 << 30
)

type spill struct {
	js   jetstream.JetStream
	cons jetstream.Consumer
}

func openSpill(ctx context.Context, js jetstream.JetStream, replicas int, logger *slog.Logger) (*spill, error) {
	s, err := jsensure.Stream(ctx, js, jetstream.StreamConfig{
		Name:        SpillStream,
		Description: "sluice error-log batches waiting for Postgres",
		Subjects:    []string{spillSubject},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		MaxBytes:    SpillMaxBytes,
		Discard:     jetstream.DiscardNew,
		Replicas:    replicas,
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("spill %w", err)
	}
	cons, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       spillConsumer,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Minute,
		MaxDeliver:    -1, // a spilled batch is retried until Postgres takes it
		MaxAckPending: 16,
	})
	if err != nil {
		return nil, fmt.Errorf("spill consumer: %w", err)
	}
	return &spill{js: js, cons: cons}, nil
}

// put publishes the chunks of one batch and waits for the stream to have them.
func (s *spill) put(ctx context.Context, chunks []spilled) error {
	for _, c := range chunks {
		data, err := json.Marshal(c)
		if err != nil {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = s.js.Publish(pctx, spillSubject, data)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// drain moves spilled batches back to Postgres unless the writer's breaker is
// open, one batch at a time, acking each after its commit. Replays are
// harmless: counters skip sequences already counted, rows already stored are
// skipped.
func (l *Log) drain() {
	defer close(l.drainDone)
	if l.spill == nil {
		return
	}
	for l.maintCtx.Err() == nil {
		// Half-open too: when nothing new is being recorded, a drained batch is
		// the probe that closes the breaker again.
		if l.breaker.State() == gobreaker.StateOpen {
			ctxtime.Sleep(l.maintCtx, time.Second)
			continue
		}
		mb, err := l.spill.cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			ctxtime.Sleep(l.maintCtx, time.Second)
			continue
		}
		for msg := range mb.Messages() {
			l.drainOne(msg)
		}
		if err := mb.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) && l.maintCtx.Err() == nil {
			l.log.Warn("errorlog: spill fetch failed", "err", err)
			ctxtime.Sleep(l.maintCtx, time.Second)
		}
	}
}

func (l *Log) drainOne(msg jetstream.Msg) {
	var s spilled
	if err := json.Unmarshal(msg.Data(), &s); err != nil || s.V < 1 || s.V > spillVersion {
		l.log.Error("errorlog: undecodable spill message; terminated", "err", err, "version", s.V)
		_ = msg.TermWithReason("undecodable spill batch")
		return
	}
	b := s.batch()
	written, err := l.breaker.Execute(func() (int64, error) { return l.writeDB(b, s.Source) })
	if err != nil {
		_ = msg.NakWithDelay(2 * time.Second)
		return
	}
	if err := msg.Ack(); err != nil {
		l.log.Warn("errorlog: ack of a drained spill batch failed; it will be replayed harmlessly", "err", err)
	}
	l.m.written.Add(float64(written))
	l.m.drained.Add(float64(len(b.events)))
}
