package deploytest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// prom is a Prometheus process started for the test.
type prom struct {
	base string // http://127.0.0.1:port
	log  string // its log file, shown on failure
}

// repoFile is a file of the repository, from this package's directory.
func repoFile(t *testing.T, rel string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", rel))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// startPrometheus starts bin on a free loopback port with a temporary
// store, scraping target every second under both sluice jobs (the node has
// both roles) and evaluating deploy/prometheus's rules every second, as they
// are (the `for` durations of production: the storm alerts are checked
// pending or firing, see waitAlerts).
func startPrometheus(t *testing.T, bin, target string) *prom {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
rule_files:
  - %q
  - %q
scrape_configs:
  - job_name: sluice-api
    static_configs: [{targets: [%q]}]
  - job_name: sluice-worker
    static_configs: [{targets: [%q]}]
`, repoFile(t, "deploy/prometheus/sluice-alerts.yml"), repoFile(t, "deploy/prometheus/sluice-recording.yml"), target, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p := &prom{base: "http://" + addr, log: filepath.Join(dir, "prometheus.log")}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--storage.tsdb.retention.time=1h")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(p.log); err == nil {
				t.Logf("prometheus log (tail):\n%s", tail(string(b), 3000))
			}
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready at %s within 30s", p.base)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// api GETs an API path and decodes its data, failing on an error status.
func (p *prom) api(t *testing.T, path string, data any) {
	t.Helper()
	resp, err := http.Get(p.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status    string          `json:"status"`
		Error     string          `json:"error"`
		ErrorType string          `json:"errorType"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if body.Status != "success" {
		t.Fatalf("%s: %s: %s", path, body.ErrorType, body.Error)
	}
	if err := json.Unmarshal(body.Data, data); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// query evaluates expr now and returns its samples (an instant vector's
// elements, or one for a scalar).
func (p *prom) query(t *testing.T, expr string) []json.RawMessage {
	t.Helper()
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	p.api(t, "/api/v1/query?query="+url.QueryEscape(expr), &data)
	if data.ResultType == "scalar" {
		return []json.RawMessage{data.Result}
	}
	var res []json.RawMessage
	if err := json.Unmarshal(data.Result, &res); err != nil {
		t.Fatalf("query %s: %v", expr, err)
	}
	return res
}

// waitFor polls until expr returns data.
func (p *prom) waitFor(t *testing.T, d time.Duration, expr string) {
	t.Helper()
	if !p.eventually(t, d, expr) {
		t.Fatalf("no data within %v for %s", d, expr)
	}
}

// eventually polls expr until it returns data (true) or d passes (false).
func (p *prom) eventually(t *testing.T, d time.Duration, expr string) bool {
	t.Helper()
	deadline := time.Now().Add(d)
	for len(p.query(t, expr)) == 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(250 * time.Millisecond)
	}
	return true
}

// rule is a loaded rule as /api/v1/rules lists it.
type rule struct {
	Name     string  `json:"name"`
	Query    string  `json:"query"`
	Type     string  `json:"type"`
	State    string  `json:"state"`
	Duration float64 `json:"duration"`
	Health   string  `json:"health"`
	Error    string  `json:"lastError"`
}

// rules lists every loaded rule.
func (p *prom) rules(t *testing.T) []rule {
	t.Helper()
	var data struct {
		Groups []struct {
			Rules []rule `json:"rules"`
		} `json:"groups"`
	}
	p.api(t, "/api/v1/rules", &data)
	var out []rule
	for _, g := range data.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

// alertRules lists the alerting rules, failing if a rule does not evaluate
// cleanly or if none is loaded.
func (p *prom) alertRules(t *testing.T) []rule {
	t.Helper()
	var out []rule
	for _, r := range p.rules(t) {
		if r.Health == "err" {
			t.Errorf("rule %s fails to evaluate: %s", r.Name, r.Error)
		}
		if r.Type == "alerting" {
			out = append(out, r)
		}
	}
	if len(out) < len(stormAlerts)+len(emptyByDesign) {
		t.Fatalf("%d alerting rules loaded, want %d", len(out), len(stormAlerts)+len(emptyByDesign))
	}
	return out
}

// waitAlerts waits until every storm alert is pending or firing, and
// firing for those without a `for`.
func (p *prom) waitAlerts(t *testing.T, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		states := map[string]rule{}
		for _, r := range p.rules(t) {
			states[r.Name] = r
		}
		var missing []string
		for _, a := range stormAlerts {
			r := states[a]
			ok := r.State == "firing" || (r.State == "pending" && r.Duration > 0)
			if !ok {
				missing = append(missing, fmt.Sprintf("%s (%s)", a, r.State))
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("storm alerts not pending or firing within %v: %s", d, strings.Join(missing, ", "))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// dashboardQueries are the expressions of every panel of the dashboard.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(repoFile(t, "deploy/grafana/dashboards/sluice.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range d.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	if len(out) < 20 {
		t.Fatalf("%d dashboard queries: is the dashboard read right?", len(out))
	}
	return out
}

// selectorRe matches the metric selectors of sluice's rules: a metric
// named sluice_* or up, with its label matchers if any.
var selectorRe = regexp.MustCompile(`\b(sluice_[a-z0-9_]+|up)\b(\{[^}]*\})?`)

// selectors returns the metric selectors of expr.
func selectors(expr string) []string {
	return selectorRe.FindAllString(expr, -1)
}
