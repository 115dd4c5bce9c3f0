//go:build fleet

package fleettest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/pgtest"
	"github.com/sluicehq/sluice/orchestrator"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// perCampaign is the size of each fault's campaign: nine in ten invalid.
const perCampaign = 20_000

// TestFleet: five faults, each in the middle of a campaign's drain, and
// after each, at rest, every campaign so far exact.
func TestFleet(t *testing.T) {
	start := time.Now()
	f := startFleet(t, 3, 2)
	f.waitReplicated(time.Minute)
	t.Logf("fleet up in %v: nats %s, api %s, %d workers", time.Since(start).Round(time.Millisecond), f.nats.urls(), f.api.httpAddr, len(f.workers))

	var all []*campaign
	for _, fault := range []struct {
		name string
		run  func(*fleet, *campaign)
	}{
		{"worker kill -9 and restart", killWorker},
		{"stream leader's node kill -9, restarted after 20s", killLeader},
		{"the campaign consumer's leader's node kill -9", killConsumerLeader},
		{"postgres stopped for 30s", stopPostgres},
		{"campaign paused, then resumed", pauseResume},
	} {
		phase := time.Now()
		c := f.createCampaign(fmt.Sprintf("fault%d", len(all)+1))
		all = append(all, c)
		// Queued whole while paused, so the drain does not race the POST:
		// on a fast machine two workers could otherwise empty the subject
		// as it is being filled, and the fault would come after the drain.
		f.change(c, "pause")
		if code, resp := f.post(c, "first", perCampaign); code != http.StatusAccepted {
			t.Fatalf("%s: post %d rows: %d %s", fault.name, perCampaign, code, resp)
		}
		f.change(c, "resume")
		f.waitConsumed(c, perCampaign/10)
		fault.run(f, c)
		f.atRest(all)
		t.Logf("%s: exact at rest after %v", fault.name, time.Since(phase).Round(time.Millisecond))
	}
	f.checkStatus()
	t.Logf("fleet test: %v in all", time.Since(start).Round(time.Millisecond))
}

// midDrain fails the test unless c still has messages queued (not only
// outcomes not yet counted, which lag the acks by the error log's batching):
// a fault after the drain would prove nothing. It returns how many of c's
// messages have an outcome.
func (f *fleet) midDrain(c *campaign) int64 {
	f.t.Helper()
	q, err := f.queued(c)
	if err != nil {
		f.t.Fatal(err)
	}
	if q == 0 {
		f.t.Fatalf("%s was drained before the fault (nothing queued of %d): make the campaign bigger", c.id, c.accepted)
	}
	k, err := f.counts(c.id)
	if err != nil {
		f.t.Fatal(err)
	}
	return k.Delivered + k.Invalid + k.Failed + k.Purged
}

// killWorker kills one worker with SIGKILL and starts it again.
func killWorker(f *fleet, c *campaign) {
	done := f.midDrain(c)
	f.workers[0].kill9()
	f.t.Logf("worker1 killed with %d of %d counted", done, c.accepted)
	f.workers[0].start()
}

// killLeader kills the node leading SLUICE_BULK; while it is down a
// POST of more rows must answer 202 and reads must work; it comes back
// after 20s.
func killLeader(f *fleet, c *campaign) {
	leader := f.leaderOf(orchestrator.StreamName)
	n := f.nats.node(leader)
	done := f.midDrain(c)
	killedAt := time.Now()
	f.nats.kill(n)
	f.t.Logf("node %s (leader of %s) killed with %d of %d counted", leader, orchestrator.StreamName, done, c.accepted)
	poll(f.t, 30*time.Second, "a new leader of "+orchestrator.StreamName, func() (bool, string) {
		l := f.leaderOf(orchestrator.StreamName)
		return l != leader, "still " + l
	})
	f.t.Logf("new leader %s after %v", f.leaderOf(orchestrator.StreamName), time.Since(killedAt).Round(time.Millisecond))
	if code, resp := f.post(c, "while-node-down", 1000); code != http.StatusAccepted {
		f.t.Fatalf("POST of 1000 rows with node %s down: %d %s, want 202", leader, code, resp)
	}
	k, err := f.counts(c.id)
	if err != nil {
		f.t.Fatalf("read with node %s down: %v", leader, err)
	}
	f.t.Logf("with %s down: POST of 1000 rows 202, read 200 (%d counted so far)", leader, k.Delivered+k.Invalid)
	time.Sleep(time.Until(killedAt.Add(20 * time.Second))) // the outage lasts 20s, whatever happens
	k2, err := f.counts(c.id)
	if err != nil {
		f.t.Fatalf("read with node %s down: %v", leader, err)
	}
	// Two nodes of three keep the drain going. When the killed node also led
	// the conversation's consumer, the new consumer leader may hold up to
	// MaxAckPending messages (256 in the bulk lane) whose acks died with the
	// old leader, and fetches nothing more until AckWait (30s) redelivers
	// them: the drain then pauses, but it must not be stuck at the kill.
	drained := k2.Delivered + k2.Invalid - done
	if drained == 0 && done < c.accepted {
		f.t.Errorf("the drain stalled with node %s down: nothing of %d left was counted in 20s", leader, c.accepted-done)
	}
	f.nats.start(n)
	f.t.Logf("node %s restarted; %d counted during its 20s outage", leader, drained)
}

// killConsumerLeader kills the node leading c's bulk consumer mid-drain
// (the stream's leader may be another) and restarts it 20s later. The
// workers' acks sent while the consumer had no leader are lost; they are sent
// again when its new leader is elected, so the drain goes on after the
// election instead of stopping until AckWait (30s) redelivers every message
// whose ack was lost, each then sent a second time. What is left to
// AckWait are the messages the dead leader delivered that never reached a
// worker: at most the consumer's MaxAckPending.
func killConsumerLeader(f *fleet, c *campaign) {
	name, leader := f.consumerLeader(c)
	n := f.nats.node(leader)
	done := f.midDrain(c)
	dups := f.smtp.Ledger().Stats().Duplicates
	killedAt := time.Now()
	f.nats.kill(n)
	f.t.Logf("node %s (leader of consumer %s) killed with %d of %d counted", leader, name, done, c.accepted)
	const lostInTransit = 1024 // the bulk lane's MaxAckPending
	// Within 25s: a new leader may ignore the acks sent again at its
	// election and at +1s and +5s (see orchestrator's ackReplay), and
	// without them the drain waits until AckWait, 30s after the last
	// deliveries before the kill.
	poll(f.t, 25*time.Second, fmt.Sprintf("%s drained but for at most %d messages with its consumer's leader killed (AckWait is 30s)", c.id, lostInTransit), func() (bool, string) {
		q, err := f.queued(c)
		if err != nil {
			return false, err.Error()
		}
		return q <= lostInTransit, fmt.Sprintf("%d queued", q)
	})
	q, _ := f.queued(c)
	f.t.Logf("%s drained but for %d messages %v after the kill (%s), %d sends repeated; acks sent again: %s", c.id, q, time.Since(killedAt).Round(time.Millisecond),
		f.consumerState(name), f.smtp.Ledger().Stats().Duplicates-dups, f.workerMetric("sluice_orchestrator_reacks_total"))
	time.Sleep(time.Until(killedAt.Add(20 * time.Second)))
	f.nats.start(n)
	f.waitConsumed(c, c.accepted) // every message acked: any redelivery is behind
	f.waitCounted(c, c.accepted)
	f.t.Logf("after the consumer leader's kill: %d sends repeated; redelivered after their ack, not sent again: %s",
		f.smtp.Ledger().Stats().Duplicates-dups, f.workerMetric("sluice_orchestrator_redelivered_completed_total"))
}

// pauseResume pauses c mid-drain for the whole fleet: once the sends in
// flight are counted nothing more is, its consumer is kept (with the bulk
// stream's Limits retention a held consumer costs the live conversations'
// acks nothing), and after the resume it drains what was left, each message
// counted once (atRest) and none sent twice.
func pauseResume(f *fleet, c *campaign) {
	done := f.midDrain(c)
	dups := f.smtp.Ledger().Stats().Duplicates // the earlier faults' are all in
	f.change(c, "pause")
	pausedAt := time.Now()
	f.t.Logf("%s paused with %d of %d counted", c.id, done, c.accepted)
	time.Sleep(heldFor / 2) // the sends in flight at the pause are counted
	k1, err := f.counts(c.id)
	if err != nil {
		f.t.Fatal(err)
	}
	time.Sleep(heldFor / 2)
	k2, err := f.counts(c.id)
	if err != nil {
		f.t.Fatal(err)
	}
	held := k1.Delivered + k1.Invalid + k1.Failed
	if now := k2.Delivered + k2.Invalid + k2.Failed; now != held || held >= c.accepted {
		f.t.Errorf("%s held: %d counted %v after the pause, %d %v later, of %d", c.id, held, heldFor/2, now, heldFor/2, c.accepted)
	}
	if n, err := f.consumers(c); err != nil || n != 1 {
		f.t.Errorf("%s held: %d consumers (%v), want its one kept", c.id, n, err)
	}
	f.t.Logf("%s held %v with %d of %d counted, its consumer kept; resumed", c.id, time.Since(pausedAt).Round(time.Millisecond), held, c.accepted)
	f.change(c, "resume")
	f.waitCounted(c, c.accepted)
	if d := f.smtp.Ledger().Stats().Duplicates; d != dups {
		f.t.Errorf("%d messages sent twice across the pause and the resume", d-dups)
	}
}

// stopPostgres stops Postgres for 30s mid-drain; the workers go on through
// the error log's spill stream.
func stopPostgres(f *fleet, c *campaign) {
	done := f.midDrain(c)
	// What the campaign's consumer has not had acked: the bulk stream keeps
	// acked messages until the reclaim pass purges them, so its message
	// count is no measure of the drain.
	queued := func() uint64 {
		q, err := f.queued(c)
		if err != nil {
			f.t.Fatal(err)
		}
		return q
	}
	pgtest.StopServer(f.t)
	stoppedAt := time.Now()
	before := queued()
	f.t.Logf("postgres stopped with %d of %d counted, %d queued", done, c.accepted, before)
	time.Sleep(time.Until(stoppedAt.Add(25 * time.Second))) // the outage lasts 30s, whatever happens
	after := queued()
	if before > 0 && after >= before {
		f.t.Errorf("the drain stalled with postgres down: %d queued at the stop, %d 25s later", before, after)
	}
	time.Sleep(time.Until(stoppedAt.Add(30 * time.Second)))
	pgtest.StartServer(f.t)
	f.t.Logf("postgres restarted after 30s; %d messages drained during the outage", before-after)
}

// atRest waits until the activations stream is empty and every campaign's
// outcomes add up, then checks each exactly: accepted as sent, invalid as
// sent, delivered as sent and equal to the sink ledger's distinct
// activations, nothing failed or purged; and every stream back at full
// replication.
func (f *fleet) atRest(all []*campaign) {
	f.t.Helper()
	poll(f.t, 3*time.Minute, "every campaign at rest", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		for _, name := range []string{orchestrator.StreamName, orchestrator.TransactionalStreamName} {
			s, err := f.js.Stream(ctx, name)
			if err != nil {
				return false, err.Error()
			}
			if m := s.CachedInfo().State.Msgs; m > 0 {
				return false, fmt.Sprintf("%d queued in %s", m, name)
			}
		}
		for _, c := range all {
			k, err := f.counts(c.id)
			if err != nil {
				return false, err.Error()
			}
			if k.Pending != 0 || k.Accepted != k.Delivered+k.Invalid+k.Failed+k.Purged {
				return false, fmt.Sprintf("%s: %+v", c.id, k)
			}
		}
		return true, ""
	})
	var delivered int64
	for _, c := range all {
		k, err := f.counts(c.id)
		if err != nil {
			f.t.Fatal(err)
		}
		ledger := int64(f.smtp.Ledger().Conversation(tenant, c.id))
		if k.Accepted != c.accepted || k.Invalid != c.invalid() || k.Delivered != c.valid || k.Failed != 0 || k.Purged != 0 || ledger != c.valid {
			f.t.Errorf("%s: accepted %d delivered %d invalid %d failed %d purged %d pending %d, sink ledger %d distinct; "+
				"want accepted %d = delivered %d (the ledger's) + invalid %d", c.id, k.Accepted, k.Delivered, k.Invalid, k.Failed, k.Purged, k.Pending,
				ledger, c.accepted, c.valid, c.invalid())
		}
		delivered += k.Delivered
	}
	st := f.smtp.Ledger().Stats()
	if int64(st.Unique) != delivered {
		f.t.Errorf("sink ledger %d distinct activations, delivered %d in all", st.Unique, delivered)
	}
	f.t.Logf("at rest: %d campaigns exact, %d delivered (%d duplicate sends reported apart)", len(all), delivered, st.Duplicates)
	f.waitReplicated(2 * time.Minute)
}
