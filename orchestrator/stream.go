package orchestrator

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamName is the JetStream stream that holds queued activations.
const StreamName = "SLUICE_ACTIVATIONS"

// StreamConfig configures SLUICE_ACTIVATIONS.
type StreamConfig struct {
	// Replicas is the number of stream replicas. Default 1 (one server);
	// use 3 on a three-node cluster.
	Replicas int
	// DuplicateWindow is how long a Nats-Msg-Id is remembered for dedupe of
	// retried publishes. Default 2m. The server keeps every id of the window
	// in memory, so it is a trade between retry horizon and memory at
	// millions of messages per minute.
	DuplicateWindow time.Duration
	// MaxBytes bounds the stream's storage; publishes are refused beyond it
	// (DiscardNew) rather than dropping queued messages. Default 8 GiB.
	MaxBytes int64
}

func (c *StreamConfig) setDefaults() {
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = 2 * time.Minute
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 8 << 30
	}
}

// EnsureStream creates SLUICE_ACTIVATIONS or updates it to cfg.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	cfg.setDefaults()
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamName,
		Description: "sluice activations, one message per recipient",
		// Exactly the two lanes with two tokens each: a publish to any other
		// subject is refused at the door instead of sitting in the stream
		// where no consumer would ever read it.
		Subjects:   []string{Subject(LaneTransactional, "*", "*"), Subject(LaneBulk, "*", "*")},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Replicas:   cfg.Replicas,
		Duplicates: cfg.DuplicateWindow,
		MaxBytes:   cfg.MaxBytes,
		Discard:    jetstream.DiscardNew,
		MaxMsgSize: 64 << 10,
	})
	if err != nil {
		return nil, fmt.Errorf("orchestrator: ensure stream %s: %w", StreamName, err)
	}
	return s, nil
}
