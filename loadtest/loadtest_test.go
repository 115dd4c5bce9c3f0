package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/internal/natsrv"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/control"
)

// TestIncidentCompare runs a tiny incident under two modes with the ceiling,
// on the self-contained stack, and checks the accounting and the report.
func TestIncidentCompare(t *testing.T) {
	if testing.Short() {
		t.Skip("starts NATS and Postgres")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{
		Scenario: ScenarioIncident, Messages: 5000, InvalidRatio: -1, TrickleRate: 100, Baseline: time.Second,
		Compare: true, Modes: []errorlog.ModeName{errorlog.ModeFull, errorlog.ModeOff},
		DataDir: tempDataDir(t), Timeout: time.Minute,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.AccountingExact {
		t.Fatalf("accounting not exact: %+v", rep.Modes)
	}
	if len(rep.Modes) != 2 || rep.CeilingMsgsPerSec <= 0 {
		t.Fatalf("modes %d, ceiling %v", len(rep.Modes), rep.CeilingMsgsPerSec)
	}
	// The references: one consumer on a Limits stream, per-conversation (a
	// consumer per conversation) and backlog (one consumer), each having
	// acked the whole burst.
	if len(rep.References) != 3 {
		t.Fatalf("references %+v", rep.References)
	}
	for i, want := range []struct {
		shape     ceilingShape
		consumers int
	}{{ceilingOneLimits, 1}, {ceilingPerConversation, 8}, {ceilingBacklog, 1}} {
		r := rep.References[i]
		if r.Shape != string(want.shape) || r.Consumers != want.consumers || r.Messages != 5000 || r.MsgsPerSec <= 0 {
			t.Errorf("reference %d: %+v, want %s with %d consumers", i, r, want.shape, want.consumers)
		}
	}
	full, off := rep.Modes[0], rep.Modes[1]
	if full.Mode != "full" || off.Mode != "off" {
		t.Fatalf("modes %s, %s", full.Mode, off.Mode)
	}
	// The incident's invalid share is 95%: full keeps a row for each, off none.
	if full.ErrorRowsWritten != int64(full.InvalidMessages) || full.InvalidMessages < 4500 {
		t.Errorf("full: %d rows for %d invalid messages", full.ErrorRowsWritten, full.InvalidMessages)
	}
	if off.ErrorRowsWritten != 0 {
		t.Errorf("off: %d rows written", off.ErrorRowsWritten)
	}
	for _, m := range rep.Modes {
		if m.TransactionalP99Ms == nil || m.TransactionalBurst.Count == 0 || m.TransactionalSent == 0 || m.TransactionalAfter == nil {
			t.Errorf("%s: no transactional latency measured", m.Mode)
		}
		// The trickle goes on 3 s after the drain at 100/s.
		if m.TransactionalAfter != nil && m.TransactionalAfter.Count < 200 {
			t.Errorf("%s: %d transactional messages after the drain, want the after-drain window's", m.Mode, m.TransactionalAfter.Count)
		}
		if m.RatioToCeiling <= 0 || m.RatioToPerConversation <= 0 || m.DrainSeconds <= 0 || m.PeakRSSBytes <= 0 {
			t.Errorf("%s: ratio %v, drain %v, rss %v", m.Mode, m.RatioToCeiling, m.DrainSeconds, m.PeakRSSBytes)
		}
		if m.CeilingAfterMsgsPerSec <= 0 {
			t.Errorf("%s: no ceiling measured after it", m.Mode)
		}
		if mean := (m.CeilingBeforeMsgsPerSec + m.CeilingAfterMsgsPerSec) / 2; mean <= 0 || math.Abs(m.RatioToAdjacent-m.MsgsPerSec/mean) > 1e-9 {
			t.Errorf("%s: ratio to the adjacent ceilings %v, want msgs/s %v over the mean of %v and %v", m.Mode, m.RatioToAdjacent, m.MsgsPerSec, m.CeilingBeforeMsgsPerSec, m.CeilingAfterMsgsPerSec)
		}
	}
	// Brackets chain: the first mode's "before" is the run's ceiling, each
	// next mode's is the ceiling measured after the previous one.
	if full.CeilingBeforeMsgsPerSec != rep.CeilingMsgsPerSec || off.CeilingBeforeMsgsPerSec != full.CeilingAfterMsgsPerSec {
		t.Errorf("brackets: full %v..%v, off %v..%v, the run's ceiling %v", full.CeilingBeforeMsgsPerSec, full.CeilingAfterMsgsPerSec, off.CeilingBeforeMsgsPerSec, off.CeilingAfterMsgsPerSec, rep.CeilingMsgsPerSec)
	}

	dir := t.TempDir()
	if err := WriteReport(dir, rep); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, ReportJSON))
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Ceiling *float64                     `json:"ceiling_msgs_per_sec"`
		Modes   []map[string]json.RawMessage `json:"modes"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if raw.Ceiling == nil {
		t.Error("report.json: no ceiling_msgs_per_sec")
	}
	for _, m := range raw.Modes {
		for _, f := range []string{"mode", "messages", "drain_seconds", "msgs_per_sec", "ratio_to_ceiling", "transactional_p50_ms",
			"transactional_p99_ms", "error_rows_written", "peak_rss_bytes", "accounting_exact"} {
			if _, ok := m[f]; !ok {
				t.Errorf("report.json: mode without %s", f)
			}
		}
	}
	html, err := os.ReadFile(filepath.Join(dir, ReportHTML))
	if err != nil {
		t.Fatal(err)
	}
	if n := countSVG(html); n != 3 {
		t.Errorf("report.html has %d charts, want 3", n)
	}
}

func countSVG(b []byte) int {
	n := 0
	for i := 0; i+4 <= len(b); i++ {
		if string(b[i:i+4]) == "<svg" {
			n++
		}
	}
	return n
}

// tempDataDir is a data directory the postgres user can traverse when the
// tests run as root.
func tempDataDir(t *testing.T) string {
	dir, err := os.MkdirTemp(os.TempDir(), "sluice-loadtest-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestScenarioDeterministic(t *testing.T) {
	cfg := Config{Messages: 1000, InvalidRatio: -1, TrickleRate: -1}
	cfg.setDefaults()
	a, b := newScenario(&cfg, ""), newScenario(&cfg, "")
	invalid := 0
	for i := range 1000 {
		x, bad := a.Burst(i)
		y, _ := b.Burst(i)
		if x.ID != y.ID || x.To != y.To || x.Channel != y.Channel || x.Conversation != y.Conversation {
			t.Fatalf("message %d differs: %+v, %+v", i, x, y)
		}
		if bad {
			invalid++
		}
	}
	if invalid < 920 || invalid > 980 {
		t.Errorf("%d of 1000 invalid, want about 950", invalid)
	}
	cfg.Seed = 2
	c := newScenario(&cfg, "")
	same := 0
	for i := range 1000 {
		x, _ := a.Burst(i)
		y, _ := c.Burst(i)
		if x.To == y.To {
			same++
		}
	}
	if same == 1000 {
		t.Error("seed does not change the scenario")
	}
}

func TestFenceRefusesProduction(t *testing.T) {
	ctx := context.Background()
	if _, err := checkFence(ctx, "production", nil, nil, false); !errors.Is(err, ErrProduction) {
		t.Errorf("production: %v, want ErrProduction", err)
	}
	if _, err := checkFence(ctx, "production", nil, nil, true); err != nil {
		t.Errorf("production with override: %v", err)
	}
	if _, err := checkFence(ctx, "staging", nil, nil, false); err != nil {
		t.Errorf("staging: %v", err)
	}
	_, err := Run(ctx, Config{Env: "production", Messages: 10}, nil)
	if !errors.Is(err, ErrProduction) {
		t.Errorf("Run in production: %v, want ErrProduction", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for name, cfg := range map[string]Config{
		"scenario":               {Scenario: "nope"},
		"compare+url":            {Compare: true, NATSURL: "nats://127.0.0.1:4222"},
		"sinks":                  {Sinks: "smtp"},
		"invalid ratio":          {InvalidRatio: 1.5},
		"metrics without target": {MetricsURLs: []string{"http://127.0.0.1:8080/metrics"}},
		"publish rate":           {PublishRate: -1},
		"metrics not http":       {NATSURL: "nats://127.0.0.1:4222", MetricsURLs: []string{"127.0.0.1:8080/metrics"}},
	} {
		cfg.setDefaults()
		if err := cfg.validate(); err == nil {
			t.Errorf("%s: validate() = nil", name)
		}
	}
}

// TestIncidentQuarantine runs the incident with the workers' automatic
// quarantine and the control plane's stop and purge: the invalid-heavy
// conversations are quarantined and purged, the valid trickle is not, and
// the purged messages close the accounting.
func TestIncidentQuarantine(t *testing.T) {
	if testing.Short() {
		t.Skip("starts NATS and Postgres")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, m := runExact(ctx, t, Config{
		Scenario: ScenarioIncident, Messages: 20000, InvalidRatio: -1, TrickleRate: 50, Baseline: -1,
		Quarantine: ControlQuarantine(200 * time.Millisecond),
		DataDir:    tempDataDir(t), Timeout: time.Minute,
	})
	if rep.Quarantine != QuarantineOn {
		t.Errorf("quarantine %q", rep.Quarantine)
	}
	if rep.DuplicateWindowSeconds != orchestrator.DefaultDuplicateWindow.Seconds() {
		t.Errorf("duplicate window %v s recorded, the stack's node has %v", rep.DuplicateWindowSeconds, orchestrator.DefaultDuplicateWindow)
	}
	if len(m.Quarantine) == 0 {
		t.Fatal("no conversation quarantined")
	}
	var purged int64
	for _, a := range m.Accounting {
		purged += a.Purged
		if a.Conversation == "incident-tx" && a.Purged != 0 {
			t.Errorf("the valid trickle was purged: %+v", a)
		}
	}
	if purged == 0 {
		t.Errorf("nothing purged: %+v", m.Accounting)
	}
}

// TestFenceRecordedProduction: a target whose NATS records environment
// production is refused, whatever SLUICE_ENV says, unless allowed.
func TestFenceRecordedProduction(t *testing.T) {
	ns, err := natsrv.Start(natsrv.Config{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { natsrv.Stop(ns) })
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := control.CheckEnv(ctx, js, nil, control.EnvProduction, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := checkFence(ctx, "", js, nil, false); !errors.Is(err, ErrProduction) {
		t.Errorf("recorded production: %v, want ErrProduction", err)
	}
	if env, err := checkFence(ctx, "", js, nil, true); err != nil || env != control.EnvProduction {
		t.Errorf("recorded production, allowed: %q, %v", env, err)
	}
	_, err = Run(ctx, Config{NATSURL: ns.ClientURL(), Env: "staging", Messages: 10}, nil)
	if !errors.Is(err, ErrProduction) {
		t.Errorf("Run against recorded production: %v, want ErrProduction", err)
	}
}

// TestRunningTarget runs a small incident against a running sluice (a node
// started as `sluice serve` would be) and reads the transactional latency,
// error-log writes and the workers' usage from its /metrics endpoint.
func TestRunningTarget(t *testing.T) {
	if testing.Short() {
		t.Skip("starts NATS and Postgres")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ms := runningTarget(ctx, t, Config{Sinks: SinksRecorder})

	metricsURL := "http://" + ms.node.HTTP.Addr() + "/metrics"
	rep, m := runExact(ctx, t, Config{
		Scenario: ScenarioIncident, Messages: 5000, InvalidRatio: -1, TrickleRate: 100, Baseline: 2 * time.Second,
		NATSURL: ms.ns.url, DatabaseURL: ms.dbURL, MetricsURLs: []string{metricsURL}, Env: "test", Timeout: time.Minute,
	})
	if info, err := ms.node.JS.Stream(ctx, orchestrator.StreamName); err != nil || rep.DuplicateWindowSeconds != info.CachedInfo().Config.Duplicates.Seconds() {
		t.Errorf("duplicate window %v s recorded; the target's stream: %v", rep.DuplicateWindowSeconds, err)
	}
	if m.ErrorRowsWritten != int64(m.InvalidMessages) {
		t.Errorf("%d error rows for %d invalid messages", m.ErrorRowsWritten, m.InvalidMessages)
	}
	if m.TransactionalP99Ms == nil || m.TransactionalBurst.Count == 0 || m.TransactionalBase.Count == 0 {
		t.Fatalf("transactional latency not measured: burst %+v, baseline %+v", m.TransactionalBurst, m.TransactionalBase)
	}
	// Every transactional delivery of this target is the trickle's.
	if got := m.TransactionalBase.Count + m.TransactionalBurst.Count; got > m.TransactionalSent {
		t.Errorf("%d transactional deliveries measured, %d sent", got, m.TransactionalSent)
	}
	if *m.TransactionalP99Ms <= 0 || *m.TransactionalP99Ms > *m.TransactionalMaxMs {
		t.Errorf("p99 %v ms, max %v ms", *m.TransactionalP99Ms, *m.TransactionalMaxMs)
	}
	if len(m.Latency) == 0 {
		t.Error("no latency series")
	}
	if m.ErrorLogWriteSeconds == nil || *m.ErrorLogWriteSeconds <= 0 || m.ErrorLogFlushes == 0 {
		t.Errorf("error-log writes not measured: %v s, %d flushes", m.ErrorLogWriteSeconds, m.ErrorLogFlushes)
	}
	if m.PeakRSSBytes <= 0 || m.PeakGoroutines <= 0 {
		t.Errorf("usage not measured: rss %d, goroutines %d", m.PeakRSSBytes, m.PeakGoroutines)
	}
	t.Logf("burst %+v, baseline %+v, sent %d, rss %d, goroutines %d, %d flushes", *m.TransactionalBurst, *m.TransactionalBase,
		m.TransactionalSent, m.PeakRSSBytes, m.PeakGoroutines, m.ErrorLogFlushes)

	// A metrics URL that does not answer is refused before anything is published.
	_, err := Run(ctx, Config{NATSURL: ms.ns.url, DatabaseURL: ms.dbURL, MetricsURLs: []string{"http://" + ms.node.HTTP.Addr() + "/nothing"}, Env: "test", Messages: 10}, nil)
	if err == nil {
		t.Error("a metrics URL answering 404 was accepted")
	}
}

func TestHistogramQuantile(t *testing.T) {
	h := histSnap{bounds: []float64{1, 2, 4}, cum: []float64{10, 20, 20}, count: 20}
	for q, want := range map[float64]float64{0.5: 1, 0.25: 0.5, 0.75: 1.5, 1: 2} {
		if got := h.quantile(q); got != want {
			t.Errorf("q%.2f = %v, want %v", q, got, want)
		}
	}
	if got := h.maxBound(); got != 2 {
		t.Errorf("max bound %v, want 2", got)
	}
	// Observations above the highest bound: the highest bound, a floor.
	inf := histSnap{bounds: h.bounds, cum: h.cum, count: 25}
	if got, mb := inf.quantile(0.99), inf.maxBound(); got != 4 || mb != 4 {
		t.Errorf("+Inf: q99 %v, max %v, want 4, 4", got, mb)
	}
	// The interval between two snapshots; a reset counts from zero.
	later := histSnap{bounds: h.bounds, cum: []float64{10, 30, 40}, count: 40}
	d := later.sub(h)
	if d.count != 20 || d.cum[0] != 0 || d.cum[1] != 10 || d.cum[2] != 20 {
		t.Errorf("sub = %+v", d)
	}
	if got := d.quantile(0.5); got != 2 {
		t.Errorf("interval median %v, want 2", got)
	}
	if r := h.sub(later); r.count != h.count {
		t.Errorf("after a reset: %+v", r)
	}
	if (histSnap{}).quantile(0.99) != 0 {
		t.Error("empty histogram has a quantile")
	}
}

// TestPublishRate: a paced burst takes at least messages / rate to publish
// (a lower bound, which sleeping guarantees), and the report says so.
func TestPublishRate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts NATS and Postgres")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n, rate = 3000, 5000.0
	rep, m := runExact(ctx, t, Config{
		Scenario: ScenarioValid, Messages: n, InvalidRatio: -1, TrickleRate: 0, Baseline: -1, PublishRate: rate,
		DataDir: tempDataDir(t), Timeout: time.Minute,
	})
	// The last chunk starts at (n - n%pacerChunk) / rate.
	if floor := float64(n-n%pacerChunk) / rate; m.PublishSeconds < floor {
		t.Errorf("published %d at %v/s in %.3fs, under %.3fs", n, rate, m.PublishSeconds, floor)
	}
	if rep.PublishRate != rate {
		t.Errorf("report publish_rate_limit %v", rep.PublishRate)
	}
}

// runExact runs cfg (one mode) and fails the test unless it succeeds with
// exact accounting.
func runExact(ctx context.Context, t *testing.T, cfg Config) (*Report, ModeReport) {
	t.Helper()
	rep, err := Run(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := rep.Modes[0]
	if !m.AccountingExact {
		t.Fatalf("accounting not exact: %+v", m.Accounting)
	}
	return rep, m
}

// TestRunningTargetQuarantine: against a running sluice whose workers
// quarantine, a run without the quarantine step fails at once, saying why,
// instead of waiting for conversations that will never drain; with the step,
// the run purges what the target quarantined and ends exact.
func TestRunningTargetQuarantine(t *testing.T) {
	if testing.Short() {
		t.Skip("starts NATS and Postgres")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ms := runningTarget(ctx, t, Config{Sinks: SinksRecorder, Quarantine: ControlQuarantine(0), QuarantineRatio: 0.5})
	cfg := Config{
		Scenario: ScenarioIncident, Messages: 20000, InvalidRatio: -1, TrickleRate: 50, Baseline: -1,
		NATSURL: ms.ns.url, DatabaseURL: ms.dbURL, Env: "test", Timeout: time.Minute,
	}

	began := time.Now()
	_, err := Run(ctx, cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "would never drain") {
		t.Fatalf("without the step: %v, want a failure saying the conversation would never drain", err)
	}
	if d := time.Since(began); d > 30*time.Second {
		t.Errorf("the failure took %v", d)
	}

	cfg.Quarantine = ControlQuarantine(200 * time.Millisecond)
	rep, m := runExact(ctx, t, cfg)
	if rep.Quarantine != QuarantineOn || len(m.Quarantine) == 0 {
		t.Fatalf("quarantine %q, events %+v", rep.Quarantine, m.Quarantine)
	}
	var purged int64
	for _, a := range m.Accounting {
		purged += a.Purged
	}
	if purged == 0 {
		t.Errorf("nothing purged: %+v", m.Accounting)
	}
	// The target's state is left as its workers set it.
	ctl, err := control.Attach(ctx, ms.node.JS, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := ctl.Conversation(ctx, Tenant, m.Quarantine[0].Conversation)
	if err != nil || cs.Value.State != control.StateQuarantined {
		t.Errorf("state of %s: %+v, %v; want quarantined", m.Quarantine[0].Conversation, cs.Value, err)
	}
}

// testStack starts the self-contained stack's long-lived part (its
// Postgres cluster) in a temporary directory, closed when the test ends.
func testStack(ctx context.Context, t *testing.T, durable bool) *stack {
	t.Helper()
	st, err := startStack(ctx, tempDataDir(t), durable, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.close(context.Background()) })
	return st
}

// runningTarget starts a node as `sluice serve --api --worker` would run it,
// on its own NATS and database, for runs against a running target; cfg sets
// its sinks and quarantine. It is stopped when the test ends.
func runningTarget(ctx context.Context, t *testing.T, cfg Config) *modeStack {
	t.Helper()
	st := testStack(ctx, t, false)
	ms, err := st.startMode(ctx, &cfg, errorlog.ModeFull, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.stop(context.Background(), discardLogger()) })
	return ms
}

// TestDurablePostgres: the self-contained stack's Postgres commits without
// waiting for the disk unless DurablePostgres asks for production's
// commits, and the report says which it ran with.
func TestDurablePostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two Postgres clusters")
	}
	t.Parallel()
	for _, durable := range []bool{false, true} {
		t.Run(fmt.Sprintf("durable=%v", durable), func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			st := testStack(ctx, t, durable)
			got := postgresSettings(ctx, st.pg.AdminURL("postgres"))
			want := "(fsync off, synchronous_commit off)"
			if durable {
				want = "(fsync on, synchronous_commit on)"
			}
			if !strings.HasSuffix(got, want) {
				t.Errorf("Postgres %q, want it to end %q", got, want)
			}
		})
	}
}

// TestModeDatabaseDropped: a mode's database goes when the mode stops, so
// a finished mode's tables (and autovacuum's work on them) do not cost the
// modes after it on the shared cluster.
func TestModeDatabaseDropped(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Postgres and a node")
	}
	t.Parallel()
	ctx := t.Context()
	st := testStack(ctx, t, false)
	admin := st.pg.AdminURL("postgres")
	exists := func(name string) bool {
		t.Helper()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	ms, err := st.startMode(ctx, &Config{}, errorlog.ModeOff, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !exists(ms.dbName) {
		t.Fatalf("database %s missing while its mode runs", ms.dbName)
	}
	ms.stop(ctx, discardLogger())
	if exists(ms.dbName) {
		t.Errorf("database %s still there after its mode stopped", ms.dbName)
	}
}
