package orchestrator_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/internal/migrate"
	"github.com/sluicehq/sluice/internal/pglocal"
	"github.com/sluicehq/sluice/internal/pgtest"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/control"
	"github.com/sluicehq/sluice/wire"
)

// floodSize is the storm of the error-log tests: 500k invalid and 10k valid
// messages with SLUICE_FLOOD_FULL=1 (the figure), 100k/2k by default,
// 20k/500 with -short (the race-detector run of make test).
func floodSize() (invalid, valid int) {
	switch {
	case os.Getenv("SLUICE_FLOOD_FULL") != "":
		return 500_000, 10_000
	case testing.Short():
		return 20_000, 500
	default:
		return 100_000, 2_000
	}
}

// The stated bound on the valid transactional messages' p99 enqueue-to-send
// latency during a flood, in any mode but sync (which blocks workers by
// design; its latency is reported, not bounded).
const floodP99Bound = 2 * time.Second

var floodReasons = []struct{ to, reason string }{
	{"", string(wire.ReasonEmpty)},
	{"not-an-email", string(wire.ReasonSyntax)},
	{"a@b", string(wire.ReasonBadDomain)},
}

// latencyProvider records enqueue-to-send latency of each message it sends.
type latencyProvider struct {
	mu   sync.Mutex
	sent map[string]time.Time
	lat  []time.Duration
	next dispatch.Provider
}

func newLatencyProvider(next dispatch.Provider) *latencyProvider {
	return &latencyProvider{sent: map[string]time.Time{}, next: next}
}

func (p *latencyProvider) published(id string, at time.Time) {
	p.mu.Lock()
	p.sent[id] = at
	p.mu.Unlock()
}

func (p *latencyProvider) Send(ctx context.Context, m *dispatch.Message) error {
	p.mu.Lock()
	if at, ok := p.sent[m.ID]; ok {
		p.lat = append(p.lat, time.Since(at))
		delete(p.sent, m.ID)
	}
	p.mu.Unlock()
	return p.next.Send(ctx, m)
}

func (p *latencyProvider) quantile(q float64) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.lat) == 0 {
		return 0
	}
	s := slices.Clone(p.lat)
	slices.Sort(s)
	return s[int(math.Ceil(q*float64(len(s))))-1]
}

// flood publishes n invalid bulk messages over 8 conversations while a
// trickle of valid transactional messages flows at 200/s, and returns the
// expected error counts by reason. The trickle runs in the background until
// every valid message is published.
func flood(t *testing.T, b *bundle, lp *latencyProvider, n, valid int) (map[string]int64, *sync.WaitGroup) {
	t.Helper()
	wg := trickle(t, b, lp, valid)
	want := map[string]int64{}
	publishFlood(t, b, want, 0, n)
	return want, wg
}

// trickle publishes valid transactional messages, one every 5 ms, in the
// background; wait for the WaitGroup before reading what they counted.
func trickle(t *testing.T, b *bundle, lp *latencyProvider, valid int) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := range valid {
			<-tick.C
			a := activation(fmt.Sprintf("v-%d", i), wire.LaneTransactional, "acme", "otp", dispatch.ChannelEmail, validAddrs[dispatch.ChannelEmail](i))
			lp.published(a.ID, time.Now())
			if err := b.pub.Publish(context.Background(), a); err != nil {
				t.Errorf("publish valid: %v", err)
				return
			}
		}
	})
	return &wg
}

// publishFlood publishes the flood's bulk messages from to to (ids f-from
// to f-(to-1)), adding each to want under its reason.
func publishFlood(t *testing.T, b *bundle, want map[string]int64, from, to int) {
	t.Helper()
	acts := make([]*wire.Activation, 0, 10_000)
	for i := from; i < to; i++ {
		r := floodReasons[i%len(floodReasons)]
		want[r.reason]++
		acts = append(acts, activation(fmt.Sprintf("f-%d", i), wire.LaneBulk, "acme", fmt.Sprintf("storm-%d", i%8), dispatch.ChannelEmail, r.to))
		if len(acts) == cap(acts) {
			b.publish(t, acts)
			acts = acts[:0]
		}
	}
	b.publish(t, acts)
}

// settle waits for every message to reach its outcome and checks the
// accounting exactly. Valid messages are delivered at least once: maxDup
// bounds the duplicates a test allows (0 unless a worker dies with sends in
// flight, whose acks die with it).
func settle(t *testing.T, b *bundle, want map[string]int64, valid int, trickle *sync.WaitGroup, maxDup ...int) {
	t.Helper()
	trickle.Wait()
	n := sum(want)
	waitFor(t, 10*time.Minute, "the flood to be counted and the trickle delivered", func() bool {
		return sum(b.errorCounts(t)) >= n && b.rec.Ledger.Stats().Unique >= valid
	})
	waitFor(t, time.Minute, "the stream to empty", func() bool { return b.streamMsgs(t) == 0 })
	got := b.errorCounts(t)
	for reason, w := range want {
		if got[reason] != w {
			t.Errorf("count %s = %d, want exactly %d", reason, got[reason], w)
		}
	}
	if sum(got) != n {
		t.Errorf("counts %v, want %v", got, want)
	}
	allowed := 0
	if len(maxDup) > 0 {
		allowed = maxDup[0]
	}
	if st := b.rec.Ledger.Stats(); st.Unique != valid || st.Duplicates > allowed {
		t.Errorf("valid: %d delivered, %d duplicates; want %d, at most %d duplicates", st.Unique, st.Duplicates, valid, allowed)
	}
}

func (b *bundle) rows(t *testing.T) int64 {
	t.Helper()
	var n int64
	if err := b.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM error_log`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestErrorLogFloodInEachMode(t *testing.T) {
	n, valid := floodSize()
	sample := errorlog.Mode{Name: errorlog.ModeSample, First: 10, Then: 1000, Window: time.Minute}
	for _, tc := range []struct {
		mode    errorlog.Mode
		maxRows func(n int, took time.Duration) int64
	}{
		{errorlog.Mode{Name: errorlog.ModeFull}, func(n int, _ time.Duration) int64 { return int64(n) }},
		// 8 conversations × 3 reasons, each: the first 10 of every window
		// the flood spans, then 1 in 1000.
		{sample, func(n int, took time.Duration) int64 {
			keys, windows := 8*3, int(took/sample.Window)+2
			return int64(keys * (10*windows + n/keys/1000 + 1))
		}},
		{errorlog.Mode{Name: errorlog.ModeOff}, func(int, time.Duration) int64 { return 0 }},
		{errorlog.Mode{Name: errorlog.ModeSync}, func(n int, _ time.Duration) int64 { return int64(n) }},
	} {
		t.Run(string(tc.mode.Name), func(t *testing.T) {
			t.Parallel()
			n := n
			if tc.mode.Name == errorlog.ModeSync && os.Getenv("SLUICE_FLOOD_FULL") == "" {
				n /= 4 // one commit per event: keep the default run short
			}
			b := setup(t)
			b.elog.SetMode(tc.mode)
			lp := newLatencyProvider(b.rec)
			b.start(t, b.js, allChannels(lp), orchestrator.Config{})
			start := time.Now()
			want, trickle := flood(t, b, lp, n, valid)
			settle(t, b, want, valid, trickle)
			rows := b.rows(t)
			p50, p99 := lp.quantile(0.5), lp.quantile(0.99)
			t.Logf("mode %s: %d invalid + %d valid settled in %v; valid latency p50 %v p99 %v; %d error_log rows",
				tc.mode, n, valid, time.Since(start).Round(time.Millisecond), p50.Round(time.Millisecond), p99.Round(time.Millisecond), rows)
			if max := tc.maxRows(n, time.Since(start)); rows > max || tc.mode.Name == errorlog.ModeFull && rows != int64(n) {
				t.Errorf("%d error_log rows, want at most %d", rows, max)
			}
			if tc.mode.Name != errorlog.ModeSync && p99 > floodP99Bound {
				t.Errorf("valid p99 %v during the flood, bound %v", p99, floodP99Bound)
			}
		})
	}
}

func TestErrorLogTableLockedMidFlood(t *testing.T) {
	t.Parallel()
	n, valid := floodSize()
	hold := 5 * time.Second
	if os.Getenv("SLUICE_FLOOD_FULL") != "" {
		hold = 30 * time.Second
	}
	b := setup(t)
	lp := newLatencyProvider(b.rec)
	b.start(t, b.js, allChannels(lp), orchestrator.Config{})
	want, trickle := flood(t, b, lp, n, valid)
	waitFor(t, time.Minute, "the flood to start being counted", func() bool { return sum(b.errorCounts(t)) > 0 })

	ctx := context.Background()
	tx, err := b.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE error_log IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	before, validBefore := b.unhandled(t), b.rec.Ledger.Stats().Unique
	time.Sleep(hold) // the outage itself: nothing is polled, the table stays locked
	after, validAfter := b.unhandled(t), b.rec.Ledger.Stats().Unique
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("during a %v lock on error_log: unhandled messages went from %d to %d, %d valid delivered", hold, before, after, validAfter-validBefore)
	if validAfter == validBefore && validBefore < valid {
		t.Error("no valid message delivered while error_log was locked")
	}
	if after >= before && before > uint64(valid) {
		t.Error("the flood stalled while error_log was locked")
	}
	settle(t, b, want, valid, trickle)
	if rows := b.rows(t); rows != int64(n) {
		t.Errorf("%d rows after the spill drained, want %d", rows, n)
	}
}

// TestWorkerKilledMidFlood kills a worker's connection mid-flood without
// letting it drain or ack, while its error log may still commit batches; a
// second worker finishes. Counters stay exact: what was counted and not acked
// is redelivered and recognised by its stream sequence.
func TestWorkerKilledMidFlood(t *testing.T) {
	t.Parallel()
	n, valid := floodSize()
	b := setup(t)
	ncA, jsA := connect(t, b.url)
	elogA := b.newErrorLog(t, jsA, errorlog.Config{})
	cfg := orchestrator.Config{SendTimeout: time.Second}
	cfg.Transactional.AckWait, cfg.Bulk.AckWait = 2*time.Second, 2*time.Second
	lp := newLatencyProvider(b.rec)
	b.startWith(t, jsA, elogA, allChannels(lp), cfg)
	want, trickle := flood(t, b, lp, n, valid)
	waitFor(t, time.Minute, "worker A to count a share", func() bool { return sum(b.errorCounts(t)) > int64(n)/5 })
	ncA.Close() // kill -9, as far as NATS can tell

	_, jsB := connect(t, b.url)
	elogB := b.newErrorLog(t, jsB, errorlog.Config{})
	b.startWith(t, jsB, elogB, allChannels(lp), cfg)
	// Sends in flight when A died may be repeated: at most A's workers.
	settle(t, b, want, valid, trickle, 16) // the transactional lane's default workers
}

// TestPostgresDownMidFlood stops Postgres (a cluster of the test's own) in the
// middle of a flood and starts it again: valid messages keep flowing, the
// spill takes the error log's batches, and after recovery it drains and the
// counters are exact.
func TestPostgresDownMidFlood(t *testing.T) {
	t.Parallel()
	n, valid := floodSize()
	down := 5 * time.Second
	if os.Getenv("SLUICE_FLOOD_FULL") != "" {
		down = 30 * time.Second
	}
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o711); err != nil { // reachable by the postgres user when root
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	pgcfg := pglocal.Config{Dir: filepath.Join(dir, "pg"), Fast: true}
	cl, err := pglocal.Start(ctx, pgcfg)
	if err != nil {
		t.Fatal(err)
	}
	pgcfg.Port = cl.Port()
	t.Cleanup(func() { _ = cl.Stop(context.Background()) })
	pool, err := pgxpool.New(ctx, cl.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := migrate.Up(ctx, pool, migrate.Options{}); err != nil {
		t.Fatal(err)
	}

	b := setup(t)
	// The bundle's own error log would drain the shared spill stream into
	// the bundle's database: only this test's error log may run.
	if err := b.elog.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	b.db = &pgtest.DB{Pool: pool, URL: cl.URL()}
	elog := b.newErrorLog(t, b.js, errorlog.Config{})
	lp := newLatencyProvider(b.rec)
	b.startWith(t, b.js, elog, allChannels(lp), orchestrator.Config{})
	want, trickle := flood(t, b, lp, n, valid)
	waitFor(t, time.Minute, "the flood to start being counted", func() bool { return sum(b.errorCounts(t)) > 0 })

	if err := cl.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	before, validBefore := b.unhandled(t), b.rec.Ledger.Stats().Unique
	time.Sleep(down) // the outage itself
	after, validAfter := b.unhandled(t), b.rec.Ledger.Stats().Unique
	t.Logf("during a %v Postgres outage: unhandled messages went from %d to %d, %d valid delivered", down, before, after, validAfter-validBefore)
	if cl, err = pglocal.Start(ctx, pgcfg); err != nil {
		t.Fatal(err)
	}
	if validAfter == validBefore && validBefore < valid {
		t.Error("no valid message delivered while Postgres was down")
	}
	if after >= before && before > uint64(valid) {
		t.Error("the flood stalled while Postgres was down")
	}
	settle(t, b, want, valid, trickle)
}

// TestModeSwitchMidFloodAcrossWorkers runs two workers (own NATS connection,
// own error log, own control-plane watch: two processes as far as the system
// can tell), switches the fleet's error-log mode through the control plane in
// the middle of a flood, and checks that both follow within a second and that
// no count is lost.
func TestModeSwitchMidFloodAcrossWorkers(t *testing.T) {
	t.Parallel()
	n, valid := floodSize()
	b := setup(t)
	// The bundle's own error log stays idle: the two workers have theirs.
	ctx := context.Background()
	lp := newLatencyProvider(b.rec)
	var logs []*errorlog.Log
	var stores []*control.Store
	for range 2 {
		_, js := connect(t, b.url)
		st, err := control.Open(ctx, js, b.db.Pool, b.log, control.Options{})
		if err != nil {
			t.Fatal(err)
		}
		elog := b.newErrorLog(t, js, errorlog.Config{})
		wctx, cancel := context.WithCancel(ctx)
		t.Cleanup(cancel)
		go func() { _ = st.WatchErrorLogMode(wctx, elog.SetMode) }()
		b.startWith(t, js, elog, allChannels(lp), orchestrator.Config{})
		logs, stores = append(logs, elog), append(stores, st)
	}
	// The flood spans the switch: its first half is published before it,
	// the second once both workers have switched, so the second half's
	// events cannot get a row however fast the first half drains.
	half := n / 2
	trickleDone := trickle(t, b, lp, valid)
	want := map[string]int64{}
	publishFlood(t, b, want, 0, half)
	waitFor(t, time.Minute, "the flood to start being counted", func() bool { return sum(b.errorCounts(t)) > 0 })

	switched := time.Now()
	if _, err := stores[0].SetErrorLogMode(ctx, errorlog.Mode{Name: errorlog.ModeOff}, "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "both workers to switch to off", func() bool {
		return logs[0].Mode().Name == errorlog.ModeOff && logs[1].Mode().Name == errorlog.ModeOff
	})
	took := time.Since(switched)
	rowsAtSwitch := b.rows(t)
	t.Logf("both workers in mode off %v after the change; %d rows were written before it", took.Round(time.Millisecond), rowsAtSwitch)
	if took > time.Second {
		t.Errorf("mode switch took %v across two workers, want under 1s", took)
	}
	publishFlood(t, b, want, half, n)
	settle(t, b, want, valid, trickleDone)
	// Only events of the first half can have a row: those recorded before
	// the switch, written then or in a batch pending at it.
	if rows := b.rows(t); rows > int64(half) {
		t.Errorf("%d rows after switching to off, more than the %d events published before the switch", rows, half)
	}
}
