//go:build fleet

package fleettest

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/status"
)

// checkStatus runs `sluice ctl status --json` with an operator key against
// the fleet's API and checks what it shows of a three-node deployment: the
// cluster's three servers, every sluice stream at the fleet's replicas with
// a leader and current followers, each worker process live with both lanes
// and its provider breaker, the lanes' consumers, the error log's mode, and
// Postgres reachable and bound; the text form has every section.
func (f *fleet) checkStatus() {
	f.t.Helper()
	key, _, err := api.CreateOperatorKey(context.Background(), f.db.Pool, "fleet-status")
	if err != nil {
		f.t.Fatal(err)
	}
	var rep status.Report
	poll(f.t, time.Minute, "ctl status to show the whole fleet", func() (bool, string) {
		out, err := f.ctl(key, "status", "--json")
		if err != nil {
			return false, err.Error()
		}
		rep = status.Report{}
		if err := json.Unmarshal(out, &rep); err != nil {
			return false, err.Error()
		}
		return f.statusComplete(&rep)
	})
	text, err := f.ctl(key, "status")
	if err != nil {
		f.t.Fatal(err)
	}
	for _, section := range []string{"NATS", "PROCESSES", "LANES", "ERROR LOG", "CONTROLS", "POSTGRES"} {
		if !strings.Contains(strings.ToUpper(string(text)), section) {
			f.t.Errorf("ctl status text has no %s section:\n%s", section, text)
		}
	}
	live := 0
	for _, w := range rep.Workers {
		if w.Live {
			live++
		}
	}
	f.t.Logf("ctl status: %d servers, %d streams at %d replicas, %d of %d processes live (a killed one shows as gone)", len(rep.NATS.Peers), len(rep.Streams), f.replicas, live, len(rep.Workers))
}

// statusComplete says what the report still lacks, if anything.
func (f *fleet) statusComplete(rep *status.Report) (bool, string) {
	servers := map[string]bool{}
	for _, p := range rep.NATS.Peers {
		servers[p.Name] = true
	}
	if len(servers) != 3 {
		return false, fmt.Sprintf("%d NATS servers, want 3: %+v", len(servers), rep.NATS.Peers)
	}
	for _, want := range []string{"SLUICE_BULK", "SLUICE_ERRORLOG_SPILL", "KV_sluice_control", "KV_sluice_conversations"} {
		i := slices.IndexFunc(rep.Streams, func(s status.Stream) bool { return s.Name == want })
		if i < 0 {
			return false, "no stream " + want
		}
		s := rep.Streams[i]
		if s.Replicas != f.replicas || s.Leader == "" || len(s.Peers) != f.replicas-1 {
			return false, fmt.Sprintf("%s: replicas %d leader %q followers %d", want, s.Replicas, s.Leader, len(s.Peers))
		}
		for _, p := range s.Peers {
			if !p.Current || p.Offline {
				return false, fmt.Sprintf("%s: follower %s not current", want, p.Name)
			}
		}
	}
	workers := 0
	for _, w := range rep.Workers {
		if w.Live && slices.Contains(w.Roles, "worker") && len(w.Lanes) == 2 && len(w.Providers) > 0 && w.ErrorLogMode != "" {
			workers++
		}
	}
	if workers != len(f.workers) {
		return false, fmt.Sprintf("%d live workers with lanes, providers and mode, want %d", workers, len(f.workers))
	}
	if len(rep.Lanes) != 2 || rep.ErrorLog.Mode == nil || rep.Intake == nil || len(rep.Channels) != 3 {
		return false, fmt.Sprintf("lanes %d, error-log mode %v, intake %v, channels %d", len(rep.Lanes), rep.ErrorLog.Mode, rep.Intake, len(rep.Channels))
	}
	if !rep.Postgres.Reachable || rep.Postgres.SystemIdentifier == "" || len(rep.Unavailable) != 0 {
		return false, fmt.Sprintf("postgres %+v, unavailable %v", rep.Postgres, rep.Unavailable)
	}
	return true, ""
}

// ctl runs `sluice ctl` against the fleet's API with key.
func (f *fleet) ctl(key string, args ...string) ([]byte, error) {
	cmd := exec.Command(sluiceBin(f.t), append([]string{"ctl", "--api-url", "http://" + f.api.httpAddr, "--key", key}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return nil, fmt.Errorf("ctl %v: %v: %s", args, err, ee.Stderr)
		}
		return nil, err
	}
	return out, nil
}
