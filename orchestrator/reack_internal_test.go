package orchestrator

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// sentAcks records what an ackReplay publishes.
type sentAcks struct{ acks []string }

func (s *sentAcks) publish(subject string, body []byte) error {
	s.acks = append(s.acks, subject+" "+string(body))
	return nil
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
		r.remember("S", "c1", fmt.Sprintf("$JS.ACK.S.c1.1.%d", i), "", t0)
	}
	r.remember("S", "c1", "$JS.ACK.S.c1.1.6", "poison", t0.Add(time.Second))
	r.remember("S", "c2", "$JS.ACK.S.c2.1.1", "", t0)
	r.remember("S", "c2", "", "", t0) // no reply subject: nothing to resend

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
		replies[i] = fmt.Sprintf("$JS.ACK.SLUICE_ACTIVATIONS.sluice_bulk_acme_c%d_0123abcd.1.%d.%d.1765000000000000000.0", i%8, i, i)
	}
	consumers := make([]string, 8)
	for i := range consumers {
		consumers[i] = "sluice_bulk_acme_c" + strconv.Itoa(i) + "_0123abcd"
	}
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.remember("SLUICE_ACTIVATIONS", consumers[i%8], replies[i%len(replies)], "", now)
	}
}
