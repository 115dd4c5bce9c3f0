package orchestrator

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/dispatch/sink"
	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/wire"
)

// sentAcks records what an ackReplay publishes.
type sentAcks struct{ acks []string }

func (s *sentAcks) publish(subject string, body []byte) error {
	s.acks = append(s.acks, subject+" "+string(body))
	return nil
}

// stored is the stored time of the test's message at seq.
func stored(seq uint64) time.Time { return time.Unix(1_700_000_000, int64(seq)) }

// ackOf is the ack of the test's message at seq of stream's consumer.
func ackOf(stream, consumer string, seq uint64, term string) acked {
	return acked{stream: stream, consumer: consumer, reply: fmt.Sprintf("$JS.ACK.%s.%s.1.%d", stream, consumer, seq), seq: seq, stored: stored(seq), term: term}
}

func newTestReplay(size int) (*ackReplay, *sentAcks, *prometheus.CounterVec) {
	sent := &sentAcks{}
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "reacks"}, []string{"reason"})
	r := newAckReplay(size, c, sent.publish)
	r.after = nil // replayed once: TestAcksSentAgainWhenALeaderIsElected sees the repeats
	return r, sent, c
}

// TestAckReplayKeepsTheLastAcksOfEachConsumer: a consumer's newest acks,
// at most size of them, are what a leader change sends again, +TERM with its
// reason; other consumers' acks are left alone; a consumer idle past the
// cut-off is forgotten.
func TestAckReplayKeepsTheLastAcksOfEachConsumer(t *testing.T) {
	r, sent, counter := newTestReplay(3)
	t0 := time.Unix(1_700_000_000, 0)
	for i := 1; i <= 5; i++ {
		r.remember(ackOf("S", "c1", uint64(i), ""), t0)
	}
	r.remember(ackOf("S", "c1", 6, "poison"), t0.Add(time.Second))
	r.remember(ackOf("S", "c2", 1, ""), t0)
	r.remember(acked{stream: "S", consumer: "c2", seq: 2}, t0) // no reply subject: nothing to resend

	r.leaderElected(&nats.Msg{Subject: leaderElectedPrefix + "S.c1"})
	want := []string{"$JS.ACK.S.c1.1.4 +ACK", "$JS.ACK.S.c1.1.5 +ACK", "$JS.ACK.S.c1.1.6 +TERM poison"}
	slices.Sort(sent.acks)
	if !slices.Equal(sent.acks, want) {
		t.Fatalf("after c1's leader changed, sent %q, want %q", sent.acks, want)
	}
	if got := counted(t, counter, reackLeaderElected); got != 3 {
		t.Errorf("counted %v acks sent again, want 3", got)
	}

	sent.acks = nil
	r.leaderElected(&nats.Msg{Subject: leaderElectedPrefix + "OTHER.c1"})
	r.leaderElected(&nats.Msg{Subject: "$JS.EVENT.ADVISORY.CONSUMER.CREATED.S.c1"})
	if len(sent.acks) != 0 {
		t.Fatalf("another stream's or another advisory's consumer c1: sent %q, want nothing", sent.acks)
	}

	r.forget(t0.Add(time.Millisecond)) // c2 acked last at t0, c1 at t0+1s
	if n := r.replay("S", "", reackReconnected); n != 3 {
		t.Fatalf("after forgetting c2, a reconnect sent %d acks (%q), want c1's 3", n, sent.acks)
	}
	if got := counted(t, counter, reackReconnected); got != 3 {
		t.Errorf("counted %v acks sent again on reconnect, want 3", got)
	}
}

// TestAckReplayKnowsWhatItCompleted: a message this worker acked (same
// consumer, sequence and stored time) is known as completed, and how; one
// pushed out of the ring, one of another consumer, or one with the same
// sequence stored at another time (a stream created again) is not.
func TestAckReplayKnowsWhatItCompleted(t *testing.T) {
	r, _, _ := newTestReplay(3)
	now := time.Now()
	for i := uint64(1); i <= 4; i++ {
		term := ""
		if i == 4 {
			term = "poison"
		}
		r.remember(ackOf("S", "c1", i, term), now)
	}
	for _, c := range []struct {
		consumer       string
		seq            uint64
		stored         time.Time
		done, wantTerm bool
	}{
		{"c1", 1, stored(1), false, false}, // pushed out by the fourth
		{"c1", 2, stored(2), true, false},
		{"c1", 3, stored(3), true, false},
		{"c1", 4, stored(4), true, true},
		{"c1", 3, stored(3).Add(time.Nanosecond), false, false},
		{"c2", 3, stored(3), false, false},
		{"c1", 5, stored(5), false, false},
	} {
		done, term := r.completed("S", c.consumer, c.seq, c.stored)
		if done != c.done || term != c.wantTerm {
			t.Errorf("completed(%s, %d, %v) = %v, %v; want %v, %v", c.consumer, c.seq, c.stored.UnixNano(), done, term, c.done, c.wantTerm)
		}
	}
}

// TestAckReplayAckedTwice: a message acked a second time (redelivered to
// the worker that acked it) keeps one entry, so pushing out older ones does
// not forget it.
func TestAckReplayAckedTwice(t *testing.T) {
	r, sent, _ := newTestReplay(3)
	now := time.Now()
	for _, seq := range []uint64{1, 2, 3, 2, 4} {
		r.remember(ackOf("S", "c1", seq, ""), now)
	}
	for seq, want := range map[uint64]bool{1: false, 2: true, 3: true, 4: true} {
		if done, _ := r.completed("S", "c1", seq, stored(seq)); done != want {
			t.Errorf("after acks of 1, 2, 3, 2, 4 in a ring of 3: completed(%d) = %v, want %v", seq, done, want)
		}
	}
	if n := r.replay("S", "c1", reackLeaderElected); n != 3 {
		t.Errorf("replayed %d acks (%q), want 3", n, sent.acks)
	}
}

func counted(t *testing.T, c *prometheus.CounterVec, reason string) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.WithLabelValues(reason).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// BenchmarkAckRemember is what remembering costs each ack, against the
// 20-30 µs of CPU a bulk message costs the whole stack (BENCHMARKS.md).
func BenchmarkAckRemember(b *testing.B) {
	r, _, _ := newTestReplay(1152)
	replies := make([]string, 4096)
	for i := range replies {
		replies[i] = fmt.Sprintf("$JS.ACK.SLUICE_BULK.sluice_bulk_acme_c%d_0123abcd.1.%d.%d.1765000000000000000.0", i%8, i, i)
	}
	consumers := make([]string, 8)
	for i := range consumers {
		consumers[i] = "sluice_bulk_acme_c" + strconv.Itoa(i) + "_0123abcd"
	}
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.remember(acked{stream: "SLUICE_BULK", consumer: consumers[i%8], reply: replies[i%len(replies)], seq: uint64(i), stored: now}, now)
	}
}

// redelivery is a JetStream message as a worker receives it, counting how
// it was acked.
type redelivery struct {
	jetstream.Msg // the methods the pipeline does not call
	meta          jetstream.MsgMetadata
	data          []byte
	acks, terms   int
}

func (m *redelivery) Metadata() (*jetstream.MsgMetadata, error) { mm := m.meta; return &mm, nil }
func (m *redelivery) Data() []byte                              { return m.data }
func (m *redelivery) Headers() nats.Header                      { return nil }
func (m *redelivery) Subject() string                           { return wire.Subject(wire.LaneBulk, "acme", "c1") }
func (m *redelivery) Reply() string {
	return fmt.Sprintf("$JS.ACK.%s.%s.%d.%d", m.meta.Stream, m.meta.Consumer, m.meta.NumDelivered, m.meta.Sequence.Stream)
}
func (m *redelivery) Ack() error                       { m.acks++; return nil }
func (m *redelivery) Term() error                      { m.terms++; return nil }
func (m *redelivery) TermWithReason(string) error      { m.terms++; return nil }
func (m *redelivery) NakWithDelay(time.Duration) error { return errors.New("unexpected nak") }

// committedLog is an error log whose every record commits at once.
type committedLog struct{ events []errorlog.Event }

func (l *committedLog) Record(ev errorlog.Event, done func(error)) {
	l.events = append(l.events, ev)
	done(nil)
}

// TestRedeliveryOfACompletedMessage: a message this worker has recorded
// and acked, delivered again (by a consumer leader that never learnt of the
// ack), is acked again and neither sent nor recorded a second time; the
// same sequence stored at another time is a new message, sent.
func TestRedeliveryOfACompletedMessage(t *testing.T) {
	cfg := Config{}
	cfg.setDefaults()
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	rec := sink.NewRecorder()
	elog := &committedLog{}
	p := &pipeline{providers: map[dispatch.Channel]dispatch.Provider{dispatch.ChannelEmail: rec}, elog: elog, cfg: &cfg, m: m,
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: time.Now}
	r, _, _ := newTestReplay(16)
	p.acks = map[wire.Lane]*ackReplay{wire.LaneBulk: r}

	a := &wire.Activation{ID: "a1", Lane: wire.LaneBulk, Tenant: "acme", Conversation: "c1", Channel: string(dispatch.ChannelEmail), To: "u@example.com", Version: wire.SchemaVersion}
	data, err := wire.Encode(a)
	if err != nil {
		t.Fatal(err)
	}
	newMsg := func(delivered uint64, storedAt time.Time) *redelivery {
		return &redelivery{data: data, meta: jetstream.MsgMetadata{Stream: "S", Consumer: "c1", NumDelivered: delivered,
			Sequence: jetstream.SequencePair{Stream: 7, Consumer: delivered}, Timestamp: storedAt}}
	}
	first, again := newMsg(1, stored(7)), newMsg(1, stored(7))
	p.handle(t.Context(), wire.LaneBulk, first)
	p.handle(t.Context(), wire.LaneBulk, again)
	if st := rec.Ledger.Stats(); st.Unique != 1 || st.Duplicates != 0 || len(elog.events) != 1 {
		t.Fatalf("sent %+v, recorded %d events; want the message sent and recorded once", st, len(elog.events))
	}
	if first.acks != 1 || again.acks != 1 {
		t.Fatalf("acked %d then %d times, want once each", first.acks, again.acks)
	}
	var v dto.Metric
	if err := m.completedAgain.WithLabelValues("bulk").Write(&v); err != nil || v.GetCounter().GetValue() != 1 {
		t.Fatalf("sluice_orchestrator_redelivered_completed_total{lane=bulk} = %v (%v), want 1", v.GetCounter().GetValue(), err)
	}

	recreated := newMsg(1, stored(7).Add(time.Hour)) // the stream made anew: same sequence, another message
	p.handle(t.Context(), wire.LaneBulk, recreated)
	if st := rec.Ledger.Stats(); recreated.acks != 1 || len(elog.events) != 2 || st.Unique+st.Duplicates != 2 {
		t.Fatalf("a new message at a remembered sequence: acked %d, %d events, sends %+v; want it sent and recorded", recreated.acks, len(elog.events), st)
	}
}

// BenchmarkCompletedLookup is what the check for a completed message costs
// each message handled, workers looking up in parallel.
func BenchmarkCompletedLookup(b *testing.B) {
	r, _, _ := newTestReplay(1152)
	now := time.Now()
	for i := range uint64(1152) {
		r.remember(ackOf("SLUICE_BULK", "c1", i, ""), now)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		seq := uint64(0)
		for pb.Next() {
			seq++
			r.completed("SLUICE_BULK", "c1", 2000+seq, stored(seq))
		}
	})
}
