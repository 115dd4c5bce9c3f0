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

// StreamName is the JetStream stream that holds queued bulk activations. The
// name predates the split of the lanes (issue 14): it held both until then.
const StreamName = "SLUICE_ACTIVATIONS"

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

// EnsureStreams creates SLUICE_ACTIVATIONS (bulk) and SLUICE_TRANSACTIONAL,
// or updates existing ones to cfg where JetStream allows (replicas, max
// bytes, duplicates window, subjects) and refuses one whose retention or
// storage differ (jsensure.ErrIncompatible). A SLUICE_ACTIVATIONS of an
// earlier release, which held both lanes, is narrowed to the bulk lane and
// the transactional messages it still holds are moved (moveTransactional).
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (Streams, error) {
	cfg.setDefaults()
	if err := narrowLegacy(ctx, js); err != nil {
		return Streams{}, err
	}
	var out Streams
	var err error
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
			Retention:  jetstream.WorkQueuePolicy,
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
	if err = moveTransactional(ctx, js, out.Bulk, cfg.Logger); err != nil {
		return Streams{}, err
	}
	return out, nil
}

// PurgeConversation removes every queued activation of a conversation from
// both lanes' streams, and returns how many were removed. Each
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
		msg, err := js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.PURGE."+StreamOf(lane), req)
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
	var total uint64
	for _, lane := range []wire.Lane{wire.LaneTransactional, wire.LaneBulk} {
		s, err := js.Stream(ctx, StreamOf(lane))
		if err != nil {
			return 0, fmt.Errorf("orchestrator: queued: %w", err)
		}
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
