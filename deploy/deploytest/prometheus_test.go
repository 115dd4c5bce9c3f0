package deploytest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/dispatch/providerset"
	"github.com/sluicehq/sluice/dispatch/sink"
	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/internal/natstest"
	"github.com/sluicehq/sluice/internal/pgtest"
	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/orchestrator"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// The storm: stormConversations bulk conversations of stormPerConversation
// messages, 95 % invalid. Quarantine (ratio 0.5 over 1,000 messages) holds
// each after about 1,000, so about 25,000 invalid messages are processed
// and written to the error log within seconds: well above the thresholds of
// the storm alerts (200 rows/s and 50 invalid/s over one minute).
const (
	stormConversations   = 25
	stormPerConversation = 1200
	trickleRate          = 20 // transactional messages per second, all valid
)

// stormAlerts must be pending or firing during the storm; those with no
// `for` must be firing.
var stormAlerts = []string{"SluiceConversationsQuarantined", "SluiceInvalidRateSpike", "SluiceErrorLogWriteStorm"}

// emptyByDesign are the alerts whose expression is empty on a healthy
// node: they fire on an outage the test does not cause (their metrics are
// still checked to exist; promtool's unit tests check that they fire).
var emptyByDesign = map[string]string{
	"SluiceErrorLogFlushSlow":         "flushes take milliseconds",
	"SluiceErrorLogFlushErrors":       "Postgres is up",
	"SluiceErrorLogWriterBreakerOpen": "Postgres is up",
	"SluiceErrorLogSpillGrowing":      "nothing spills while Postgres is up",
	"SluiceErrorLogDetailDropped":     "the buffer does not fill",
	"SluiceTransactionalLatencyHigh":  "the trickle is delivered in milliseconds",
	"SluiceConsumerLagGrowing":        "the backlog stays under 1,000 after quarantine",
	"SluiceProviderBreakerOpen":       "the sinks answer",
	"SluiceStreamStorageNearLimit":    "the stream holds megabytes of 8 GiB",
	"SluiceIntakePausedTooLong":       "intake runs",
	"SluiceChannelDisabledTooLong":    "every channel is enabled",
	"SluiceTargetDown":                "the node answers",
	"SluiceNoWorker":                  "the worker answers",
}

// TestDashboardAndAlertsAgainstPrometheus is the "done when": a real
// Prometheus scraping a dev node during a storm evaluates every dashboard
// query and every alert; each returns data (or is empty by design, listed
// above), the metrics every alert reads exist with the labels it selects,
// and the storm alerts go off.
func TestDashboardAndAlertsAgainstPrometheus(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus is not installed: `make prometheus` (Debian's prometheus package)")
	}
	n, natsURL := startNode(t)
	prom := startPrometheus(t, promBin, n.HTTP.Addr())
	prom.waitFor(t, 30*time.Second, `up{job="sluice-worker"} == 1 and on () count(sluice_messages_total{job="sluice-worker"}) > 0`)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { trickle(ctx, t, natsURL) })
	storm(t, natsURL)
	prom.waitAlerts(t, 90*time.Second)
	// The top-N export refreshes every second: the storm's conversations
	// reach Prometheus.
	prom.waitFor(t, 30*time.Second, `count(sluice_errorlog_top_conversation_errors) >= 3`)

	// Recording rules are evaluated on their own schedule: on a loaded
	// machine the first results of a query over them may come a few
	// evaluations after the storm's alerts.
	for _, q := range dashboardQueries(t) {
		if !prom.eventually(t, 30*time.Second, q) {
			t.Errorf("dashboard query returned no data within 30s: %s", q)
		}
	}
	for _, r := range prom.alertRules(t) {
		res := prom.query(t, r.Query)
		reason, byDesign := emptyByDesign[r.Name]
		switch {
		case len(res) == 0 && !byDesign && !isStormAlert(r.Name):
			t.Errorf("alert %s: expression returned no data and is not listed as empty by design: %s", r.Name, r.Query)
		case len(res) == 0 && byDesign:
			t.Logf("alert %s: empty by design (%s)", r.Name, reason)
		}
		for _, sel := range selectors(r.Query) {
			if res := prom.query(t, sel); len(res) == 0 {
				t.Errorf("alert %s reads %s, which has no series in Prometheus", r.Name, sel)
			}
		}
	}
	cancel()
	wg.Wait()
}

func isStormAlert(name string) bool {
	for _, a := range stormAlerts {
		if a == name {
			return true
		}
	}
	return false
}

// startNode starts NATS, a database and a node with both roles, its
// providers talking to local protocol sinks behind breakers, with stats and
// the top-N export refreshed every second.
func startNode(t *testing.T) (*node.Node, string) {
	t.Helper()
	_, natsURL := natstest.Start(t)
	db := pgtest.New(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	local, err := sink.StartLocal(t.Context(), sink.LocalConfig{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = local.Close() })
	provs, err := providerset.New(local.Config(), logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = provs.Close() })
	cfg := node.Config{
		NATSURL: natsURL, DatabaseURL: db.URL, HTTPAddr: "127.0.0.1:0",
		Worker: true, API: true, Name: "sluice-promtest", Env: "test",
		ErrorLog:   errorlog.Config{Mode: errorlog.Mode{Name: errorlog.ModeFull}, MaskKey: []byte("promtest-mask-key-0123456789")},
		Pipeline:   orchestrator.Config{StatsInterval: time.Second},
		Quarantine: orchestrator.QuarantineConfig{Ratio: 0.5, Window: 1000},
		TopErrors:  errorlog.TopExportConfig{Interval: time.Second},
		Providers:  provs.Providers(),
		Collectors: []prometheus.Collector{provs},
	}
	n, err := node.Start(t.Context(), cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = n.Stop(ctx)
	})
	return n, natsURL
}
