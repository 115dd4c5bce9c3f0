package loadtest

import (
	"context"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/errorlog"
)

// natsServerBinary finds a nats-server binary: SLUICE_NATS_SERVER, then
// where the Makefile installs it (GOPATH/bin), then PATH.
func natsServerBinary() string {
	if p := os.Getenv("SLUICE_NATS_SERVER"); p != "" {
		return p
	}
	if p := filepath.Join(build.Default.GOPATH, "bin", "nats-server"); fileExists(p) {
		return p
	}
	p, _ := exec.LookPath("nats-server")
	return p
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestCompareWithNATSServerProcesses: with Config.NATSServer every NATS
// server of the run is a nats-server process of its own: the modes and the
// three ceilings are measured, the accounting is exact, the servers' CPU is
// counted apart, and no server is left running.
func TestCompareWithNATSServerProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nats-server processes and Postgres")
	}
	bin := natsServerBinary()
	if bin == "" {
		t.Skip("no nats-server binary (make nats-server installs one)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var mu sync.Mutex
	var pids []int
	profiles := filepath.Join(t.TempDir(), "profiles") // created by the run
	seen := func(Progress) {
		found := natsServerPids(t, bin)
		mu.Lock()
		pids = append(pids, found...)
		mu.Unlock()
	}
	rep, err := Run(ctx, Config{
		Scenario: ScenarioIncident, Messages: 5000, InvalidRatio: -1, TrickleRate: 100, Baseline: time.Second,
		Compare: true, Modes: []errorlog.ModeName{errorlog.ModeOff}, NATSServer: bin,
		DataDir: tempDataDir(t), Timeout: time.Minute, PhaseProfiles: profiles,
		Progress: seen,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.AccountingExact || rep.NATSServer != bin || rep.CeilingMsgsPerSec <= 0 || len(rep.References) != 3 {
		t.Fatalf("exact %v, nats-server %q, ceiling %v, references %d", rep.AccountingExact, rep.NATSServer, rep.CeilingMsgsPerSec, len(rep.References))
	}
	if c := rep.Modes[0].CPU; c == nil || c.NATSSeconds <= 0 {
		t.Fatalf("mode CPU %+v: the nats-server process's is not counted", c)
	}
	if rep.CeilingNATSSeconds <= 0 || rep.CeilingNATSSeconds > rep.CeilingCPUSeconds {
		t.Errorf("ceiling CPU %.2fs, of which nats-server %.2fs: the server's share is not counted apart", rep.CeilingCPUSeconds, rep.CeilingNATSSeconds)
	}
	for _, r := range rep.References {
		if r.NATSSeconds <= 0 || r.NATSSeconds > r.CPUSeconds {
			t.Errorf("reference %s CPU %.2fs, of which nats-server %.2fs: the server's share is not counted apart", r.Shape, r.CPUSeconds, r.NATSSeconds)
		}
	}
	checkPhaseProfiles(t, profiles, "ceiling-one-consumer", "ceiling-one-consumer-limits", "ceiling-per-conversation", "ceiling-backlog", "mode-off")
	if len(pids) == 0 {
		t.Fatal("no nats-server process seen during the run")
	}
	for _, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("nats-server %d still running after the run", pid)
		}
	}
}

// checkPhaseProfiles fails unless dir holds, for each phase, a CPU profile
// and the heap profiles at its start and end, each a gzipped pprof file.
func checkPhaseProfiles(t *testing.T, dir string, phases ...string) {
	t.Helper()
	for _, ph := range phases {
		for _, ext := range []string{".prof", ".heap0", ".heap"} {
			b, err := os.ReadFile(filepath.Join(dir, ph+ext))
			if err != nil {
				t.Errorf("phase profile: %v", err)
				continue
			}
			if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
				t.Errorf("phase profile %s%s: %d bytes, not a gzipped profile", ph, ext, len(b))
			}
		}
	}
}

// natsServerPids lists the running processes of bin that are children of
// this test process.
func natsServerPids(t *testing.T, bin string) []int {
	t.Helper()
	if real, err := filepath.EvalSymlinks(bin); err == nil {
		bin = real
	}
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err != nil || exe != bin {
			continue
		}
		if ppid, _, ok := procStat(pid); ok && ppid == os.Getpid() {
			out = append(out, pid)
		}
	}
	return out
}
