package orchestrator

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/jsensure"
	"github.com/sluicehq/sluice/wire"
)

// StreamName is the JetStream stream that holds queued bulk activations.
// Its retention is Limits, not WorkQueue: an acked message is not removed
// one by one (the server's per-ack interest check across the conversations'
// consumers, a delete and its tombstone, a Raft proposal in a cluster), but
// with the others below the conversation consumers' ack floors, by the
// workers' reclaim pass ([bulkSource.reclaim]), whole blocks at a time.
// WorkQueue retention cannot be changed in place, so the stream has a new
// name; SLUICE_ACTIVATIONS of earlier releases is retired (see
// LegacyStreamName).
const StreamName = "SLUICE_BULK"

// LegacyStreamName is the bulk stream of earlier releases (WorkQueue
// retention; until issue 14 it held both lanes). EnsureStreams moves what it
// still holds to the streams of this release and deletes it.
const LegacyStreamName = "SLUICE_ACTIVATIONS"

// TransactionalStreamName is the stream of queued transactional activations.
// The lane has a stream of its own so that a burst being published into the
// bulk stream (its ingest queue, its lock, the file store's work when a
// drain empties it) never delays a password reset: the default 8M incident
// measured a transactional p99 of 149 ms and a maximum of 3.0 s with one
// stream, 42 ms and 0.55 s with two (BENCHMARKS.md).
const TransactionalStreamName = "SLUICE_TRANSACTIONAL"

// StreamOf names the stream that holds lane's activations.
func StreamOf(l wire.Lane) string {
	if l == wire.LaneTransactional {
		return TransactionalStreamName
	}
	return StreamName
}

// Source identifies a stream's sequences for the error log (errorlog.Event.
// Source): its name and creation time, which tells a recreated stream, whose
// sequences restart at 1, from the old one.
func Source(info *jetstream.StreamInfo) string {
	return info.Config.Name + "@" + info.Created.UTC().Format(time.RFC3339Nano)
}

// DefaultDuplicateWindow is the activation streams' default duplicate
// window. The server keeps every Nats-Msg-Id of the window in memory, a few
// small objects each: at 50,000 publishes a second a 2-minute window (the
// NATS default) holds six million of them, several hundred MB that the
// server's garbage collector marks again and again; the goroutines that
// allocate meanwhile are drafted to help (in one process with an embedded
// server, the workers' and the transactional lane's too). 30 seconds holds
// a quarter of that (BENCHMARKS.md, 2026-12-07: a 4M burst's assists 2.2–2.4
// CPU s instead of 18–27) and still covers the API's retries (three
// attempts of 5 s, Publisher.Await) and a request resumed after its lease
// (10 s).
const DefaultDuplicateWindow = 30 * time.Second

// StreamConfig configures the activation streams.
type StreamConfig struct {
	// Replicas is the number of replicas of each stream. Default 1 (one
	// server); use 3 on a three-node cluster.
	Replicas int
	// DuplicateWindow is how long a Nats-Msg-Id is remembered for dedupe of
	// retried publishes. Default DefaultDuplicateWindow. A Publisher made
	// with the same window sends a retry only while it is still covered.
	DuplicateWindow time.Duration
	// MaxBytes bounds the bulk stream's storage; publishes are refused
	// beyond it (DiscardNew) rather than dropping queued messages. Default
	// 8 GiB.
	MaxBytes int64
	// TransactionalMaxBytes bounds the transactional stream's storage.
	// Default 1 GiB (about two million messages).
	TransactionalMaxBytes int64
	// Logger receives the changes made to an existing stream. Default: discard.
	Logger *slog.Logger
}

func (c *StreamConfig) setDefaults() {
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 8 << 30
	}
	if c.TransactionalMaxBytes == 0 {
		c.TransactionalMaxBytes = 1 << 30
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Streams are the two activation streams.
type Streams struct {
	Bulk, Transactional jetstream.Stream
}

// EnsureStreams creates SLUICE_BULK and SLUICE_TRANSACTIONAL, or updates
// existing ones to cfg where JetStream allows (replicas, max bytes,
// duplicates window, subjects) and refuses one whose retention or storage
// differ (jsensure.ErrIncompatible). A SLUICE_ACTIVATIONS of an earlier
// release is retired: its subjects taken away, its consumers deleted, the
// messages it still holds moved to this release's streams, then deleted
// (retireLegacy, moveLegacy).
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (Streams, error) {
	cfg.setDefaults()
	legacy, err := retireLegacy(ctx, js)
	if err != nil {
		return Streams{}, err
	}
	var out Streams
	for _, l := range []wire.Lane{wire.LaneBulk, wire.LaneTransactional} {
		max := cfg.MaxBytes
		if l == wire.LaneTransactional {
			max = cfg.TransactionalMaxBytes
		}
		s, err := jsensure.Stream(ctx, js, jetstream.StreamConfig{
			Name:        StreamOf(l),
			Description: "sluice " + string(l) + " activations, one message per recipient",
			// Exactly the lane's subjects with two tokens each: a publish to
			// any other subject is refused at the door instead of sitting in
			// a stream where no consumer would ever read it.
			Subjects:   []string{wire.Subject(l, "*", "*")},
			Retention:  retentionOf(l),
			Storage:    jetstream.FileStorage,
			Replicas:   cfg.Replicas,
			Duplicates: cfg.DuplicateWindow,
			MaxBytes:   max,
			Discard:    jetstream.DiscardNew,
			MaxMsgSize: 64 << 10,
		}, cfg.Logger)
		if err != nil {
			return Streams{}, fmt.Errorf("orchestrator: ensure %w", err)
		}
		if l == wire.LaneBulk {
			out.Bulk = s
		} else {
			out.Transactional = s
		}
	}
	if err = moveLegacy(ctx, js, legacy, cfg.Logger); err != nil {
		return Streams{}, err
	}
	return out, nil
}

// retentionOf is a lane's stream retention: the transactional lane's one
// consumer removes each message as it acks it (WorkQueue); the bulk lane's
// messages stay until reclaimed below its consumers' ack floors (Limits).
func retentionOf(l wire.Lane) jetstream.RetentionPolicy {
	if l == wire.LaneTransactional {
		return jetstream.WorkQueuePolicy
	}
	return jetstream.LimitsPolicy
}
