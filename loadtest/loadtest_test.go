package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/internal/natsrv"
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
		if m.TransactionalP99Ms == nil || m.TransactionalBurst.Count == 0 || m.TransactionalSent == 0 {
			t.Errorf("%s: no transactional latency measured", m.Mode)
		}
		if m.RatioToCeiling <= 0 || m.DrainSeconds <= 0 || m.PeakRSSBytes <= 0 {
			t.Errorf("%s: ratio %v, drain %v, rss %v", m.Mode, m.RatioToCeiling, m.DrainSeconds, m.PeakRSSBytes)
		}
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
		"scenario":      {Scenario: "nope"},
		"compare+url":   {Compare: true, NATSURL: "nats://127.0.0.1:4222"},
		"sinks":         {Sinks: "smtp"},
		"invalid ratio": {InvalidRatio: 1.5},
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
	rep, err := Run(ctx, Config{
		Scenario: ScenarioIncident, Messages: 20000, InvalidRatio: -1, TrickleRate: 50, Baseline: -1,
		Quarantine: ControlQuarantine(200 * time.Millisecond),
		DataDir:    tempDataDir(t), Timeout: time.Minute,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Quarantine != QuarantineOn {
		t.Errorf("quarantine %q", rep.Quarantine)
	}
	m := rep.Modes[0]
	if !m.AccountingExact {
		t.Fatalf("accounting not exact: %+v", m.Accounting)
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
