package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Earlier releases kept the bulk lane (and, until the split of the lanes,
// the transactional lane too) in SLUICE_ACTIVATIONS, a WorkQueue stream.
// Retention cannot change in place, so a node of this release retires it:
// its subjects are taken away (two streams may not claim the same subjects)
// and its consumers deleted, before SLUICE_BULK and SLUICE_TRANSACTIONAL are
// created; then each message it still holds is published again to its own
// subject, which lands it in this release's stream of its lane, and the
// emptied stream is deleted. Workers of the earlier release must be stopped
// first: their consumers are deleted here.

// retiredSubject is what a retired SLUICE_ACTIVATIONS claims while its
// messages are moved out: no one publishes to it.
const retiredSubject = "sluice.retired.activations"

// retireLegacy takes the lanes' subjects and the consumers away from an
// existing SLUICE_ACTIVATIONS, and returns it (nil when there is none).
func retireLegacy(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, LegacyStreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("orchestrator: stream %s: %w", LegacyStreamName, err)
	}
	cfg := s.CachedInfo().Config
	if len(cfg.Subjects) == 1 && cfg.Subjects[0] == retiredSubject {
		return s, nil // retired by an earlier start that did not finish the move
	}
	names := s.ConsumerNames(ctx)
	for name := range names.Name() {
		if err := s.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("orchestrator: retire %s: delete consumer %s: %w", LegacyStreamName, name, err)
		}
	}
	if err := names.Err(); err != nil {
		return nil, fmt.Errorf("orchestrator: retire %s: list its consumers: %w", LegacyStreamName, err)
	}
	cfg.Subjects = []string{retiredSubject}
	if s, err = js.UpdateStream(ctx, cfg); err != nil {
		return nil, fmt.Errorf("orchestrator: retire %s: take its subjects away: %w", LegacyStreamName, err)
	}
	return s, nil
}

// moveLegacy republishes each message legacy still holds to its subject, now
// this release's stream's, under its own Nats-Msg-Id, deletes it from legacy
// once the new stream has stored it, and deletes legacy once it is empty. A
// process that dies between a publish and the delete leaves a copy that the
// next start moves again; the new stream's duplicate window drops it if that
// start comes within the window.
func moveLegacy(ctx context.Context, js jetstream.JetStream, legacy jetstream.Stream, logger *slog.Logger) error {
	if legacy == nil {
		return nil
	}
	info, err := legacy.Info(ctx)
	if err != nil {
		return fmt.Errorf("orchestrator: retire %s: %w", LegacyStreamName, err)
	}
	moved := 0
	for seq := info.State.FirstSeq; info.State.Msgs > 0; {
		raw, err := legacy.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return fmt.Errorf("orchestrator: retire %s: read at %d: %w", LegacyStreamName, seq, err)
		}
		msg := &nats.Msg{Subject: raw.Subject, Data: raw.Data, Header: raw.Header}
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			return fmt.Errorf("orchestrator: retire %s: move %d: %w", LegacyStreamName, raw.Sequence, err)
		}
		if err := legacy.DeleteMsg(ctx, raw.Sequence); err != nil {
			return fmt.Errorf("orchestrator: retire %s: delete moved %d: %w", LegacyStreamName, raw.Sequence, err)
		}
		moved++
		seq = raw.Sequence + 1
	}
	if err := js.DeleteStream(ctx, LegacyStreamName); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("orchestrator: retire %s: delete it: %w", LegacyStreamName, err)
	}
	logger.Info("retired the earlier bulk stream, its messages moved to this release's streams", "from", LegacyStreamName, "messages", moved)
	return nil
}
