package webhook

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// journal is the value of batch.<endpoint>: the batch in flight, written
// before it is first sent, so that whoever sends it again (after a crash,
// another process) sends the same events under the same webhook-id.
type journal struct {
	ID   string   `json:"id"`
	Seqs []uint64 `json:"seqs"`
}

func journalKey(id string) string { return "batch." + id }

// held is an event message fetched and not yet acknowledged.
type held struct {
	msg jetstream.Msg
	seq uint64
}

// runner delivers one endpoint's events while its process holds the lease.
type runner struct {
	d     *Dispatcher
	ep    Endpoint
	cons  jetstream.Consumer
	carry []held // fetched, not yet in a batch, in stream order
}

// run delivers ep's events until ctx ends, the lease is lost or the
// endpoint is disabled.
func (d *Dispatcher) run(ctx context.Context, ep Endpoint, rev uint64) {
	var leaseRev atomic.Uint64
	leaseRev.Store(rev)
	defer func() { d.releaseLease(ep.ID, leaseRev.Load()) }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go reloadLoop(ctx, d.cfg.LeaseTTL/3, nil, func() { // renews the lease; losing it ends the runner
		r, err := d.renewLease(ctx, ep.ID, leaseRev.Load())
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn("webhook lease lost; another process delivers this endpoint", "endpoint", ep.ID, "err", err)
			}
			cancel()
			return
		}
		leaseRev.Store(r)
	})
	cons, err := d.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: ConsumerName(ep.ID), Description: "webhook endpoint " + ep.ID + " of " + ep.Tenant,
		FilterSubjects: filters(ep), AckPolicy: jetstream.AckExplicitPolicy, AckWait: d.cfg.AckWait,
		MaxAckPending: 10 * d.cfg.BatchMax, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &ep.CreatedAt,
	})
	if err != nil {
		d.log.Warn("webhook consumer not created; retried at the next reconcile", "endpoint", ep.ID, "err", err)
		return
	}
	r := &runner{d: d, ep: ep, cons: cons}
	for ctx.Err() == nil {
		batch, id := r.next(ctx)
		if len(batch) > 0 && !r.deliver(ctx, id, batch) {
			return
		}
	}
}

// next returns the next batch and its webhook-id: the journal's batch if
// one is in flight, else up to BatchMax events fetched within BatchWait.
func (r *runner) next(ctx context.Context) ([]held, string) {
	kv := r.d.kv
	var j journal
	pending := false
	if e, err := kv.Get(ctx, journalKey(r.ep.ID)); err == nil && json.Unmarshal(e.Value(), &j) == nil && len(j.Seqs) > 0 {
		pending = true
	}
	// Every unacknowledged event of the journal's batch is redelivered
	// within AckWait of its last owner's last word.
	deadline := time.Now().Add(r.d.cfg.AckWait + r.d.cfg.BatchWait)
	for ctx.Err() == nil {
		r.fill(ctx, pending)
		if !pending {
			break
		}
		if b := r.take(j.Seqs, time.Now().After(deadline)); len(b) > 0 {
			// The whole batch, or after the deadline what is left of it
			// (the rest was acked, so the endpoint took the batch: it
			// drops this copy by its webhook-id).
			return b, j.ID
		}
		if r.acked(ctx, slices.Max(j.Seqs)) || time.Now().After(deadline) {
			// Acked before its journal was cleared, or its events are
			// gone from the stream: nothing of it is left to send.
			pending = false
			_ = kv.Delete(ctx, journalKey(r.ep.ID))
		}
	}
	n := min(len(r.carry), r.d.cfg.BatchMax)
	if n == 0 || ctx.Err() != nil {
		return nil, ""
	}
	batch := slices.Clone(r.carry[:n])
	j = journal{ID: newMessageID()}
	for _, h := range batch {
		j.Seqs = append(j.Seqs, h.seq)
	}
	data, _ := json.Marshal(j)
	if _, err := kv.Put(ctx, journalKey(r.ep.ID), data); err != nil {
		r.d.log.Warn("webhook batch not journalled; retried", "endpoint", r.ep.ID, "err", err)
		return nil, ""
	}
	r.carry = r.carry[n:]
	return batch, j.ID
}

// acked reports whether the consumer's ack floor has reached seq.
func (r *runner) acked(ctx context.Context, seq uint64) bool {
	info, err := r.cons.Info(ctx)
	return err == nil && info.AckFloor.Stream >= seq
}

func newMessageID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "msg_" + hex.EncodeToString(b)
}

// fill fetches up to BatchMax more events, waiting at most BatchWait, into
// carry, kept in stream order without duplicates (a redelivery replaces
// the copy held). While a journalled batch is awaited the events held are
// kept from redelivery.
func (r *runner) fill(ctx context.Context, awaiting bool) {
	want := r.d.cfg.BatchMax
	if !awaiting {
		want -= len(r.carry)
	}
	if want <= 0 {
		return
	}
	fctx, cancel := context.WithTimeout(ctx, r.d.cfg.BatchWait)
	defer cancel()
	batch, err := r.cons.Fetch(want, jetstream.FetchContext(fctx))
	if err != nil {
		if ctx.Err() == nil {
			r.d.log.Warn("webhook fetch failed", "endpoint", r.ep.ID, "err", err)
			sleep(ctx, r.d.cfg.BatchWait)
		}
		return
	}
	for msg := range batch.Messages() {
		meta, err := msg.Metadata()
		if err != nil {
			continue
		}
		h := held{msg: msg, seq: meta.Sequence.Stream}
		i, found := slices.BinarySearchFunc(r.carry, h.seq, func(a held, s uint64) int { return cmpSeq(a.seq, s) })
		if found {
			r.carry[i] = h
		} else {
			r.carry = slices.Insert(r.carry, i, h)
		}
	}
	if awaiting {
		r.touch()
	}
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// take removes and returns the events of seqs from carry if every one of
// them is there, or if partial those that are.
func (r *runner) take(seqs []uint64, partial bool) []held {
	var out []held
	for _, h := range r.carry {
		if slices.Contains(seqs, h.seq) {
			out = append(out, h)
		}
	}
	if len(out) != len(seqs) && !partial {
		return nil
	}
	r.carry = slices.DeleteFunc(r.carry, func(h held) bool { return slices.Contains(seqs, h.seq) })
	return out
}

// touch tells the server that the events held are still being worked on.
func (r *runner) touch() {
	for _, h := range r.carry {
		_ = h.msg.InProgress()
	}
}

// deliver sends batch as message id. On a 2xx it acks the batch. On a
// failure it NakWithDelays the batch and every event held behind it by the
// backoff (RetryBase doubled per delivery of the batch, capped at
// RetryMax) and waits as long: the batch comes back then, and next sends
// it again under the same webhook-id from the journal, ahead of the rest
// (a process that dies meanwhile holds nothing). It returns false if the
// runner must end (ctx ended, the endpoint disabled).
func (r *runner) deliver(ctx context.Context, id string, batch []held) bool {
	events := make([]Event, 0, len(batch))
	for _, h := range batch {
		var ev Event
		if json.Unmarshal(h.msg.Data(), &ev) == nil {
			events = append(events, ev)
		}
	}
	data, err := body(r.ep.ID, events, false, time.Now())
	if err != nil {
		return false
	}
	err = r.d.send.send(ctx, r.ep, id, data)
	if err == nil {
		r.delivered(ctx, batch, len(events))
		return true
	}
	if ctx.Err() != nil || r.failing(ctx, err) {
		return false
	}
	attempt := 1
	if meta, merr := batch[0].msg.Metadata(); merr == nil {
		attempt = int(min(meta.NumDelivered, 64))
	}
	delay := backoff(attempt, r.d.cfg.RetryBase, r.d.cfg.RetryMax)
	for _, h := range append(batch, r.carry...) {
		_ = h.msg.NakWithDelay(delay)
	}
	r.carry = nil
	return sleep(ctx, delay)
}

// delivered acks batch, clears the journal and ends a failure streak.
func (r *runner) delivered(ctx context.Context, batch []held, events int) {
	for _, h := range batch[:len(batch)-1] {
		_ = h.msg.Ack()
	}
	// Acks travel in order on one connection: the last one's confirmation
	// says the server has them all.
	if err := batch[len(batch)-1].msg.DoubleAck(ctx); err != nil {
		r.d.log.Warn("webhook batch delivered but not acked; it is sent again under the same webhook-id", "endpoint", r.ep.ID, "err", err)
		return
	}
	_ = r.d.kv.Delete(ctx, journalKey(r.ep.ID))
	r.d.m.events.Add(float64(events))
	if r.ep.FailingSince != nil {
		if err := r.d.store.recovered(ctx, r.ep.ID); err != nil {
			r.d.log.Warn("webhook recovery not recorded", "endpoint", r.ep.ID, "err", err)
		}
		r.ep.FailingSince = nil
	}
}

// failing records a failed attempt and disables the endpoint if it has
// failed for DisableAfter; it reports whether it did.
func (r *runner) failing(ctx context.Context, cause error) bool {
	r.d.log.Debug("webhook delivery failed; retried", "endpoint", r.ep.ID, "err", cause)
	streak, err := r.d.store.failing(ctx, r.ep.ID, cause.Error())
	if err == nil {
		since := time.Now().Add(-streak)
		r.ep.FailingSince = &since
	}
	if err != nil || streak < r.d.cfg.DisableAfter {
		return false
	}
	if err := r.d.store.disable(ctx, r.ep.ID); err != nil {
		r.d.log.Warn("webhook endpoint not disabled", "endpoint", r.ep.ID, "err", err)
		return false
	}
	r.d.m.disabled.Inc()
	r.d.log.Warn("webhook endpoint disabled: failing for too long", "endpoint", r.ep.ID, "tenant", r.ep.Tenant,
		"failing_for", streak.Round(time.Second), "last_error", cause.Error())
	return true
}

// waitUntil waits for wg, or until ctx ends.
func waitUntil(ctx context.Context, wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// sleep waits d or until ctx ends, reporting whether it waited.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
