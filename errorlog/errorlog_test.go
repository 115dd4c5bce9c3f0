package errorlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/metrictest"
	"github.com/sluicehq/sluice/internal/pgtest"
	"github.com/sluicehq/sluice/wire"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var testKey = []byte("0123456789abcdef0123456789abcdef")

type bundle struct {
	db  *pgtest.DB
	log *Log
	reg *prometheus.Registry
}

// setup returns a Log on a fresh database. prepare runs before Start (to set
// hooks); pass start=false to leave the Log stopped.
func setup(t testing.TB, cfg Config, start bool, prepare ...func(*Log)) *bundle {
	t.Helper()
	db := pgtest.New(t)
	if cfg.MaskKey == nil && !cfg.KeepAddresses {
		cfg.MaskKey = testKey
	}
	reg := prometheus.NewRegistry()
	l, err := New(db.Pool, cfg, testLogger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range prepare {
		p(l)
	}
	if start {
		if err := l.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		l.Stop(ctx)
	})
	return &bundle{db: db, log: l, reg: reg}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// results records done callbacks per event ID.
type results struct {
	mu    sync.Mutex
	calls map[string]int
	errs  map[string]error
	n     int
}

func newResults() *results { return &results{calls: map[string]int{}, errs: map[string]error{}} }

func (r *results) done(id string) func(error) {
	return func(err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.calls[id]++
		r.n++
		if err != nil {
			r.errs[id] = err
		}
	}
}

func (r *results) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// wait polls until n callbacks have been made.
func (r *results) wait(t testing.TB, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d done callbacks", n), func() bool { return r.count() >= n })
}

// exactlyOnceOK checks that every id got exactly one callback, with nil.
func (r *results) exactlyOnceOK(t testing.TB, ids []string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	bad := 0
	for _, id := range ids {
		if r.calls[id] != 1 || r.errs[id] != nil {
			if bad++; bad <= 5 {
				t.Errorf("event %s: %d callbacks, err %v; want exactly one, nil", id, r.calls[id], r.errs[id])
			}
		}
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func scalar[T any](t testing.TB, pool *pgxpool.Pool, sql string, args ...any) T {
	t.Helper()
	var v T
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

// metric returns the value of a counter, gauge, or a histogram's sample count.
func metric(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

func events(t testing.TB, reg *prometheus.Registry, outcome string) float64 {
	return metric(t, reg, "sluice_errorlog_events_total", "outcome", outcome)
}

func TestWritesBatchesAndExactCounts(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{}, true)
	const n = 20000
	convs := []string{"conv-a", "conv-b", "conv-c", "conv-d"}
	reasons := []string{"empty_address", "bad_syntax", "unknown_domain", "bad_number", "opted_out"}
	channels := []string{"email", "sms"}
	now := time.Now()
	want := map[string]map[wire.Outcome]map[string]int64{}
	res := newResults()
	ids := make([]string, n)
	for i := range n {
		ev := Event{
			Outcome: wire.OutcomeInvalid, ID: fmt.Sprintf("act-%06d", i),
			Time:         now.Add(-time.Duration(i) * time.Millisecond),
			Tenant:       "acme",
			Conversation: convs[i%len(convs)],
			Lane:         "bulk",
			Channel:      channels[i%len(channels)],
			Reason:       reasons[i%len(reasons)],
			Detail:       "address is not valid",
			Address:      fmt.Sprintf("user%d@Example.COM", i),
		}
		if ev.Reason == "opted_out" {
			ev.Outcome = wire.OutcomeFailed
		}
		if want[ev.Conversation] == nil {
			want[ev.Conversation] = map[wire.Outcome]map[string]int64{}
		}
		if want[ev.Conversation][ev.Outcome] == nil {
			want[ev.Conversation][ev.Outcome] = map[string]int64{}
		}
		want[ev.Conversation][ev.Outcome][ev.Reason]++
		ids[i] = ev.ID
		b.log.Record(ev, res.done(ev.ID))
	}
	res.wait(t, n)
	res.exactlyOnceOK(t, ids)

	if got := scalar[int](t, b.db.Pool, "SELECT count(*) FROM error_log"); got != n {
		t.Errorf("error_log rows = %d, want %d", got, n)
	}
	for _, conv := range convs {
		got, err := Counts(t.Context(), b.db.Pool, "acme", conv)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got.Reasons) != fmt.Sprint(want[conv]) {
			t.Errorf("Counts(%s) = %v, want %v", conv, got.Reasons, want[conv])
		}
	}
	if got, _ := Counts(t.Context(), b.db.Pool, "other-tenant", "conv-a"); len(got.Count) != 0 {
		t.Errorf("another tenant sees %v", got)
	}
	if got := events(t, b.reg, "written"); got != n {
		t.Errorf("written = %v, want %d", got, n)
	}
	if got := events(t, b.reg, "duplicate") + events(t, b.reg, "rejected") + events(t, b.reg, "failed"); got != 0 {
		t.Errorf("duplicate+rejected+failed = %v, want 0", got)
	}
	batches := metric(t, b.reg, "sluice_errorlog_batch_events")
	// A write takes everything pending, so batches may exceed BatchSize
	// when events arrive faster than one commit.
	if batches < 1 || batches > n/10 {
		t.Errorf("%v batches for %d events with BatchSize 1000: not batching", batches, n)
	}
	if got := scalar[int](t, b.db.Pool, "SELECT count(*) FROM error_log WHERE address !~ '^h:[0-9a-f]{16}@example\\.com$'"); got != 0 {
		t.Errorf("%d addresses not masked as h:<16 hex>@example.com", got)
	}
	if got := scalar[int](t, b.db.Pool, "SELECT count(*) FROM error_log_default"); got != 0 {
		t.Errorf("%d current rows in the default partition, want them in day partitions", got)
	}
}

// TestSyncMode: mode sync writes each event in its own transaction before
// done is called, counts it once even when recorded twice, and times every
// insert in the flush histogram.
func TestSyncMode(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{Mode: Mode{Name: ModeSync}}, true)
	const n = 200
	res := newResults()
	ids := make([]string, n)
	now := time.Now()
	for i := range n {
		ev := Event{Outcome: wire.OutcomeInvalid, ID: fmt.Sprintf("sync-%04d", i), Time: now, Tenant: "acme", Conversation: "c", Lane: "bulk",
			Channel: "email", Reason: "bad_syntax", Address: "x@"}
		ids[i] = ev.ID
		b.log.Record(ev, res.done(ev.ID))
		// Synchronous: the row is there when Record returns.
		if got := scalar[int](t, b.db.Pool, "SELECT count(*) FROM error_log WHERE event_id = $1", ev.ID); got != 1 {
			t.Fatalf("%s: %d rows right after Record", ev.ID, got)
		}
	}
	res.exactlyOnceOK(t, ids)
	// The first event again (a redelivery): no row, no count.
	again := newResults()
	b.log.Record(Event{Outcome: wire.OutcomeInvalid, ID: ids[0], Time: now, Tenant: "acme", Conversation: "c", Lane: "bulk", Channel: "email", Reason: "bad_syntax", Address: "x@"}, again.done(ids[0]))
	again.exactlyOnceOK(t, ids[:1])
	if got := scalar[int64](t, b.db.Pool, "SELECT sum(count)::bigint FROM error_counts WHERE conversation = 'c'"); got != n {
		t.Errorf("counted %d, want %d", got, n)
	}
	if got := events(t, b.reg, "duplicate"); got != 1 {
		t.Errorf("duplicate = %v, want 1", got)
	}
	if got := metric(t, b.reg, "sluice_errorlog_flush_duration_seconds"); got != n+1 {
		t.Errorf("flush histogram has %v observations, want one per insert (%d)", got, n+1)
	}
}

// TestDeliveredCountedOnceNoRows: a delivery is counted in delivery_counts
// once per stream sequence, whatever the mode (sync included: a delivery is
// batched), never with a detail row, and a redelivery after its count
// committed adds nothing.
func TestDeliveredCountedOnceNoRows(t *testing.T) {
	t.Parallel()
	for _, mode := range []ModeName{ModeFull, ModeSync} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			b := setup(t, Config{Mode: Mode{Name: mode}, KeepAddresses: true}, true)
			res := newResults()
			ev := func(seq uint64) Event {
				return Event{Outcome: wire.OutcomeDelivered, ID: fmt.Sprintf("d%d", seq), Time: time.Now(), Tenant: "acme",
					Conversation: "c1", Lane: "bulk", Channel: "email", Address: "x@example.com", Seq: seq}
			}
			for seq := uint64(1); seq <= 50; seq++ {
				b.log.Record(ev(seq), res.done(fmt.Sprint("first", seq)))
			}
			res.wait(t, 50)
			for seq := uint64(1); seq <= 50; seq += 5 { // redelivered after their count committed
				b.log.Record(ev(seq), res.done(fmt.Sprint("again", seq)))
			}
			b.log.Record(ev(51), res.done("first51"))
			res.wait(t, 61)
			res.mu.Lock()
			for id, err := range res.errs {
				t.Errorf("%s: %v", id, err)
			}
			res.mu.Unlock()
			if got := scalar[int](t, b.db.Pool, "SELECT coalesce(sum(count), 0)::int FROM delivery_counts WHERE tenant = 'acme' AND conversation = 'c1'"); got != 51 {
				t.Errorf("delivered = %d, want 51", got)
			}
			if got := scalar[int](t, b.db.Pool, "SELECT count(*) FROM error_log"); got != 0 {
				t.Errorf("error_log rows = %d, want none for deliveries", got)
			}
			if got, _ := metrictest.Value(t, b.reg, "sluice_errorlog_recounted_total", map[string]string{"outcome": "delivered"}); got != 10 {
				t.Errorf("recounted{delivered} = %v, want the 10 redeliveries (duplicate sends)", got)
			}
			o, err := Counts(t.Context(), b.db.Pool, "acme", "c1")
			if err != nil || o.Count[wire.OutcomeDelivered] != 51 || len(o.Reasons) != 0 {
				t.Errorf("Counts = %+v, %v; want 51 delivered and nothing else", o, err)
			}
		})
	}
}

// TestSequencesPerSource: each lane has its own stream, so the same sequence
// from two sources is two messages, and each source's redeliveries still
// count once; the spill keeps one source per message.
func TestSequencesPerSource(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{Source: "bulk@1", KeepAddresses: true}, true)
	res := newResults()
	ev := func(seq uint64, src string) Event {
		return Event{Outcome: wire.OutcomeDelivered, ID: fmt.Sprintf("%s-%d", src, seq), Time: time.Now(), Tenant: "acme",
			Conversation: "c1", Lane: "bulk", Channel: "email", Seq: seq, Source: src}
	}
	for seq := uint64(1); seq <= 20; seq++ {
		b.log.Record(ev(seq, ""), res.done(fmt.Sprint("bulk", seq)))
		b.log.Record(ev(seq, "tx@1"), res.done(fmt.Sprint("tx", seq)))
	}
	res.wait(t, 40)
	for seq := uint64(1); seq <= 20; seq += 4 {
		b.log.Record(ev(seq, "bulk@1"), res.done(fmt.Sprint("bulk again", seq))) // "" is Config.Source
		b.log.Record(ev(seq, "tx@1"), res.done(fmt.Sprint("tx again", seq)))
	}
	res.wait(t, 50)
	if got := scalar[int](t, b.db.Pool, "SELECT coalesce(sum(count), 0)::int FROM delivery_counts WHERE conversation = 'c1'"); got != 40 {
		t.Errorf("delivered = %d, want 40 (20 per source, redeliveries once)", got)
	}
	if got := scalar[int](t, b.db.Pool, "SELECT count(DISTINCT source) FROM error_seen WHERE source IN ('bulk@1', 'tx@1')"); got != 2 {
		t.Errorf("sources in error_seen = %d, want 2", got)
	}

	bt := newBatch()
	for i := range 5 {
		bt.add(ev(uint64(i+1), []string{"", "tx@1"}[i%2]), nil)
	}
	bt.details = []Event{ev(9, "")}
	chunks := bt.chunks("bulk@1", 2)
	var got []string
	for _, c := range chunks {
		got = append(got, fmt.Sprintf("%s:%v:%d", c.Source, c.S, len(c.Details)))
	}
	if want := "[bulk@1:[1 3]:1 bulk@1:[5]:0 tx@1:[2 4]:0]"; fmt.Sprint(got) != want {
		t.Errorf("chunks = %v, want %s", got, want)
	}
}

func TestDuplicatesCountOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{BatchSize: 3, FlushInterval: time.Hour}, true)
	t0 := time.Date(2026, 5, 20, 10, 0, 0, 123456000, time.UTC) // whole microseconds
	ev := func(id string, at time.Time, seq uint64) Event {
		return Event{Outcome: wire.OutcomeInvalid, ID: id, Time: at, Tenant: "acme", Conversation: "c1", Lane: "bulk", Channel: "email", Reason: "empty_address", Seq: seq}
	}
	res := newResults()
	record := func(e Event) { b.log.Record(e, res.done(e.ID)) }

	// Batch 1: A twice in the same batch (a redelivery).
	record(ev("A", t0, 1))
	record(ev("B", t0, 2))
	record(ev("A", t0, 1))
	res.wait(t, 3)
	// Batch 2: A again, already counted and stored.
	record(ev("A", t0, 1))
	record(ev("C", t0, 3))
	record(ev("D", t0, 4))
	res.wait(t, 6)
	// Batch 3: the same ID at another time is another message (another
	// sequence); 500ns later is the same microsecond, hence the same row.
	record(ev("E", t0, 5))
	record(ev("E", t0.Add(time.Second), 6))
	record(ev("E", t0.Add(500*time.Nanosecond), 5))
	res.wait(t, 9)

	res.mu.Lock()
	for id, err := range res.errs {
		t.Errorf("%s: %v", id, err)
	}
	res.mu.Unlock()
	if got := scalar[int](t, b.db.Pool, "SELECT count(*) FROM error_log"); got != 6 {
		t.Errorf("rows = %d, want 6 (A B C D E E+1s)", got)
	}
	counts, err := Counts(t.Context(), b.db.Pool, "acme", "c1")
	if err != nil {
		t.Fatal(err)
	}
	if got := counts.Reasons[wire.OutcomeInvalid]["empty_address"]; got != 6 {
		t.Errorf("count = %d, want 6", got)
	}
	if w, d := events(t, b.reg, "written"), events(t, b.reg, "duplicate"); w != 6 || d != 3 {
		t.Errorf("written, duplicate = %v, %v; want 6, 3", w, d)
	}
}

func TestBadTextDoesNotFailBatch(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{KeepAddresses: true, FlushInterval: time.Hour}, true)
	longID := strings.Repeat("x", 300)
	evs := []Event{
		{Outcome: wire.OutcomeInvalid, ID: "nul", Detail: "before\x00after", Address: "a\x00b@example.com"},
		{Outcome: wire.OutcomeInvalid, ID: "bad-utf8", Conversation: "conv-\xff\xfe", Detail: "\xc3\x28 invalid"},
		{Outcome: wire.OutcomeInvalid, ID: "huge", Detail: strings.Repeat("é", 5000)},
		{Outcome: wire.OutcomeInvalid, ID: longID + "1"},
		{Outcome: wire.OutcomeInvalid, ID: longID + "2"},
		{Outcome: wire.OutcomeInvalid, ID: "id-with-\x00-nul"},
		{Outcome: wire.OutcomeInvalid, ID: "normal", Detail: "fine"},
	}
	res := newResults()
	var ids []string
	for _, ev := range evs {
		ev.Time = time.Now()
		ev.Tenant, ev.Lane, ev.Channel, ev.Reason = "acme", "bulk", "email", "bad"
		if ev.Conversation == "" {
			ev.Conversation = "conv"
		}
		ids = append(ids, ev.ID)
		b.log.Record(ev, res.done(ev.ID))
	}
	if err := b.log.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	res.exactlyOnceOK(t, ids)
	if got := scalar[int](t, b.db.Pool, "SELECT count(*) FROM error_log"); got != len(evs) {
		t.Errorf("rows = %d, want %d (long IDs must stay distinct)", got, len(evs))
	}
	if got := scalar[string](t, b.db.Pool, "SELECT detail || '|' || address FROM error_log WHERE event_id = 'nul'"); got != "beforeafter|ab@example.com" {
		t.Errorf("NUL row = %q", got)
	}
	if got := scalar[int](t, b.db.Pool, "SELECT octet_length(detail) FROM error_log WHERE event_id = 'huge'"); got > maxDetail {
		t.Errorf("detail is %d bytes, cap is %d", got, maxDetail)
	}
	if got := scalar[int](t, b.db.Pool, "SELECT max(octet_length(event_id)) FROM error_log"); got > maxField {
		t.Errorf("event_id of %d bytes, cap is %d", got, maxField)
	}
	counts, err := Counts(t.Context(), b.db.Pool, "acme", "conv-\xff\xfe")
	if err != nil || counts.Reasons[wire.OutcomeInvalid]["bad"] != 1 {
		t.Errorf("Counts for the invalid-UTF-8 conversation = %v, %v", counts, err)
	}
}

func TestInvalidEventRejected(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{}, false)
	for _, ev := range []Event{
		{Outcome: wire.OutcomeInvalid, ID: "", Time: time.Now()},
		{Outcome: wire.OutcomeInvalid, ID: "\x00", Time: time.Now()},
		{Outcome: wire.OutcomeInvalid, ID: "before-year-1", Time: time.Date(0, 12, 31, 0, 0, 0, 0, time.UTC)},
		{Outcome: wire.OutcomeInvalid, ID: "no-time"},
		{Outcome: wire.OutcomeInvalid, ID: "far-future", Time: time.Date(20000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		var got error
		called := false
		b.log.Record(ev, func(err error) { got, called = err, true })
		if !called || !errors.Is(got, ErrInvalidEvent) {
			t.Errorf("Record(%+v): called %v, err %v; want ErrInvalidEvent at once", ev, called, got)
		}
	}
}

func TestBufferFullNeverBlocks(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{MaxPending: 10}, false) // not started: nothing drains the buffer
	res := newResults()
	var ids []string
	for i := range 10 {
		id := fmt.Sprintf("e%d", i)
		ids = append(ids, id)
		b.log.Record(Event{Outcome: wire.OutcomeInvalid, ID: id, Time: time.Now(), Tenant: "t", Conversation: "c", Channel: "sms", Reason: "r"}, res.done(id))
	}
	if res.count() != 0 {
		t.Fatalf("%d callbacks before anything was written", res.count())
	}
	if got := metric(t, b.reg, "sluice_errorlog_buffer_depth"); got != 10 {
		t.Errorf("buffer_depth = %v, want 10", got)
	}

	start := time.Now()
	var full error
	for i := range 1000 {
		b.log.Record(Event{Outcome: wire.OutcomeInvalid, ID: fmt.Sprintf("x%d", i), Time: time.Now()}, func(err error) { full = err })
		if !errors.Is(full, ErrBufferFull) {
			t.Fatalf("Record on a full buffer: done got %v before returning, want ErrBufferFull", full)
		}
		full = nil
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("1000 Records on a full buffer took %v", d)
	}
	if got := events(t, b.reg, "rejected"); got != 1000 {
		t.Errorf("rejected = %v, want 1000", got)
	}

	if err := b.log.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	res.wait(t, 10)
	res.exactlyOnceOK(t, ids)
}

func TestStopFlushes(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{FlushInterval: time.Hour}, true)
	res := newResults()
	var ids []string
	for i := range 10 {
		id := fmt.Sprintf("e%d", i)
		ids = append(ids, id)
		b.log.Record(Event{Outcome: wire.OutcomeInvalid, ID: id, Time: time.Now(), Tenant: "t", Conversation: "c", Channel: "push", Reason: "r"}, res.done(id))
	}
	if got := scalar[int](t, b.db.Pool, "SELECT count(*) FROM error_log"); got != 0 {
		t.Fatalf("%d rows written before the interval or Stop", got)
	}
	if err := b.log.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	res.exactlyOnceOK(t, ids) // Stop returned: every callback has run
	if got := scalar[int](t, b.db.Pool, "SELECT count(*) FROM error_log"); got != 10 {
		t.Errorf("rows after Stop = %d, want 10", got)
	}

	var after error
	b.log.Record(Event{Outcome: wire.OutcomeInvalid, ID: "late", Time: time.Now()}, func(err error) { after = err })
	if !errors.Is(after, ErrStopped) {
		t.Errorf("Record after Stop: %v, want ErrStopped", after)
	}
	if err := b.log.Stop(t.Context()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := b.log.Start(t.Context()); !errors.Is(err, ErrStopped) {
		t.Errorf("Start after Stop: %v, want ErrStopped", err)
	}
}

func TestStopContextEndsDuringOutage(t *testing.T) {
	t.Parallel()
	outage := errors.New("database unavailable")
	b := setup(t, Config{FlushInterval: time.Millisecond}, true, func(l *Log) {
		l.hooks.beforeCommit = func() error { return outage }
	})
	res := newResults()
	var ids []string
	for i := range 5 {
		id := fmt.Sprintf("e%d", i)
		ids = append(ids, id)
		b.log.Record(Event{Outcome: wire.OutcomeInvalid, ID: id, Time: time.Now(), Tenant: "t", Conversation: "c", Channel: "sms", Reason: "r"}, res.done(id))
	}
	waitFor(t, "a failed attempt", func() bool { return metric(t, b.reg, "sluice_errorlog_flush_errors_total") > 0 })
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := b.log.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop = %v, want deadline exceeded", err)
	}
	res.mu.Lock()
	defer res.mu.Unlock()
	for _, id := range ids {
		if res.calls[id] != 1 || !errors.Is(res.errs[id], ErrStopped) || !errors.Is(res.errs[id], outage) {
			t.Errorf("%s: %d callbacks, err %v; want one, wrapping ErrStopped and the cause", id, res.calls[id], res.errs[id])
		}
	}
	if got := events(t, b.reg, "failed"); got != 5 {
		t.Errorf("failed = %v, want 5", got)
	}
}

// TestTerminatedBackends kills the writer's connections again and again while
// events flow, the way a flapping database or a failover would.
func TestTerminatedBackends(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{BatchSize: 200, FlushInterval: 5 * time.Millisecond, MaxPending: 1000}, true)
	killer, err := pgxpool.New(t.Context(), b.db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer killer.Close()

	const n = 6000
	res := newResults()
	ids := make([]string, n)
	stop := make(chan struct{})
	var kills, rounds atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		// Bursts of kills with gaps in between, like a flapping database: the
		// writer must make progress between them.
		for range 40 {
			select {
			case <-stop:
				return
			case <-time.After(15 * time.Millisecond):
			}
			var k int64
			err := killer.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&k)
			if err == nil {
				kills.Add(k)
			}
			rounds.Add(1)
		}
	})
	for i := range n {
		if i%500 == 0 { // interleave: each 500 events, at least one more round of kills
			waitFor(t, "a round of kills", func() bool { return rounds.Load() >= int64(i/500+1) })
		}
		id := fmt.Sprintf("act-%d", i)
		ids[i] = id
		ev := Event{Outcome: wire.OutcomeInvalid, ID: id, Time: time.Now(), Tenant: "acme", Conversation: fmt.Sprintf("c%d", i%3), Lane: "bulk", Channel: "email", Reason: "empty_address", Seq: uint64(i + 1)}
		for {
			var full bool
			b.log.Record(ev, func(err error) {
				if errors.Is(err, ErrBufferFull) {
					full = true // called before Record returns
					return
				}
				res.done(id)(err)
			})
			if !full {
				break
			}
			time.Sleep(time.Millisecond) // the caller's nak delay
		}
	}
	res.wait(t, n)
	close(stop)
	wg.Wait()
	res.exactlyOnceOK(t, ids)

	if got := scalar[int](t, b.db.Pool, "SELECT count(*) FROM error_log"); got != n {
		t.Errorf("rows = %d, want %d", got, n)
	}
	if got := scalar[int](t, b.db.Pool, "SELECT coalesce(sum(count), 0)::int FROM error_counts"); got != n {
		t.Errorf("counted %d, want exactly %d", got, n)
	}
	if w, d := events(t, b.reg, "written"), events(t, b.reg, "duplicate"); w+d != n {
		t.Errorf("written %v + duplicate %v != %d", w, d, n)
	}
	flushErrors := metric(t, b.reg, "sluice_errorlog_flush_errors_total")
	t.Logf("%d backends terminated, %v failed flush attempts", kills.Load(), flushErrors)
	if kills.Load() == 0 || flushErrors == 0 {
		t.Errorf("the test did not disturb the writer (kills %d, flush errors %v)", kills.Load(), flushErrors)
	}
}

// TestLostCommitAcknowledgement: the batch committed but the writer saw an error
// (the connection dropped after COMMIT), so it writes the batch again.
func TestLostCommitAcknowledgement(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	b := setup(t, Config{FlushInterval: time.Hour}, true, func(l *Log) {
		l.hooks.afterCommit = func() error {
			if calls.Add(1) == 1 {
				return errors.New("connection reset after COMMIT")
			}
			return nil
		}
	})
	res := newResults()
	var ids []string
	for i := range 50 {
		id := fmt.Sprintf("e%d", i)
		ids = append(ids, id)
		b.log.Record(Event{Outcome: wire.OutcomeInvalid, ID: id, Time: time.Now(), Tenant: "t", Conversation: "c", Channel: "email", Reason: "r", Seq: uint64(i + 1)}, res.done(id))
	}
	if err := b.log.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	res.exactlyOnceOK(t, ids)
	if calls.Load() != 2 {
		t.Errorf("%d attempts, want 2", calls.Load())
	}
	if got := scalar[int](t, b.db.Pool, "SELECT count(*) FROM error_log"); got != 50 {
		t.Errorf("rows = %d, want 50", got)
	}
	if got := scalar[int](t, b.db.Pool, "SELECT sum(count)::int FROM error_counts"); got != 50 {
		t.Errorf("counted %d, want 50: a retried batch must not count twice", got)
	}
}

func TestPanicsAreContained(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	b := setup(t, Config{BatchSize: 2, FlushInterval: time.Hour}, true, func(l *Log) {
		l.hooks.beforeCommit = func() error {
			if calls.Add(1) == 1 {
				panic("boom")
			}
			return nil
		}
	})
	res := newResults()
	ev := func(id string) Event {
		return Event{Outcome: wire.OutcomeInvalid, ID: id, Time: time.Now(), Tenant: "t", Conversation: "c", Channel: "email", Reason: "r"}
	}
	// A panic fails the attempt like any error: the batch rolls back and is
	// written again.
	b.log.Record(ev("p1"), res.done("p1"))
	b.log.Record(ev("p2"), res.done("p2"))
	res.wait(t, 2)
	res.exactlyOnceOK(t, []string{"p1", "p2"})
	if calls.Load() < 2 {
		t.Errorf("%d attempts, want the panicked one retried", calls.Load())
	}

	// A panicking callback does not stop the writer or its batch-mates.
	b.log.Record(ev("q1"), func(error) { panic("callback boom") })
	b.log.Record(ev("q2"), res.done("q2"))
	b.log.Record(ev("q3"), res.done("q3"))
	b.log.Record(ev("q4"), res.done("q4"))
	res.wait(t, 5)
	res.exactlyOnceOK(t, []string{"q2", "q3", "q4"})
	if got := scalar[int](t, b.db.Pool, "SELECT count(*) FROM error_log"); got != 6 {
		t.Errorf("rows = %d, want 6 (p1, p2 after the retry, q1..q4)", got)
	}
}

func TestPartitions(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{FlushInterval: time.Millisecond}, true)
	now := time.Now().UTC()
	for d := -1; d <= 2; d++ {
		name := partitionName(now.AddDate(0, 0, d))
		if !scalar[bool](t, b.db.Pool, "SELECT to_regclass($1) IS NOT NULL", name) {
			t.Errorf("partition %s missing after Start", name)
		}
	}
	res := newResults()
	for id, at := range map[string]time.Time{"today": now, "old": now.AddDate(0, 0, -10), "ahead": now.AddDate(0, 0, 5)} {
		b.log.Record(Event{Outcome: wire.OutcomeInvalid, ID: id, Time: at, Tenant: "t", Conversation: "c", Channel: "sms", Reason: "r"}, res.done(id))
	}
	res.wait(t, 3)
	where := func(id string) string {
		return scalar[string](t, b.db.Pool, "SELECT tableoid::regclass::text FROM error_log WHERE event_id = $1", id)
	}
	if got := where("today"); got != partitionName(now) {
		t.Errorf("today's event in %s", got)
	}
	if got := where("old"); got != "error_log_default" {
		t.Errorf("old event in %s", got)
	}

	// Four days later the window covers the "ahead" day, whose row sits in the
	// default partition: that day is skipped, the others are created.
	b.log.now = func() time.Time { return now.AddDate(0, 0, 4) }
	if err := b.log.ensurePartitions(t.Context()); err != nil {
		t.Fatalf("ensurePartitions: %v", err)
	}
	for d := 3; d <= 6; d++ {
		name := partitionName(now.AddDate(0, 0, d))
		if got, want := scalar[bool](t, b.db.Pool, "SELECT to_regclass($1) IS NOT NULL", name), d != 5; got != want {
			t.Errorf("partition %s exists = %v, want %v", name, got, want)
		}
	}
	if got := where("ahead"); got != "error_log_default" {
		t.Errorf("ahead event moved to %s", got)
	}
}

func TestConcurrentPartitionCreation(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	var wg sync.WaitGroup
	for range 4 {
		l, err := New(db.Pool, Config{KeepAddresses: true}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := l.ensurePartitions(t.Context()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := scalar[int](t, db.Pool, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'error_log'::regclass"); got != 5 {
		t.Errorf("%d partitions, want 4 days + default", got)
	}
}

func TestMaskAddress(t *testing.T) {
	t.Parallel()
	key := []byte("k")
	h := func(s string) string { return strings.TrimPrefix(MaskAddress(key, s), "h:")[:16] }
	for _, tc := range []struct {
		in, want string
	}{
		{"", ""},
		{"Alice@Example.COM", "h:" + h("alice@example.com") + "@example.com"},
		{"+33 6 12 34 56 78", "h:" + h("+33 6 12 34 56 78")},
		{"device-token-ABC", "h:" + h("device-token-abc")},
		{"no-domain@", "h:" + h("no-domain@")},
		{"a@b@Host.example", "h:" + h("a@b@host.example") + "@host.example"},
	} {
		got := MaskAddress(key, tc.in)
		if got != tc.want {
			t.Errorf("MaskAddress(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if MaskAddress(key, "Bob@x.io") != MaskAddress(key, "bob@X.IO") {
		t.Error("masking is not case-insensitive")
	}
	if MaskAddress(key, "bob@x.io") == MaskAddress([]byte("other"), "bob@x.io") {
		t.Error("mask does not depend on the key")
	}
	if MaskAddress(key, "bob@x.io") == MaskAddress(key, "rob@x.io") {
		t.Error("different addresses share a mask")
	}
	if got := MaskAddress(key, "x"); len(got) != len("h:")+16 {
		t.Errorf("mask %q is not h:<16 hex>", got)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  Config
		want string // "" = valid
	}{
		{Config{MaskKey: testKey}, ""},
		{Config{KeepAddresses: true}, ""},
		{Config{}, "Config.MaskKey"},
		{Config{MaskKey: []byte("short")}, "Config.MaskKey"},
		{Config{KeepAddresses: true, BatchSize: -1}, "Config.BatchSize"},
		{Config{KeepAddresses: true, FlushInterval: -time.Second}, "Config.FlushInterval"},
		{Config{KeepAddresses: true, BufferSize: -5}, "Config.BufferSize"},
	} {
		err := tc.cfg.validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("validate(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	var c Config
	c.setDefaults()
	if c.BatchSize != 1000 || c.FlushInterval != DefaultFlushInterval || c.BufferSize != 50000 {
		t.Errorf("defaults = %+v", c)
	}
}

func TestMetricsRegistration(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{}, false)
	names := map[string]bool{}
	mfs, _ := b.reg.Gather()
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, want := range []string{"sluice_errorlog_events_total", "sluice_errorlog_buffer_depth", "sluice_errorlog_flush_duration_seconds", "sluice_errorlog_flush_errors_total", "sluice_errorlog_batch_events"} {
		if !names[want] {
			t.Errorf("metric %s not registered", want)
		}
	}
	if _, err := New(b.db.Pool, Config{KeepAddresses: true}, nil, b.reg); err == nil {
		t.Error("registering a second Log on the same registry succeeded")
	}
}

// BenchmarkRecordFlush measures events per second from Record to committed,
// events without a stream sequence (nothing to deduplicate).
func BenchmarkRecordFlush(b *testing.B) { benchRecordFlush(b, false) }

// BenchmarkRecordFlushSeq is BenchmarkRecordFlush with a stream sequence on
// every event, as the pipeline records them: each batch is checked against
// the sequences counted before and records its own.
func BenchmarkRecordFlushSeq(b *testing.B) { benchRecordFlush(b, true) }

func benchRecordFlush(b *testing.B, withSeq bool) {
	bb := setup(b, Config{}, true)
	sem := make(chan struct{}, 50000) // never more in flight than the buffer holds
	var failed atomic.Int64
	done := func(err error) {
		if err != nil {
			failed.Add(1)
		}
		<-sem
	}
	now := time.Now()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		sem <- struct{}{}
		ev := Event{
			Outcome: wire.OutcomeInvalid, ID: fmt.Sprintf("bench-%d", i), Time: now, Tenant: "acme", Conversation: fmt.Sprintf("c%d", i%8),
			Lane: "bulk", Channel: "email", Reason: "empty_address", Detail: "address is empty", Address: "someone@example.com",
		}
		if withSeq {
			ev.Seq = uint64(i + 1)
		}
		bb.log.Record(ev, done)
	}
	for range cap(sem) { // wait until every callback has run
		sem <- struct{}{}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if failed.Load() != 0 {
		b.Fatalf("%d events failed", failed.Load())
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}
