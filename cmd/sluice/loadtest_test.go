package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadtestRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"production", []string{"--env", "production", "--messages", "10"}, 1, "refusing to run against production"},
		{"scenario", []string{"--scenario", "storm"}, 1, `Scenario "storm"`},
		{"channel", []string{"--channels", "fax"}, 1, `unknown channel "fax"`},
		{"mode", []string{"--modes", "loud"}, 1, `mode "loud"`},
		{"compare against a target", []string{"--compare", "--nats-url", "nats://127.0.0.1:1"}, 1, "Compare needs the self-contained stack"},
		{"stray argument", []string{"now"}, 2, `unexpected argument "now"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"loadtest", "--report", t.TempDir()}, tc.args...), nil, &stdout, &stderr)
			if code != tc.wantCode || !strings.Contains(stderr.String(), tc.wantErr) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr.String(), tc.wantCode, tc.wantErr)
			}
		})
	}
}

// TestLoadtestShortRun runs a tiny incident end to end through the command
// and reads its report.
func TestLoadtestShortRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts NATS and Postgres")
	}
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	// A bound no run can meet: the command fails after writing its report.
	code := run([]string{"loadtest", "--messages", "2000", "--trickle-rate", "50", "--baseline", "500ms", "--max-tx-p99", "1ns", "--report", dir}, nil, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "exceeds --max-tx-p99 1ns") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "exact") || !strings.Contains(stdout.String(), "quarantine: on") {
		t.Errorf("summary:\n%s", stdout.String())
	}
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Quarantine string `json:"quarantine"`
		Modes      []struct {
			Mode            string `json:"mode"`
			Messages        int    `json:"messages"`
			AccountingExact bool   `json:"accounting_exact"`
		} `json:"modes"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Quarantine != "on" || len(rep.Modes) != 1 || rep.Modes[0].Mode != "full" || rep.Modes[0].Messages != 2000 || !rep.Modes[0].AccountingExact {
		t.Errorf("report: %+v", rep)
	}
	if _, err := os.Stat(filepath.Join(dir, "report.html")); err != nil {
		t.Error(err)
	}
}
