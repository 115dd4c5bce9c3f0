package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/wire"
)

// PurgeConversation removes every queued activation of a conversation from
// both lanes' streams, and returns how many it removed that no worker had
// handled: each such message counted once, as purged. Stop a conversation
// (so workers hold its messages) and let the sends they had begun end
// before purging it (control.StopConfig.Settle): a message whose send is
// running when it is removed would be counted both delivered and purged.
//
// The transactional stream is a work queue, so what it holds is what no one
// handled, and a subject purge's count is exact. The bulk stream keeps acked
// messages until the reclaim pass removes them, so its part is taken in
// three steps, each exact however many callers purge the same conversation
// at once (two API replicas, a stop and the sweep): the messages its
// consumer delivered and got back unsent (held ones, Nak'd) are taken
// through the consumer and acked, each counted by the one caller it was
// delivered to; then, if nothing delivered is left unacked, every message
// the consumer delivered is acked, so the subject is purged up to there
// uncounted and after there counted. A message waiting for a retry (Nak'd
// with a delay: a transient failure, a provider outage) cannot be taken yet
// and keeps the second step from running: then only the acked messages
// below the consumer's ack floor go, and the sweep of stopped conversations
// (Service.SweepStopped) takes the rest, counted, once the retry is due.
//
// The count is of messages removed, not of the messages they stand for: two
// parked copies of one message (see Service.park: a worker killed between
// the copy's publish and the original's ack, the original parked again past
// the duplicate window) are both counted as purged. Telling them apart
// would mean reading every message the purge removes.
func PurgeConversation(ctx context.Context, js jetstream.JetStream, tenant, conversation string) (uint64, error) {
	if !wire.ValidToken(tenant) || !wire.ValidToken(conversation) {
		return 0, fmt.Errorf("orchestrator: purge: invalid tenant or conversation id %q/%q", tenant, conversation)
	}
	total, err := purgeSubject(ctx, js, TransactionalStreamName, wire.Subject(wire.LaneTransactional, tenant, conversation), 0)
	if err != nil {
		return total, err
	}
	n, err := purgeBulk(ctx, js, wire.Subject(wire.LaneBulk, tenant, conversation))
	return total + n, err
}

// purgeBulk is PurgeConversation's bulk part, for one conversation subject.
func purgeBulk(ctx context.Context, js jetstream.JetStream, subj string) (uint64, error) {
	n, err := purgeThroughConsumer(ctx, js, subj)
	if errors.Is(err, errNoConsumer) {
		// No consumer, or it went meanwhile: none of the subject's messages
		// was acked (a consumer is deleted only once its subject is empty,
		// here by discovery after a concurrent purge emptied it).
		m, err := purgeSubject(ctx, js, StreamName, subj, 0)
		return n + m, err
	}
	return n, err
}

// errNoConsumer is purgeThroughConsumer's answer when the conversation has
// no consumer, or it was deleted while the purge ran.
var errNoConsumer = errors.New("orchestrator: no conversation consumer")

// purgeThroughConsumer is purgeBulk with the conversation's consumer: what
// it delivered and got back is taken through it, then the subject is purged
// up to its last delivered message uncounted and after it counted, unless
// a message waits for a retry (see PurgeConversation).
func purgeThroughConsumer(ctx context.Context, js jetstream.JetStream, subj string) (uint64, error) {
	cons, err := js.Consumer(ctx, StreamName, bulkConsumerName(subj))
	if err != nil {
		return 0, consumerErr(subj, err)
	}
	taken, err := takeGivenBack(ctx, cons)
	if err != nil {
		return taken, consumerErr(subj, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return taken, consumerErr(subj, err)
	}
	if info.NumAckPending > 0 {
		_, err := purgeSubject(ctx, js, StreamName, subj, info.AckFloor.Stream+1)
		return taken, err
	}
	if _, err := purgeSubject(ctx, js, StreamName, subj, max(info.AckFloor.Stream, info.Delivered.Stream)+1); err != nil {
		return taken, err
	}
	n, err := purgeSubject(ctx, js, StreamName, subj, 0)
	return taken + n, err
}

// consumerErr is errNoConsumer for an error that says the consumer is gone
// (a pull request to a deleted consumer finds no responder), else err.
func consumerErr(subj string, err error) error {
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, nats.ErrNoResponders) {
		return errNoConsumer
	}
	return fmt.Errorf("orchestrator: purge %s: %w", subj, err)
}

// takeGivenBack fetches what cons delivered and got back unacked (the
// server redelivers those before anything new) and acks each, returning
// how many the server confirmed. It stops at the first message the consumer
// had not delivered before, which it takes too (it is unhandled as well).
func takeGivenBack(ctx context.Context, cons jetstream.Consumer) (uint64, error) {
	info := cons.CachedInfo() // as of the lookup, just before
	if info.NumAckPending == 0 {
		return 0, nil
	}
	delivered := info.Delivered.Stream
	var taken uint64
	for {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return taken, err
		}
		got, past := 0, false
		for msg := range batch.Messages() {
			got++
			meta, err := msg.Metadata()
			if err != nil {
				return taken, err
			}
			if err := msg.DoubleAck(ctx); err != nil {
				return taken, err
			}
			taken++
			past = past || meta.Sequence.Stream > delivered
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !strings.Contains(err.Error(), "MaxAckPending") {
			return taken, err
		}
		if got == 0 || past {
			return taken, nil
		}
	}
}

// purgeSubject purges subj (every subject when empty) from stream, below
// seq when seq > 0, and returns
// the count the server reports (jetstream.Stream.Purge does not return it,
// so this sends the API request itself). Each purge is atomic on the
// server, so concurrent callers together remove each message once.
func purgeSubject(ctx context.Context, js jetstream.JetStream, stream, subj string, seq uint64) (uint64, error) {
	body := map[string]any{}
	if subj != "" {
		body["filter"] = subj
	}
	if seq > 0 {
		body["seq"] = seq
	}
	req, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	msg, err := js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.PURGE."+stream, req)
	if err != nil {
		return 0, fmt.Errorf("orchestrator: purge %s: %w", subj, err)
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
		return 0, fmt.Errorf("orchestrator: purge %s: %w", subj, err)
	}
	if resp.Error != nil || !resp.Success {
		desc := "not successful"
		if resp.Error != nil {
			desc = resp.Error.Description
		}
		return 0, fmt.Errorf("orchestrator: purge %s: %s", subj, desc)
	}
	return resp.Purged, nil
}

// QueuedConversation returns how many activations of a conversation wait
// to be handled, in both lanes: what a stop would purge now (less what the
// workers finish meanwhile). In the bulk lane that is BulkQueued.
func QueuedConversation(ctx context.Context, js jetstream.JetStream, tenant, conversation string) (uint64, error) {
	if !wire.ValidToken(tenant) || !wire.ValidToken(conversation) {
		return 0, fmt.Errorf("orchestrator: queued: invalid tenant or conversation id %q/%q", tenant, conversation)
	}
	total, err := subjectCount(ctx, js, TransactionalStreamName, wire.Subject(wire.LaneTransactional, tenant, conversation))
	if err != nil {
		return 0, err
	}
	n, err := BulkQueued(ctx, js, tenant, conversation)
	return total + n, err
}

// BulkQueued returns how many bulk activations of a conversation wait to be
// handled: what its consumer has not delivered and what it delivered and
// has not had acked; with no consumer, every message of its subject. The
// stream's own count of the subject also holds acked messages the reclaim
// pass has not yet removed.
func BulkQueued(ctx context.Context, js jetstream.JetStream, tenant, conversation string) (uint64, error) {
	subj := wire.Subject(wire.LaneBulk, tenant, conversation)
	cons, err := js.Consumer(ctx, StreamName, bulkConsumerName(subj))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return subjectCount(ctx, js, StreamName, subj)
	}
	if err != nil {
		return 0, fmt.Errorf("orchestrator: queued %s: %w", subj, err)
	}
	info := cons.CachedInfo() // as of the lookup, just now
	return info.NumPending + uint64(info.NumAckPending), nil
}

// subjectCount is how many messages stream holds on subj.
func subjectCount(ctx context.Context, js jetstream.JetStream, stream, subj string) (uint64, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("orchestrator: queued: %w", err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return 0, fmt.Errorf("orchestrator: queued %s: %w", subj, err)
	}
	var total uint64
	for _, n := range info.State.Subjects {
		total += n
	}
	return total, nil
}
