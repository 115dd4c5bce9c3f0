package orchestrator

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/orchestrator/control"
	"github.com/sluicehq/sluice/wire"
)

// holdDelay is how long a held message of the transactional lane (its
// conversation paused, stopped or quarantined, or its channel disabled)
// waits before it is looked at again: the time a resume or an enable takes
// to reach it.
const holdDelay = time.Second

// Controls is the live control state that the lanes consult before fetching
// and before sending: conversation states and disabled channels, kept current
// by the control plane's watches (node wires them). The zero value is not
// usable; Service.Controls returns the service's. Safe for concurrent use.
//
// How each lane holds messages:
//
//   - bulk: a conversation that is not active is never fetched (its consumer
//     is left out of the round-robin), so its queued messages cost the other
//     conversations nothing; the few already fetched when the change arrives
//     are Nak'd back to pending. A conversation whose messages wait for a
//     disabled channel is skipped the same way once one of its messages has
//     shown which channel it uses.
//   - transactional: one consumer serves every conversation, so a held
//     message is NakWithDelay'd for holdDelay without counting as an
//     outcome. Each held message holds one of the lane's MaxAckPending slots
//     while it waits and comes back once per holdDelay: pausing a
//     transactional conversation is meant for small ones.
type Controls struct {
	mu       sync.RWMutex
	convs    map[string]control.ConversationState // by "<tenant>.<conversation>", only those not active
	disabled map[dispatch.Channel]bool
	// onActive, when set, learns that a conversation was made active again
	// (automatic quarantine starts its window over).
	onActive func(tenant, conversation string)
}

func newControls() *Controls {
	return &Controls{convs: make(map[string]control.ConversationState), disabled: make(map[dispatch.Channel]bool)}
}

// SetConversation records a conversation's state.
func (c *Controls) SetConversation(tenant, conversation string, st control.ConversationState) {
	c.mu.Lock()
	key := tenant + "." + conversation
	_, wasHeld := c.convs[key]
	if st == control.StateActive || st == "" {
		delete(c.convs, key)
	} else {
		c.convs[key] = st
	}
	onActive := c.onActive
	c.mu.Unlock()
	if wasHeld && (st == control.StateActive || st == "") && onActive != nil {
		onActive(tenant, conversation)
	}
}

// SetChannel records whether a channel is disabled.
func (c *Controls) SetChannel(ch dispatch.Channel, disabled bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if disabled {
		c.disabled[ch] = true
	} else {
		delete(c.disabled, ch)
	}
}

// Conversation returns a conversation's state as last seen.
func (c *Controls) Conversation(tenant, conversation string) control.ConversationState {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if st, ok := c.convs[tenant+"."+conversation]; ok {
		return st
	}
	return control.StateActive
}

// ChannelDisabled reports whether ch is disabled.
func (c *Controls) ChannelDisabled(ch dispatch.Channel) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.disabled[ch]
}

// parkID is a parked copy's Nats-Msg-Id: the original's lane (the two
// streams' sequences overlap) and stream sequence.
func parkID(l wire.Lane, seq uint64) string {
	prefix := "park:" // a transactional message's, as before bulk ones were parked too
	if l == wire.LaneBulk {
		prefix = "held:"
	}
	return prefix + strconv.FormatUint(seq, 10)
}

// OriginHeader names, on a parked copy, the message it stands for: the
// stream (Source) and stream sequence of the message first parked, kept
// through further parkings. The copy's outcome is counted under that
// sequence, so that two copies of one message are counted once: a worker
// killed between publishing a copy and acknowledging the original leaves the
// original to be redelivered after AckWait, when the copy's Nats-Msg-Id may
// have left the duplicate window, and parked again.
const OriginHeader = "Sluice-Origin"

// origin is the error log's identity of a message: its stream's Source and
// its sequence there.
type origin struct {
	source string
	seq    uint64
}

func (o origin) String() string { return strconv.FormatUint(o.seq, 10) + " " + o.source }

// parseOrigin reads an OriginHeader value; ok is false for none or a
// malformed one.
func parseOrigin(v string) (o origin, ok bool) {
	seq, source, found := strings.Cut(v, " ")
	if !found || source == "" {
		return origin{}, false
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil || n == 0 {
		return origin{}, false
	}
	return origin{source: source, seq: n}, true
}

// heldSubject reports whether the conversation of an activation subject is
// not active.
func (c *Controls) heldSubject(subject string) bool {
	_, t, conv, ok := wire.SubjectParts(subject)
	return ok && c.Conversation(t, conv) != control.StateActive
}

// park moves a held message to its conversation's bulk subject, where it
// waits without costing the lanes anything (the bulk lane does not fetch a
// held conversation), and flows in the bulk lane once the conversation is
// active again: a paused transactional conversation resumes at bulk
// priority, a held bulk message goes to the end of its conversation's
// queue. The copy is published (deduplicated by the original's lane and
// stream sequence within the duplicate window) before the original is
// acknowledged; purging by conversation removes either. A retry after the
// window (a worker killed between the two steps: the original comes back
// after AckWait) publishes a second copy: both carry the first original's
// OriginHeader, so the second is sent again at most (a duplicate send,
// reported apart) and counted once.
func (s *Service) park(ctx context.Context, msg jetstream.Msg, a *wire.Activation) error {
	meta, err := msg.Metadata()
	if err != nil {
		return err
	}
	moved := *a
	moved.Lane = wire.LaneBulk
	data, err := wire.Encode(&moved)
	if err != nil {
		return err
	}
	// A copy parked again keeps its origin (read, as the pipeline reads it,
	// from the bulk stream only).
	from := msg.Headers().Get(OriginHeader)
	if _, ok := parseOrigin(from); !ok || meta.Stream != StreamName {
		from = origin{source: s.pipe.sourceOf(meta.Stream), seq: meta.Sequence.Stream}.String()
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = s.js.PublishMsg(pctx, &nats.Msg{
		Subject: wire.Subject(wire.LaneBulk, a.Tenant, a.Conversation),
		Data:    data,
		Header: nats.Header{
			jetstream.MsgIDHeader: []string{parkID(a.Lane, meta.Sequence.Stream)},
			OriginHeader:          []string{from},
		},
	})
	if err != nil {
		return fmt.Errorf("orchestrator: park %s: %w", msg.Subject(), err)
	}
	if err := msg.DoubleAck(pctx); err != nil {
		// Redelivered and parked again: the copy is deduplicated.
		return fmt.Errorf("orchestrator: ack parked %s: %w", msg.Subject(), err)
	}
	return nil
}

// stopped returns the stopped conversations as "<tenant>.<conversation>".
func (c *Controls) stopped() map[string]bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[string]bool)
	for k, st := range c.convs {
		if st == control.StateStopped {
			out[k] = true
		}
	}
	return out
}

// SweepStopped calls sweep for every stopped conversation that still has
// messages queued (in either lane's stream), once per conversation. It
// costs one info request per stream, plus one call per such conversation.
func (s *Service) SweepStopped(ctx context.Context, sweep func(ctx context.Context, tenant, conversation string)) error {
	stopped := s.controls.stopped()
	if len(stopped) == 0 {
		return nil
	}
	done := make(map[string]bool)
	for _, name := range []string{TransactionalStreamName, StreamName} {
		stream, err := s.js.Stream(ctx, name)
		if err != nil {
			return err
		}
		info, err := stream.Info(ctx, jetstream.WithSubjectFilter(wire.SubjectPrefix+">"))
		if err != nil {
			return err
		}
		for subj, n := range info.State.Subjects {
			_, t, c, ok := wire.SubjectParts(subj)
			if !ok || n == 0 || !stopped[t+"."+c] || done[t+"."+c] {
				continue
			}
			done[t+"."+c] = true
			sweep(ctx, t, c)
		}
	}
	return nil
}
