package orchestrator

import (
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// Acks lost with a consumer's leader.
//
// An ack is a plain publish to the message's reply subject, answered by the
// node that leads the message's consumer. When that node dies, the acks sent
// until a new leader is elected (and those still in the connection's buffer
// while it reconnects) reach nobody. The new leader still counts those
// messages as pending: it redelivers them only after AckWait (30 s), and a
// consumer whose pending window is full delivers nothing else meanwhile, so
// the conversation's drain stops for AckWait and each message whose ack was
// lost is sent a second time (counted once: the error log deduplicates by
// stream sequence).
//
// ackReplay remembers each consumer's last terminal acks (+ACK and +TERM,
// not Naks: a lost Nak only delays a retry) and sends them again when the
// server announces a new leader for that consumer
// ($JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED) and when the lane's connection
// has reconnected (the announcement may have been made while it was away).
// An ack of a message that is no longer pending is ignored by the server,
// so sending one again is harmless. A new leader may also take an ack
// before it has applied the deliveries its predecessor replicated last, and
// ignore it; so the acks are sent at the announcement and again after each
// of the delays newAckReplay sets (1, 5 and 15 s).
//
// A new leader that had not yet learnt of its predecessor's last deliveries
// delivers those messages again instead, as if for the first time, and no
// ack sent before it does so can stop that. A worker that finds such a
// message among those it has acked itself (same stream sequence, same
// stored time) acks it again and does not send it a second time
// (completed); one that receives another worker's is left to send it again,
// counted once.
//
// Since a leaderless consumer delivers nothing new, the acks lost are at
// most what its workers held when the leader died: MaxAckPending, plus what
// the fetch in progress brought; a consumer's memory is that many acks (the
// reply subjects nats.go already allocated), and a consumer that acks
// nothing for ackReplayIdle is forgotten.
type ackReplay struct {
	size  int // acks remembered per consumer
	mu    sync.Mutex
	rings map[ackKey]*ackRing
	sent  *prometheus.CounterVec
	// publish sends one remembered ack; nc.Publish in service, a recorder
	// in tests.
	publish func(subject string, body []byte) error
	// after are the delays at which a replay is repeated.
	after []time.Duration
}

// ackReplayIdle is how long a consumer's acks are kept after its last one.
const ackReplayIdle = 2 * time.Minute

// The reasons of sluice_orchestrator_reacks_total.
const (
	reackLeaderElected = "leader_elected"
	reackReconnected   = "reconnected"
)

const ackBody = "+ACK"

// ackKey names a consumer.
type ackKey struct{ stream, consumer string }

// ackRing is one consumer's last acks, oldest overwritten first, and the
// messages they completed: stream sequence to stored time.
type ackRing struct {
	subj []string
	body []string
	seq  []uint64
	done map[uint64]completion
	next int
	last time.Time
}

func newAckReplay(size int, sent *prometheus.CounterVec, publish func(string, []byte) error) *ackReplay {
	// The delays after a leader's announcement or a reconnect at which the
	// acks are sent once more; the last is still well inside the 30 s
	// AckWait after which the new leader would redeliver what it holds.
	after := []time.Duration{time.Second, 5 * time.Second, 15 * time.Second}
	return &ackReplay{size: size, rings: map[ackKey]*ackRing{}, sent: sent, publish: publish, after: after}
}

// completion is how a remembered message was acked.
type completion struct {
	stored int64 // the message's stored time, Unix ns
	term   bool  // +TERM, not +ACK
}

// acked is one ack sent: the message's consumer, reply subject, stream
// sequence and stored time, and the reason of a +TERM ("" for a +ACK).
type acked struct {
	stream, consumer, reply string
	seq                     uint64
	stored                  time.Time
	term                    string
}

// remember records an ack sent.
func (r *ackReplay) remember(a acked, now time.Time) {
	if a.reply == "" {
		return
	}
	body := ackBody
	if a.term != "" {
		body = "+TERM " + a.term
	}
	key := ackKey{a.stream, a.consumer}
	r.mu.Lock()
	ring := r.rings[key]
	if ring == nil {
		ring = &ackRing{subj: make([]string, 0, r.size), body: make([]string, 0, r.size),
			seq: make([]uint64, 0, r.size), done: make(map[uint64]completion, r.size)}
		r.rings[key] = ring
	}
	switch _, again := ring.done[a.seq]; {
	case again:
		// Acked before (a redelivery): its entry stands, so that pushing
		// it out later drops the one completion the ring holds for it.
	case len(ring.subj) < r.size:
		ring.subj, ring.body, ring.seq = append(ring.subj, a.reply), append(ring.body, body), append(ring.seq, a.seq)
	default:
		delete(ring.done, ring.seq[ring.next])
		ring.subj[ring.next], ring.body[ring.next], ring.seq[ring.next] = a.reply, body, a.seq
		ring.next = (ring.next + 1) % r.size
	}
	ring.done[a.seq] = completion{stored: a.stored.UnixNano(), term: a.term != ""}
	ring.last = now
	r.mu.Unlock()
}

// completed reports whether this worker has acked the message at seq of
// stream's consumer, stored at stored, and whether that ack was a +TERM.
func (r *ackReplay) completed(stream, consumer string, seq uint64, stored time.Time) (ok, term bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ring := r.rings[ackKey{stream, consumer}]
	if ring == nil {
		return false, false
	}
	c, found := ring.done[seq]
	if !found || c.stored != stored.UnixNano() {
		return false, false
	}
	return true, c.term
}

// replay sends again the remembered acks of stream's consumer, or of every
// consumer when consumer is "", and returns how many it sent.
func (r *ackReplay) replay(stream, consumer, why string) int {
	type ack struct {
		subj, body string
	}
	var acks []ack
	r.mu.Lock()
	for key, ring := range r.rings {
		if consumer != "" && key != (ackKey{stream, consumer}) {
			continue
		}
		for i := range ring.subj {
			acks = append(acks, ack{ring.subj[i], ring.body[i]})
		}
	}
	r.mu.Unlock()
	n := 0
	for _, a := range acks {
		if r.publish(a.subj, []byte(a.body)) == nil {
			n++
		}
	}
	r.sent.WithLabelValues(why).Add(float64(n))
	return n
}

// forget drops the consumers that have acked nothing since before.
func (r *ackReplay) forget(before time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, ring := range r.rings {
		if ring.last.Before(before) {
			delete(r.rings, key)
		}
	}
}

// leaderElected is the handler of the leader-elected advisories of the
// lane's stream: $JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.<stream>.<consumer>.
func (r *ackReplay) leaderElected(msg *nats.Msg) {
	rest, ok := strings.CutPrefix(msg.Subject, leaderElectedPrefix)
	if !ok {
		return
	}
	stream, consumer, ok := strings.Cut(rest, ".")
	if !ok {
		return
	}
	r.replayRepeatedly(stream, consumer, reackLeaderElected)
}

// replayRepeatedly replays now and after each of r.after.
func (r *ackReplay) replayRepeatedly(stream, consumer, why string) int {
	for _, d := range r.after {
		time.AfterFunc(d, func() { r.replay(stream, consumer, why) })
	}
	return r.replay(stream, consumer, why)
}

const leaderElectedPrefix = "$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED."
