package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/wire"
)

// Until issue 14 one stream, SLUICE_ACTIVATIONS, held both lanes. A node of
// this release narrows it to the bulk lane before it creates
// SLUICE_TRANSACTIONAL (two streams may not claim the same subjects), then
// moves the transactional messages it still holds. Workers of the earlier
// release must be stopped first: their transactional consumer on
// SLUICE_ACTIVATIONS is deleted here.

// narrowLegacy drops the transactional subjects from an existing
// SLUICE_ACTIVATIONS that still claims them, with the consumer that read them.
func narrowLegacy(ctx context.Context, js jetstream.JetStream) error {
	s, err := js.Stream(ctx, StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("orchestrator: stream %s: %w", StreamName, err)
	}
	cfg := s.CachedInfo().Config
	tx := wire.Subject(wire.LaneTransactional, "*", "*")
	if !slices.Contains(cfg.Subjects, tx) {
		return nil
	}
	if err := js.DeleteConsumer(ctx, StreamName, TransactionalConsumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("orchestrator: split %s: delete its transactional consumer: %w", StreamName, err)
	}
	cfg.Subjects = slices.DeleteFunc(cfg.Subjects, func(s string) bool { return s == tx })
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("orchestrator: split %s: narrow it to the bulk lane: %w", StreamName, err)
	}
	return nil
}

// moveTransactional republishes each transactional message bulk still holds
// to its subject, now SLUICE_TRANSACTIONAL's, under its own Nats-Msg-Id, and
// deletes it from bulk once the new stream has stored it. A process that
// dies between the two leaves a copy that the next start moves again; the
// transactional stream's duplicate window drops it if that start comes
// within the window (default 2 minutes).
func moveTransactional(ctx context.Context, js jetstream.JetStream, bulk jetstream.Stream, logger *slog.Logger) error {
	filter := wire.SubjectPrefix + string(wire.LaneTransactional) + ".>"
	info, err := bulk.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return fmt.Errorf("orchestrator: split %s: %w", StreamName, err)
	}
	if len(info.State.Subjects) == 0 {
		return nil
	}
	moved := 0
	for seq := info.State.FirstSeq; ; {
		raw, err := bulk.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return fmt.Errorf("orchestrator: split %s: read at %d: %w", StreamName, seq, err)
		}
		msg := &nats.Msg{Subject: raw.Subject, Data: raw.Data, Header: raw.Header}
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			return fmt.Errorf("orchestrator: split %s: move %d: %w", StreamName, raw.Sequence, err)
		}
		if err := bulk.DeleteMsg(ctx, raw.Sequence); err != nil {
			return fmt.Errorf("orchestrator: split %s: delete moved %d: %w", StreamName, raw.Sequence, err)
		}
		moved++
		seq = raw.Sequence + 1
	}
	logger.Info("moved the transactional messages of the earlier single stream", "from", StreamName, "to", TransactionalStreamName, "messages", moved)
	return nil
}
