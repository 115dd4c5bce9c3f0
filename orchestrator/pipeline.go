package orchestrator

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/orchestrator/control"
	"github.com/sluicehq/sluice/wire"
)

// ErrorLog is where the pipeline records every message's outcome: counted
// exactly once per stream sequence, with a detail row for messages not
// delivered where the mode keeps one. Record must not block; done is called
// once the event is durable (nil) or could not be made durable (non-nil),
// and must stay cheap: the message is acked from it.
type ErrorLog interface {
	Record(ev errorlog.Event, done func(error))
}

// pipeline decides the outcome of one message.
type pipeline struct {
	providers map[dispatch.Channel]dispatch.Provider
	elog      ErrorLog
	cfg       *Config
	m         *metrics
	log       *slog.Logger
	// unavailable, when set, learns which channel a conversation's
	// messages wait for, so the bulk lane can skip it while its breaker
	// is open.
	unavailable func(subject string, ch dispatch.Channel)
	// controls, when set, holds the messages of conversations that are not
	// active and of disabled channels.
	controls *Controls
	// quarantine, when set, watches each conversation's invalid ratio.
	quarantine *quarantine
	// park, when set, moves a held transactional message to its
	// conversation's bulk subject.
	park func(ctx context.Context, msg jetstream.Msg, a *wire.Activation) error
	// tpl, when set, renders each message from its conversation's template.
	tpl *templates
	// supp, when set, holds the tenants' suppression lists: a suppressed
	// recipient is never sent to, and a provider's permanent refusal puts
	// the recipient on the list.
	supp Suppressions
	// unsub, when set, gives the unsubscribe headers of bulk email.
	unsub Unsubscribe
	// now is the clock expiry is checked against.
	now func() time.Time
	// notify, when set, hears every outcome once its count is durable
	// (delivery-status webhooks).
	notify Notifier
	// acks, when set, remembers each lane's acks, to send them again when
	// a consumer's leader changes (ackReplay).
	acks map[wire.Lane]*ackReplay
	// sources names each lane's stream for the error log (Source): the
	// sequences of the two streams overlap.
	sources map[wire.Lane]string
}

// Notifier hears each message's outcome once its count has committed
// (webhook.Publisher). Notify is called on the error log's writer
// goroutine: it must not block. It calls then, which acks the message,
// once the outcome's event is stored (or at once when nobody wants it, or
// when it cannot be stored, counted), so that a process killed before the
// event is stored leaves the message unacked: redelivered, counted once,
// and its event published again (stored once, by its id).
type Notifier interface {
	Notify(ev errorlog.Event, then func())
}

// Unsubscribe gives the List-Unsubscribe headers of a bulk email to one
// recipient (unsubscribe.Signer), nil when it has none.
type Unsubscribe interface {
	Headers(tenant, conversation, address string) map[string]string
}

// Suppressions is the tenants' suppression lists as the pipeline uses them
// (suppression.Mirror): Suppressed answers from memory, never from
// Postgres; Suppress must not block.
type Suppressions interface {
	Suppressed(tenant, address string) bool
	Suppress(tenant, address string, reason wire.Reason)
}

// ack is the terminal acknowledgement of an outcome.
type ack int

const (
	ackOK   ack = iota // Ack: processed (delivered, invalid address, rejected)
	ackTerm            // TermWithReason: poison, never to be redelivered
)

func (p *pipeline) handle(ctx context.Context, lane wire.Lane, msg jetstream.Msg) {
	start := time.Now()
	defer func() { p.m.processing.WithLabelValues(string(lane)).Observe(time.Since(start).Seconds()) }()

	meta, err := msg.Metadata()
	if err != nil {
		// Not a JetStream message: nothing to ack, nothing to record.
		p.log.Error("message without JetStream metadata", "subject", msg.Subject(), "err", err)
		return
	}
	if p.completedBefore(lane, msg, meta) {
		return
	}
	a, err := wire.Decode(msg.Data(), p.cfg.MaxVarsBytes)
	if err != nil {
		var ee *wire.EnvelopeError
		errors.As(err, &ee)
		p.recordPoison(lane, msg, meta, a, ee.Reason, ee.Detail)
		return
	}
	if l, t, c, ok := wire.SubjectParts(msg.Subject()); !ok || l != a.Lane || t != a.Tenant || c != a.Conversation {
		p.recordPoison(lane, msg, meta, a, wire.ReasonSubjectMismatch, "envelope lane/tenant/conversation differ from subject "+msg.Subject())
		return
	}
	ch := dispatch.Channel(a.Channel)
	if p.controls != nil {
		if st := p.controls.Conversation(a.Tenant, a.Conversation); st != control.StateActive {
			p.hold(ctx, lane, msg, a, string(st))
			return
		}
	}
	if a.Expired(p.now()) {
		// Taken too late to be of use (a one-time password after an
		// outage): counted, never sent.
		p.record(lane, msg, meta, p.event(msg, meta, a, wire.ReasonExpired, "expired at "+a.ExpiresAt.UTC().Format(time.RFC3339)), ackOK)
		return
	}
	if err := dispatch.Validate(ch, a.To); err != nil {
		p.quarantine.observe(a.Tenant, a.Conversation, true)
		p.record(lane, msg, meta, p.event(msg, meta, a, dispatch.ReasonOf(err), ""), ackOK)
		return
	}
	p.quarantine.observe(a.Tenant, a.Conversation, false)
	if p.supp != nil && p.supp.Suppressed(a.Tenant, a.To) {
		p.record(lane, msg, meta, p.event(msg, meta, a, wire.ReasonSuppressed, ""), ackOK)
		return
	}
	if p.controls != nil && p.controls.ChannelDisabled(ch) {
		p.hold(ctx, lane, msg, a, HeldChannelDisabled)
		if p.unavailable != nil {
			p.unavailable(msg.Subject(), ch)
		}
		return
	}
	prov, ok := p.providers[ch]
	if !ok {
		// A configuration gap, not the message's fault: keep it queued.
		p.log.Error("no provider configured for channel; message retried later", "channel", ch)
		p.retry(lane, ch, msg, meta, a, errors.New("no provider for channel "+string(ch)))
		return
	}
	p.send(ctx, lane, msg, meta, a, prov)
}

// send renders a's message, hands it to its provider and records the
// outcome, or retries or defers it.
func (p *pipeline) send(ctx context.Context, lane wire.Lane, msg jetstream.Msg, meta *jetstream.MsgMetadata, a *wire.Activation, prov dispatch.Provider) {
	ch := dispatch.Channel(a.Channel)
	var err error
	m := &dispatch.Message{ID: a.ID, Tenant: a.Tenant, Conversation: a.Conversation, Channel: ch, To: a.To, Vars: a.Vars}
	if p.tpl != nil {
		err = p.tpl.render(m)
	}
	if p.unsub != nil && lane == wire.LaneBulk && ch == dispatch.ChannelEmail {
		m.Headers = p.unsub.Headers(a.Tenant, a.Conversation, a.To)
	}
	if err == nil {
		sendCtx, cancel := context.WithTimeout(ctx, p.cfg.SendTimeout)
		err = prov.Send(sendCtx, m)
		cancel()
	}
	switch {
	case err == nil:
		p.record(lane, msg, meta, p.deliveredEvent(msg, meta, a), ackOK)
		if !a.EnqueuedAt.IsZero() {
			p.m.endToEnd.WithLabelValues(string(lane)).Observe(time.Since(a.EnqueuedAt).Seconds())
		}
	case errors.Is(err, dispatch.ErrUnavailable):
		// The provider, not the message, is the problem: wait as long as it
		// says, and never fail the message for it.
		var ue *dispatch.UnavailableError
		delay := p.cfg.RetryBase
		if errors.As(err, &ue) && ue.RetryAfter > 0 {
			delay = ue.RetryAfter
		}
		if err := msg.NakWithDelay(delay); err != nil {
			p.log.Warn("nak failed; the message is redelivered after AckWait", "err", err)
		}
		p.m.messages.WithLabelValues(string(lane), string(ch), string(wire.OutcomeDeferred)).Inc()
		if p.unavailable != nil {
			p.unavailable(msg.Subject(), ch)
		}
	case errors.Is(err, dispatch.ErrRejected):
		var re *dispatch.RejectedError
		errors.As(err, &re)
		if p.supp != nil && wire.Suppresses(re.Reason) {
			// Refused for good: never sent to again, by any worker.
			p.supp.Suppress(a.Tenant, a.To, re.Reason)
		}
		p.record(lane, msg, meta, p.event(msg, meta, a, re.Reason, re.Detail), ackOK)
	default:
		p.retry(lane, ch, msg, meta, a, err)
	}
}

// completedBefore acks msg again, and reports true, when this worker has
// already recorded its outcome and acked it: a redelivery by a consumer
// leader that never learnt of that ack (see ackReplay). It is neither sent
// nor counted again.
func (p *pipeline) completedBefore(lane wire.Lane, msg jetstream.Msg, meta *jetstream.MsgMetadata) bool {
	r := p.acks[lane]
	if r == nil {
		return false
	}
	ok, term := r.completed(meta.Stream, meta.Consumer, meta.Sequence.Stream, meta.Timestamp)
	if !ok {
		return false
	}
	var err error
	if term {
		err = msg.Term()
	} else {
		err = msg.Ack()
	}
	if err != nil {
		p.log.Warn("ack of a message completed earlier failed; it will be redelivered", "err", err)
	}
	p.m.completedAgain.WithLabelValues(string(lane)).Inc()
	return true
}

// hold puts back a message that must wait (its conversation is not active,
// its channel is disabled) without counting a delivery outcome: it is
// parked, moved to its conversation's bulk subject (see Service.park), and
// waits there, at no cost to either lane (the bulk lane does not fetch a
// held conversation). In the bulk lane that is where it was: the copy goes
// to the end of the conversation's queue and the original is acked, rather
// than Nak'd, because a Nak'd message waits in its consumer's redelivery
// queue, which the server empties whenever the stream is purged (the
// reclaim pass purges every second; the message would then wait for
// AckWait). The transactional lane's single consumer cannot leave a
// conversation out, and a Nak'd message there would hold one of its
// MaxAckPending slots, so a large paused conversation would starve every
// other one. Only if parking fails is the message Nak'd (with holdDelay in
// the transactional lane); a stopped conversation's transactional messages
// are Nak'd too: parked, they would land in the bulk stream after its purge
// and wait for the sweep.
func (p *pipeline) hold(ctx context.Context, lane wire.Lane, msg jetstream.Msg, a *wire.Activation, why string) {
	p.m.held.WithLabelValues(string(lane), why).Inc()
	if p.park != nil && (lane == wire.LaneBulk || why != string(control.StateStopped)) {
		err := p.park(ctx, msg, a)
		if err == nil {
			return
		}
		p.log.Warn("parking a held message failed; it is retried", "lane", lane, "err", err)
	}
	delay := holdDelay
	if lane == wire.LaneBulk {
		delay = 0
	}
	if err := msg.NakWithDelay(delay); err != nil {
		p.log.Warn("nak of a held message failed; it is redelivered after AckWait", "err", err)
	}
}

// retry NakWithDelays a transient failure, or on the last allowed delivery
// records it as failed (max_deliveries) and terminates it. Deliveries that
// ended deferred (provider unavailable) count toward NumDelivered too, so after
// a long outage a message has fewer retries of its own left; it is never
// failed by the outage itself.
func (p *pipeline) retry(lane wire.Lane, ch dispatch.Channel, msg jetstream.Msg, meta *jetstream.MsgMetadata, a *wire.Activation, cause error) {
	if max := p.cfg.lane(lane).MaxDeliver; max > 0 && meta.NumDelivered >= uint64(max) {
		p.record(lane, msg, meta, p.event(msg, meta, a, wire.ReasonMaxDeliveries, cause.Error()), ackTerm)
		return
	}
	if err := msg.NakWithDelay(p.retryDelay(meta.NumDelivered)); err != nil {
		p.log.Warn("nak failed; the message is redelivered after AckWait", "err", err)
	}
	p.m.messages.WithLabelValues(string(lane), string(ch), string(wire.OutcomeRetried)).Inc()
}

// recordPoison records a message that cannot be processed at all and
// terminates it.
func (p *pipeline) recordPoison(lane wire.Lane, msg jetstream.Msg, meta *jetstream.MsgMetadata, a *wire.Activation, reason wire.Reason, detail string) {
	p.record(lane, msg, meta, p.event(msg, meta, a, reason, detail), ackTerm)
}

// record hands ev, with the outcome it carries, to the error log and
// acknowledges msg once the count is durable: each outcome, delivered
// included, is counted exactly once per stream sequence, and a message is
// acked only after its count commits. If the count cannot be made durable
// the message is retried, so the outcome is never lost; a delivered message
// retried so is sent again with the same idempotency key (a duplicate send,
// bounded by what was in flight), and counted once.
func (p *pipeline) record(lane wire.Lane, msg jetstream.Msg, meta *jetstream.MsgMetadata, ev errorlog.Event, how ack) {
	p.elog.Record(ev, func(err error) {
		if errors.Is(err, errorlog.ErrInvalidEvent) {
			// Cannot succeed on retry; the pipeline builds every event with an
			// id and a time, so this is a bug: say so loudly and count it.
			p.log.Error("error log refused an event; message terminated unrecorded", "reason", ev.Reason, "err", err)
			_ = msg.TermWithReason(ev.Reason)
			p.m.messages.WithLabelValues(string(lane), ev.Channel, string(wire.OutcomeFailed)).Inc()
			return
		}
		if err != nil {
			if nerr := msg.NakWithDelay(p.retryDelay(meta.NumDelivered)); nerr != nil {
				p.log.Warn("nak failed; the message is redelivered after AckWait", "err", nerr)
			}
			p.m.messages.WithLabelValues(string(lane), ev.Channel, string(wire.OutcomeRetried)).Inc()
			return
		}
		acked := func() {
			var aerr error
			term := ""
			if how == ackTerm {
				term = ev.Reason
				aerr = msg.TermWithReason(term)
			} else {
				aerr = msg.Ack()
			}
			if aerr != nil {
				p.log.Warn("ack after recording failed; the message will be redelivered and deduplicated by the error log", "err", aerr)
			} else if r := p.acks[lane]; r != nil {
				r.remember(acked{stream: meta.Stream, consumer: meta.Consumer, reply: msg.Reply(), seq: meta.Sequence.Stream, stored: meta.Timestamp, term: term}, p.now())
			}
			p.m.messages.WithLabelValues(string(lane), ev.Channel, string(ev.Outcome)).Inc()
		}
		if p.notify != nil {
			p.notify.Notify(ev, acked)
			return
		}
		acked()
	})
}

// deliveredEvent is the counted event of a message a provider accepted.
func (p *pipeline) deliveredEvent(msg jetstream.Msg, meta *jetstream.MsgMetadata, a *wire.Activation) errorlog.Event {
	ev := p.event(msg, meta, a, "", "")
	ev.Outcome = wire.OutcomeDelivered
	return ev
}

// event builds the error-log event of msg not delivered for reason, with the
// outcome wire.OutcomeOf decides for it. a may be nil or partial when the
// envelope could not be decoded; then the subject and the stream sequence
// identify the message.
func (p *pipeline) event(msg jetstream.Msg, meta *jetstream.MsgMetadata, a *wire.Activation, reason wire.Reason, detail string) errorlog.Event {
	ev := errorlog.Event{Outcome: wire.OutcomeOf(reason), Reason: string(reason), Detail: detail, Time: meta.Timestamp, Channel: "unknown",
		Seq: meta.Sequence.Stream, Source: p.sourceOf(meta.Stream)}
	if meta.Stream == StreamName {
		// A parked copy (only ever in the bulk stream) is counted as the
		// message it stands for.
		if o, ok := parseOrigin(msg.Headers().Get(OriginHeader)); ok {
			ev.Seq, ev.Source = o.seq, o.source
		}
	}
	if l, t, c, ok := wire.SubjectParts(msg.Subject()); ok {
		ev.Lane, ev.Tenant, ev.Conversation = string(l), t, c
	}
	if a != nil && a.ID != "" && reason != wire.ReasonSubjectMismatch {
		ev.ID = a.ID
		if !a.EnqueuedAt.IsZero() {
			ev.Time = a.EnqueuedAt
		}
		if dispatch.Channel(a.Channel).Valid() {
			ev.Channel = a.Channel
		}
		ev.Address = a.To
	} else {
		ev.ID = "seq:" + strconv.FormatUint(meta.Sequence.Stream, 10)
	}
	return ev
}

// sourceOf names the stream a message came from for the error log. The
// lane is read from the stream's name, not the subject: a message is
// counted by the sequence of the stream that holds it.
func (p *pipeline) sourceOf(stream string) string {
	if stream == TransactionalStreamName {
		return p.sources[wire.LaneTransactional]
	}
	return p.sources[wire.LaneBulk]
}

// retryDelay is capped exponential backoff with ±20% jitter, so that a
// provider outage does not bring every message back at the same instant.
func (p *pipeline) retryDelay(delivered uint64) time.Duration {
	d := p.cfg.RetryBase
	for i := uint64(1); i < delivered && d < p.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, p.cfg.RetryMax)
	jitter := time.Duration(rand.Int64N(int64(d)/5 + 1))
	if rand.IntN(2) == 0 {
		return d - jitter
	}
	return d + jitter
}
