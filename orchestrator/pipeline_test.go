package orchestrator_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/dispatch/sink"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/wire"
)

var (
	validAddrs = map[dispatch.Channel]func(i int) string{
		dispatch.ChannelEmail: func(i int) string { return fmt.Sprintf("user%d@example.com", i) },
		dispatch.ChannelSMS:   func(int) string { return "+447911123456" },
		dispatch.ChannelPush:  func(i int) string { return fmt.Sprintf("%064x", i+1) },
	}
	invalidAddrs = map[dispatch.Channel][]string{
		dispatch.ChannelEmail: {"", "not-an-email", "a@b", "bob@-bad-.com", "Bob <bob@example.com>"},
		dispatch.ChannelSMS:   {"", "0044 7911 123456", "+1", "+99912345678"},
		dispatch.ChannelPush:  {"", "xyz", strings.Repeat("g", 64)},
	}
	channels = []dispatch.Channel{dispatch.ChannelEmail, dispatch.ChannelSMS, dispatch.ChannelPush}
)

// mixed builds n activations over both lanes, three channels and four bulk
// conversations; two in seven are invalid. It returns them and, by reason, how
// many invalid ones dispatch.Validate says there are.
func mixed(n int) ([]*wire.Activation, map[string]int64, int) {
	acts := make([]*wire.Activation, 0, n)
	invalid := map[string]int64{}
	valid := 0
	for i := range n {
		ch := channels[i%3]
		lane, conv := wire.LaneBulk, fmt.Sprintf("conv-%d", i%4)
		if i%5 == 0 {
			lane, conv = wire.LaneTransactional, "otp"
		}
		to := validAddrs[ch](i)
		if i%7 < 2 {
			bad := invalidAddrs[ch]
			to = bad[(i/7)%len(bad)]
		}
		acts = append(acts, activation(fmt.Sprintf("act-%d", i), lane, "acme", conv, ch, to))
		if err := dispatch.Validate(ch, to); err != nil {
			invalid[string(dispatch.ReasonOf(err))]++
		} else {
			valid++
		}
	}
	return acts, invalid, valid
}

func TestAccountingExact(t *testing.T) {
	t.Parallel()
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	b := setup(t)
	acts, wantInvalid, wantValid := mixed(n)
	if wantValid == 0 || len(wantInvalid) < 4 {
		t.Fatalf("fixture should mix valid and several invalid reasons: valid=%d invalid=%v", wantValid, wantInvalid)
	}
	b.start(t, b.js, allChannels(b.rec), orchestrator.Config{})
	b.publish(t, acts)

	waitFor(t, 3*time.Minute, "every message to be delivered or counted", func() bool {
		return b.rec.Ledger.Stats().Unique+int(sum(b.errorCounts(t))) >= n
	})
	waitFor(t, 30*time.Second, "the stream to empty", func() bool { return b.streamMsgs(t) == 0 })

	st := b.rec.Ledger.Stats()
	if st.Unique != wantValid || st.Duplicates != 0 {
		t.Errorf("sink: %d unique, %d duplicates; want %d unique, 0 duplicates", st.Unique, st.Duplicates, wantValid)
	}
	got := b.errorCounts(t)
	for reason, want := range wantInvalid {
		if got[reason] != want {
			t.Errorf("error count %s = %d, want %d", reason, got[reason], want)
		}
	}
	if sum(got) != sum(wantInvalid) {
		t.Errorf("error counts %v, want %v", got, wantInvalid)
	}
	var rows int64
	if err := b.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM error_log`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != sum(wantInvalid) {
		t.Errorf("error_log rows = %d, want %d", rows, sum(wantInvalid))
	}
	// Delivered is counted before the ack, once per activation: exact as
	// soon as the stream is empty.
	var d int64
	if err := b.db.Pool.QueryRow(context.Background(), `SELECT coalesce(sum(count), 0)::bigint FROM delivery_counts`).Scan(&d); err != nil {
		t.Fatal(err)
	}
	if d != int64(wantValid) {
		t.Errorf("delivered = %d, want %d", d, wantValid)
	}
}

// slowProvider takes delay per message, so a lane's throughput is bounded
// and the order in which conversations are served is visible.
func slowProvider(delay time.Duration, next dispatch.Provider) dispatch.Provider {
	return funcProvider(func(ctx context.Context, m *dispatch.Message) error {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
		return next.Send(ctx, m)
	})
}

func TestBulkFairness(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const big, small = 20_000, 500
	var bigActs, smallActs []*wire.Activation
	for i := range big {
		bigActs = append(bigActs, activation(fmt.Sprintf("big-%d", i), wire.LaneBulk, "acme", "big", dispatch.ChannelEmail, validAddrs[dispatch.ChannelEmail](i)))
	}
	for i := range small {
		smallActs = append(smallActs, activation(fmt.Sprintf("small-%d", i), wire.LaneBulk, "acme", "small", dispatch.ChannelEmail, validAddrs[dispatch.ChannelEmail](i)))
	}
	// 4 workers at 1ms a message: the lane moves about 4,000 msg/s, so the
	// big conversation alone needs about 5s.
	b.start(t, b.js, allChannels(slowProvider(time.Millisecond, b.rec)), orchestrator.Config{Bulk: orchestrator.LaneConfig{Workers: 4, FetchBatch: 16}})
	b.publish(t, bigActs)
	waitFor(t, 30*time.Second, "the big conversation to start", func() bool { return b.rec.Ledger.Conversation("acme", "big") > 0 })
	time.Sleep(300 * time.Millisecond) // the big conversation has the lane to itself for a while

	start := time.Now()
	b.publish(t, smallActs)
	waitFor(t, 10*time.Second, "the small conversation's first delivery", func() bool { return b.rec.Ledger.Conversation("acme", "small") > 0 })
	firstAfter := time.Since(start)
	smallAtFirst, bigAtFirst := b.rec.Ledger.Conversation("acme", "small"), b.rec.Ledger.Conversation("acme", "big")
	waitFor(t, 60*time.Second, "the small conversation to finish", func() bool { return b.rec.Ledger.Conversation("acme", "small") == small })
	elapsed := time.Since(start)
	bigDuring := b.rec.Ledger.Conversation("acme", "big") - bigAtFirst
	bigLeft := big - b.rec.Ledger.Conversation("acme", "big")

	// The small conversation's share of the lane while both had messages.
	share := float64(small-smallAtFirst) / float64(small-smallAtFirst+bigDuring)
	t.Logf("fairness: small conversation (%d msgs) first served %v and done %v after activation; while both were active it had %.0f%% of the lane (big delivered %d meanwhile); %d big still queued",
		small, firstAfter.Round(time.Millisecond), elapsed.Round(time.Millisecond), 100*share, bigDuring, bigLeft)
	if bigLeft < big/3 {
		t.Errorf("small conversation finished only when big had %d of %d left: it waited behind it", bigLeft, big)
	}
	if share < 0.35 {
		t.Errorf("small conversation got %.0f%% of the lane while both were active, want about half", 100*share)
	}
	waitFor(t, 60*time.Second, "big to finish", func() bool { return b.rec.Ledger.Conversation("acme", "big") == big })
}

func TestPoisonMessagesAreRecordedAndTerminated(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.start(t, b.js, allChannels(b.rec), orchestrator.Config{MaxVarsBytes: 64})
	ctx := context.Background()
	good := `{"v":1,"id":"%s","tenant":"acme","conversation":"c1","lane":"%s","channel":"%s","to":"ok@example.com"%s}`
	raw := []struct{ subject, data string }{
		{"sluice.act.transactional.acme.c1", `{"v":1,"id":`},
		{"sluice.act.bulk.acme.c1", "\xff\xfe not json"},
		{"sluice.act.bulk.acme.c1", `{"v":7,"id":"future"}`},
		{"sluice.act.transactional.acme.c1", fmt.Sprintf(good, "bigvars", "transactional", "email", `,"vars":{"k":"`+strings.Repeat("x", 100)+`"}`)},
		{"sluice.act.transactional.acme.c1", fmt.Sprintf(good, "fax", "transactional", "fax", "")},
		{"sluice.act.bulk.acme.other", fmt.Sprintf(good, "mismatch", "bulk", "email", "")},
		{"sluice.act.transactional.acme.c1", fmt.Sprintf(good, "after-poison", "transactional", "email", "")},
		{"sluice.act.bulk.acme.c1", fmt.Sprintf(good, "after-poison-bulk", "bulk", "email", "")},
	}
	for _, r := range raw {
		if _, err := b.js.Publish(ctx, r.subject, []byte(r.data)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "valid messages behind the poison to be delivered", func() bool {
		return b.rec.Ledger.Has("after-poison") && b.rec.Ledger.Has("after-poison-bulk")
	})
	want := map[string]int64{
		string(wire.ReasonUndecodable): 2, string(wire.ReasonUnknownSchema): 1, string(wire.ReasonVarsTooLarge): 1,
		string(wire.ReasonUnknownChannel): 1, string(wire.ReasonSubjectMismatch): 1,
	}
	waitFor(t, 30*time.Second, "poison messages to be recorded", func() bool { return sum(b.errorCounts(t)) == sum(want) })
	got := b.errorCounts(t)
	for reason, n := range want {
		if got[reason] != n {
			t.Errorf("reason %s: %d, want %d (all: %v)", reason, got[reason], n, got)
		}
	}
	waitFor(t, 10*time.Second, "the stream to empty", func() bool { return b.streamMsgs(t) == 0 })
}

func TestTransientFailureReachingMaxDeliverIsRecorded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	failing := funcProvider(func(ctx context.Context, m *dispatch.Message) error {
		if m.To == "down@example.com" {
			return errors.New("connection refused")
		}
		return b.rec.Send(ctx, m)
	})
	cp := &countingProvider{next: failing}
	cfg := orchestrator.Config{RetryBase: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond}
	cfg.Transactional.MaxDeliver = 3
	b.start(t, b.js, allChannels(cp), cfg)
	b.publish(t, []*wire.Activation{
		activation("down", wire.LaneTransactional, "acme", "c1", dispatch.ChannelEmail, "down@example.com"),
		activation("up", wire.LaneTransactional, "acme", "c1", dispatch.ChannelEmail, "up@example.com"),
	})
	waitFor(t, 30*time.Second, "the failing message to be recorded", func() bool {
		return b.errorCounts(t)[string(wire.ReasonMaxDeliveries)] == 1
	})
	if n := cp.count("down"); n != 3 {
		t.Errorf("failing message sent %d times, want MaxDeliver=3", n)
	}
	if !b.rec.Ledger.Has("up") {
		t.Error("healthy message not delivered")
	}
	waitFor(t, 10*time.Second, "the stream to empty", func() bool { return b.streamMsgs(t) == 0 })
}

func TestRejectedByProviderIsPermanent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rejecting := &countingProvider{next: funcProvider(func(context.Context, *dispatch.Message) error {
		return &dispatch.RejectedError{Reason: "recipient_rejected", Detail: "550 no such user"}
	})}
	b.start(t, b.js, allChannels(rejecting), orchestrator.Config{})
	b.publish(t, []*wire.Activation{activation("r1", wire.LaneBulk, "acme", "c1", dispatch.ChannelEmail, "gone@example.com")})
	waitFor(t, 30*time.Second, "the rejection to be recorded", func() bool { return b.errorCounts(t)["recipient_rejected"] == 1 })
	waitFor(t, 10*time.Second, "the stream to empty", func() bool { return b.streamMsgs(t) == 0 })
	if n := rejecting.count("r1"); n != 1 {
		t.Errorf("rejected message sent %d times, want 1 (no retry)", n)
	}
}

// TestCrashLosesNothing kills a worker's connection while messages are in
// flight; a second worker gets them after AckWait, and every message is
// delivered by one or the other.
func TestCrashLosesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n, firstK = 2000, 300
	var acts []*wire.Activation
	for i := range n {
		lane := wire.LaneBulk
		if i%4 == 0 {
			lane = wire.LaneTransactional
		}
		acts = append(acts, activation(fmt.Sprintf("c-%d", i), lane, "acme", "crash", dispatch.ChannelEmail, validAddrs[dispatch.ChannelEmail](i)))
	}
	b.publish(t, acts)

	// Worker A delivers firstK messages, then hangs on every send, as a
	// process that is about to be killed.
	ledgerA := sink.NewLedger()
	var sent atomic.Int64
	hang := funcProvider(func(ctx context.Context, m *dispatch.Message) error {
		if sent.Add(1) > firstK {
			<-ctx.Done()
			return ctx.Err()
		}
		ledgerA.Add(m)
		return nil
	})
	cfg := orchestrator.Config{SendTimeout: 500 * time.Millisecond, RetryBase: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond}
	cfg.Transactional.AckWait, cfg.Bulk.AckWait = time.Second, time.Second
	ncA, jsA := connect(t, b.url)
	svcA := b.start(t, jsA, allChannels(hang), cfg)
	waitFor(t, 30*time.Second, "worker A to deliver its share", func() bool { return ledgerA.Stats().Unique >= firstK })
	ncA.Close() // kill: no more acks, no drain
	stopCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = svcA.Stop(stopCtx)
	cancel()

	_, jsB := connect(t, b.url)
	b.start(t, jsB, allChannels(b.rec), cfg)
	waitFor(t, 60*time.Second, "every message to be delivered by A or B", func() bool {
		for _, a := range acts {
			if !ledgerA.Has(a.ID) && !b.rec.Ledger.Has(a.ID) {
				return false
			}
		}
		return true
	})
	waitFor(t, 30*time.Second, "the stream to empty", func() bool { return b.streamMsgs(t) == 0 })
	dups := 0
	for _, a := range acts {
		if ledgerA.Has(a.ID) && b.rec.Ledger.Has(a.ID) {
			dups++
		}
	}
	t.Logf("crash: A delivered %d, B delivered %d, %d delivered twice (acks lost with the connection)", ledgerA.Stats().Unique, b.rec.Ledger.Stats().Unique, dups)
}

// TestGracefulStopDrains stops a worker mid-stream: everything it fetched is
// finished and acked, so a second worker delivers the rest with no duplicate.
func TestGracefulStopDrains(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 3000
	var acts []*wire.Activation
	for i := range n {
		lane := wire.LaneBulk
		if i%3 == 0 {
			lane = wire.LaneTransactional
		}
		acts = append(acts, activation(fmt.Sprintf("g-%d", i), lane, "acme", fmt.Sprintf("g%d", i%3), dispatch.ChannelEmail, validAddrs[dispatch.ChannelEmail](i)))
	}
	b.publish(t, acts)
	prov := allChannels(slowProvider(500*time.Microsecond, b.rec))
	svc := b.start(t, b.js, prov, orchestrator.Config{})
	waitFor(t, 30*time.Second, "a first share to be delivered", func() bool { return b.rec.Ledger.Stats().Unique >= n/4 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := svc.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	stoppedAt := b.rec.Ledger.Stats().Unique
	if stoppedAt == n {
		t.Fatalf("everything was delivered before Stop; the test needs a slower provider")
	}
	b.start(t, b.js, prov, orchestrator.Config{})
	waitFor(t, 60*time.Second, "the rest to be delivered", func() bool { return b.rec.Ledger.Stats().Unique == n })
	if d := b.rec.Ledger.Stats().Duplicates; d != 0 {
		t.Errorf("%d duplicates after a graceful stop at %d/%d, want 0", d, stoppedAt, n)
	}
}

// TestSlowSendsAreNotRedelivered: with one worker and sends of 2s, the third
// message waits 4s for its turn, longer than the 3s AckWait; the worker keeps
// it in progress on the server, so it is sent once, not twice.
func TestSlowSendsAreNotRedelivered(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cp := &countingProvider{next: slowProvider(2*time.Second, b.rec)}
	cfg := orchestrator.Config{SendTimeout: 2500 * time.Millisecond}
	cfg.Transactional = orchestrator.LaneConfig{Workers: 1, FetchBatch: 1, AckWait: 3 * time.Second, MaxAckPending: 8}
	b.start(t, b.js, allChannels(cp), cfg)
	var acts []*wire.Activation
	for i := range 3 {
		acts = append(acts, activation(fmt.Sprintf("slow-%d", i), wire.LaneTransactional, "acme", "slow", dispatch.ChannelEmail, validAddrs[dispatch.ChannelEmail](i)))
	}
	b.publish(t, acts)
	waitFor(t, 30*time.Second, "the slow messages to be delivered", func() bool { return b.rec.Ledger.Stats().Unique == 3 })
	time.Sleep(500 * time.Millisecond) // a redelivery would show up now
	for _, a := range acts {
		if n := cp.count(a.ID); n != 1 {
			t.Errorf("%s sent %d times, want 1", a.ID, n)
		}
	}
}
