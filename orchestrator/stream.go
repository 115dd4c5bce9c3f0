package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/jsensure"
	"github.com/sluicehq/sluice/wire"
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
	// Logger receives the changes made to an existing stream. Default: discard.
	Logger *slog.Logger
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

// EnsureStream creates SLUICE_ACTIVATIONS, or updates an existing one to cfg
// where JetStream allows (replicas, max bytes, duplicates window) and refuses
// one whose retention or storage differ (jsensure.ErrIncompatible).
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	cfg.setDefaults()
	s, err := jsensure.Stream(ctx, js, jetstream.StreamConfig{
		Name:        StreamName,
		Description: "sluice activations, one message per recipient",
		// Exactly the two lanes with two tokens each: a publish to any other
		// subject is refused at the door instead of sitting in the stream
		// where no consumer would ever read it.
		Subjects:   []string{wire.Subject(wire.LaneTransactional, "*", "*"), wire.Subject(wire.LaneBulk, "*", "*")},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Replicas:   cfg.Replicas,
		Duplicates: cfg.DuplicateWindow,
		MaxBytes:   cfg.MaxBytes,
		Discard:    jetstream.DiscardNew,
		MaxMsgSize: 64 << 10,
	}, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("orchestrator: ensure %w", err)
	}
	return s, nil
}

// PurgeConversation removes every queued activation of a conversation from
// SLUICE_ACTIVATIONS, in both lanes, and returns how many were removed. Each
// purge is atomic on the server, so concurrent callers (two API replicas
// stopping the same conversation) together remove each message once, and the
// sum of their counts is exact. Messages being processed when it runs are
// removed too: stop a conversation (so workers hold its messages) before
// purging it.
func PurgeConversation(ctx context.Context, js jetstream.JetStream, tenant, conversation string) (uint64, error) {
	if !wire.ValidToken(tenant) || !wire.ValidToken(conversation) {
		return 0, fmt.Errorf("orchestrator: purge: invalid tenant or conversation id %q/%q", tenant, conversation)
	}
	var total uint64
	for _, lane := range []wire.Lane{wire.LaneTransactional, wire.LaneBulk} {
		// jetstream.Stream.Purge does not return the count the server
		// reports, so this sends the API request itself.
		req, err := json.Marshal(map[string]string{"filter": wire.Subject(lane, tenant, conversation)})
		if err != nil {
			return total, err
		}
		msg, err := js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.PURGE."+StreamName, req)
		if err != nil {
			return total, fmt.Errorf("orchestrator: purge %s: %w", wire.Subject(lane, tenant, conversation), err)
		}
		var resp struct {
			Success bool   `json:"success"`
			Purged  uint64 `json:"purged"`
			Error   *struct {
				Code        int    `json:"code"`
				Description string `json:"description"`
			} `json:"error"`
		}
		if err := json.Unmarshal(msg.Data, &resp); err != nil {
			return total, fmt.Errorf("orchestrator: purge %s: %w", wire.Subject(lane, tenant, conversation), err)
		}
		if resp.Error != nil || !resp.Success {
			desc := "not successful"
			if resp.Error != nil {
				desc = resp.Error.Description
			}
			return total, fmt.Errorf("orchestrator: purge %s: %s", wire.Subject(lane, tenant, conversation), desc)
		}
		total += resp.Purged
	}
	return total, nil
}

// QueuedConversation returns how many activations of a conversation the
// stream holds, in both lanes: what a stop would purge now (less what the
// workers finish meanwhile).
func QueuedConversation(ctx context.Context, js jetstream.JetStream, tenant, conversation string) (uint64, error) {
	if !wire.ValidToken(tenant) || !wire.ValidToken(conversation) {
		return 0, fmt.Errorf("orchestrator: queued: invalid tenant or conversation id %q/%q", tenant, conversation)
	}
	s, err := js.Stream(ctx, StreamName)
	if err != nil {
		return 0, fmt.Errorf("orchestrator: queued: %w", err)
	}
	var total uint64
	for _, lane := range []wire.Lane{wire.LaneTransactional, wire.LaneBulk} {
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(wire.Subject(lane, tenant, conversation)))
		if err != nil {
			return 0, fmt.Errorf("orchestrator: queued %s: %w", wire.Subject(lane, tenant, conversation), err)
		}
		for _, n := range info.State.Subjects {
			total += n
		}
	}
	return total, nil
}
