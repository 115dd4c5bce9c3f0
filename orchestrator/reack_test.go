package orchestrator_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/internal/metrictest"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/wire"
)

// TestAcksSentAgainWhenALeaderIsElected: when the server announces a new
// leader for a consumer, the worker sends again the acks it sent that
// consumer (those sent while it had no leader may be lost), and only that
// consumer's. A single server never elects one, so the test announces it
// itself; the fleet test kills a real consumer leader.
func TestAcksSentAgainWhenALeaderIsElected(t *testing.T) {
	t.Parallel()
	b := setup(t)
	nc, js := connect(t, b.url)
	reg := prometheus.NewRegistry()
	b.startRegistered(t, js, b.elog, allChannels(b.rec), orchestrator.Config{}, reg)

	var mu sync.Mutex
	acks := map[string]int{} // by consumer
	if _, err := nc.Subscribe("$JS.ACK.>", func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		acks[strings.Split(m.Subject, ".")[3]]++
	}); err != nil {
		t.Fatal(err)
	}
	acked := func(consumer string) int { mu.Lock(); defer mu.Unlock(); return acks[consumer] }

	var acts []*wire.Activation
	for i := range 40 {
		acts = append(acts, activation(fmt.Sprintf("a%d", i), wire.LaneBulk, "acme", []string{"c1", "c2"}[i%2], dispatch.ChannelEmail, fmt.Sprintf("u%d@example.com", i)))
	}
	acts = append(acts, activation("t1", wire.LaneTransactional, "acme", "otp", dispatch.ChannelEmail, "t@example.com"))
	b.publish(t, acts)
	c1 := orchestrator.BulkConsumerName(wire.Subject(wire.LaneBulk, "acme", "c1"))
	c2 := orchestrator.BulkConsumerName(wire.Subject(wire.LaneBulk, "acme", "c2"))
	waitFor(t, 10*time.Second, "every message acked once", func() bool {
		return acked(c1) == 20 && acked(c2) == 20 && acked(orchestrator.TransactionalConsumer) == 1
	})

	if err := nc.Publish("$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED."+orchestrator.StreamName+"."+c1, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	// At the announcement, and again 1s, 5s and 15s later: a new leader may
	// take an ack before it knows the message was delivered, and ignore it.
	waitFor(t, 5*time.Second, "c1's 20 acks sent again", func() bool { return acked(c1) == 40 })
	waitFor(t, 20*time.Second, "c1's 20 acks sent three times more", func() bool { return acked(c1) == 100 })
	time.Sleep(200 * time.Millisecond) // anything else would have come by now
	if got := acked(c1); got != 100 {
		t.Errorf("c1 acked %d times, want 100: its 20 acks, sent again four times", got)
	}
	if got := acked(c2); got != 20 {
		t.Errorf("c2 acked %d times; its leader did not change, want its 20 acks only", got)
	}
	if got := acked(orchestrator.TransactionalConsumer); got != 1 {
		t.Errorf("the transactional consumer acked %d times, want 1", got)
	}
	if v, _ := metrictest.Value(t, reg, "sluice_orchestrator_reacks_total", map[string]string{"lane": "bulk", "reason": "leader_elected"}); v != 80 {
		t.Errorf("sluice_orchestrator_reacks_total{lane=bulk,reason=leader_elected} = %v, want 80", v)
	}
	if st := b.rec.Ledger.Stats(); st.Unique != len(acts) || st.Duplicates != 0 {
		t.Errorf("sends %+v, want %d unique and no duplicate: acks sent again send nothing", st, len(acts))
	}
}
