package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/internal/natstest"
	"github.com/sluicehq/sluice/internal/pgtest"
	"github.com/sluicehq/sluice/orchestrator/control"
	"github.com/sluicehq/sluice/status"
)

// TestMain lets the tests of this package use pgtest.New. It starts no
// database by itself: tests that do not call pgtest.New do not wait for one.
func TestMain(m *testing.M) {
	// The test binary doubles as the sluice binary for tests that need a
	// process of their own to kill (kill_test.go).
	if args := os.Getenv(execAsSluice); args != "" {
		os.Exit(run(strings.Split(args, "\x1f"), os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(pgtest.Main(m))
}

type ctlBundle struct {
	store *control.Store
	db    *pgtest.DB
	url   string
	key   string // an operator key named "ops"
}

// setupCtl serves the campaign and admin API as a dev node does: a request
// without a key is the dev identity (tenant acme, and operator); b.key is an
// operator key named "ops". Stop's purge is a stand-in that reports 7.
func setupCtl(t *testing.T) *ctlBundle {
	t.Helper()
	nc, _ := natstest.Start(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	db := pgtest.New(t)
	store, err := control.Open(t.Context(), js, db.Pool, nil, control.Options{})
	if err != nil {
		t.Fatal(err)
	}
	camp, err := api.NewCampaigns(t.Context(), api.CampaignDeps{Pool: db.Pool, JS: js, Env: "dev", DevTenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Config{Addr: "127.0.0.1:0", Gatherer: prometheus.NewRegistry()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	camp.Register(srv)
	admin, err := api.NewAdmin(camp, api.AdminConfig{Control: store, Stop: control.StopConfig{
		Purge:  func(context.Context, string, string) (uint64, error) { return 7, nil },
		Settle: time.Millisecond,
	}, Status: func(ctx context.Context) status.Report {
		return status.Gather(ctx, status.Sources{JS: js, Control: store, Pool: db.Pool})
	}})
	if err != nil {
		t.Fatal(err)
	}
	admin.Register(srv)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })
	key, _, err := api.CreateOperatorKey(t.Context(), db.Pool, "ops")
	if err != nil {
		t.Fatal(err)
	}
	return &ctlBundle{store: store, db: db, url: "http://" + srv.Addr(), key: key}
}

// ctl runs `sluice ctl --api-url <test API> args...`.
func (b *ctlBundle) ctl(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = runCtl(t.Context(), append([]string{"--api-url", b.url}, args...), &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestCtlErrorLog(t *testing.T) {
	t.Parallel()
	b := setupCtl(t)

	out, _, err := b.ctl(t, "errorlog", "show")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"mode        full", "updated by  default", "revision    1"} {
		if !strings.Contains(out, want) {
			t.Fatalf("show: missing %q in\n%s", want, out)
		}
	}

	out, _, err = b.ctl(t, "--key", b.key, "errorlog", "set", "sample", "--first", "10", "--then", "50", "--window", "30s")
	if err != nil {
		t.Fatal(err)
	}
	if want := "error log mode: full -> sample (first 10 per 30s, then 1 in 50) (revision 2, by operator:"; !strings.HasPrefix(out, want) || !strings.HasSuffix(out, " (ops))\n") {
		t.Fatalf("set: %q, want %q...(ops))", out, want)
	}
	want := errorlog.Mode{Name: errorlog.ModeSample, First: 10, Then: 50, Window: 30 * time.Second}
	if m, err := b.store.ErrorLogMode(t.Context()); err != nil || m != want {
		t.Fatalf("mode after set = %v, %v", m, err)
	}
	var actor string
	if err := b.db.Pool.QueryRow(t.Context(), "SELECT actor FROM control_audit ORDER BY id DESC LIMIT 1").Scan(&actor); err != nil ||
		!strings.HasPrefix(actor, "operator:") || !strings.HasSuffix(actor, " (ops)") {
		t.Fatalf("audited actor = %q, %v; want operator:<id> (ops), from the key", actor, err)
	}

	// Flags after the command; JSON.
	out, _, err = b.ctl(t, "errorlog", "show", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var st control.ErrorLogStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if st.Mode != want || st.UpdatedBy != actor || st.Previous == nil || st.Previous.Name != errorlog.ModeFull {
		t.Fatalf("--json: %+v", st)
	}
	out, _, _ = b.ctl(t, "errorlog", "show")
	for _, w := range []string{"mode        sample", "first       10 per", "then        1 in 50", "window      30s", "updated by  operator:", "(ops)", "previous    full"} {
		if !strings.Contains(out, w) {
			t.Fatalf("show: missing %q in\n%s", w, out)
		}
	}

	// Without a key (dev): the dev identity.
	if out, _, err = b.ctl(t, "errorlog", "set", "off"); err != nil || !strings.Contains(out, "-> off") {
		t.Fatalf("set off: %q, %v", out, err)
	}
}

func TestCtlErrors(t *testing.T) {
	t.Parallel()
	b := setupCtl(t)

	out, _, err := b.ctl(t, "errors", "top")
	if err != nil || out != "no undeliverable messages in the last 5m0s\n" {
		t.Fatalf("top on nothing: %q, %v", out, err)
	}
	if _, err := b.db.Pool.Exec(t.Context(), `
INSERT INTO error_counts (tenant, conversation, channel, reason, outcome, minute, count) VALUES
  ('acme', 'spring', 'email', 'empty',  'invalid', date_trunc('minute', now()), 7000),
  ('acme', 'spring', 'email', 'syntax', 'invalid', date_trunc('minute', now()), 1000),
  ('beta', 'news',   'sms',   'not_e164', 'invalid', date_trunc('minute', now() - interval '1 minute'), 12),
  ('old',  'gone',   'email', 'empty',  'invalid', date_trunc('minute', now() - interval '3 hours'), 1)`); err != nil {
		t.Fatal(err)
	}
	out, _, err = b.ctl(t, "errors", "top")
	if err != nil {
		t.Fatal(err)
	}
	want := "" +
		"TENANT  CONVERSATION  FAILURES  REASONS\n" +
		"acme    spring        8000      empty=7000 syntax=1000\n" +
		"beta    news          12        not_e164=12\n"
	if out != want {
		t.Fatalf("top:\n%s\nwant\n%s", out, want)
	}
	out, _, err = b.ctl(t, "--json", "errors", "top", "--window", "4h", "--limit", "1")
	if err != nil {
		t.Fatal(err)
	}
	var r control.TopErrorsReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if r.Window != "4h0m0s" || len(r.Conversations) != 1 || r.Conversations[0].Total != 8000 {
		t.Fatalf("--json: %+v", r)
	}
}

func TestCtlFailures(t *testing.T) {
	t.Parallel()
	b := setupCtl(t)
	for _, tc := range []struct {
		args    []string
		usage   bool   // errUsage, nothing sent
		errSub  string // in the error, or in stderr for a usage error
		outSize int
	}{
		{args: []string{}, usage: true, errSub: "usage: sluice ctl"},
		{args: []string{"frobnicate"}, usage: true, errSub: `unknown command "frobnicate"`},
		{args: []string{"errorlog"}, usage: true, errSub: `unknown command "errorlog"`},
		{args: []string{"errorlog", "set"}, usage: true, errSub: "full|sample|off|sync"},
		{args: []string{"errorlog", "set", "loud"}, usage: true, errSub: `"loud"`},
		{args: []string{"errorlog", "set", "full", "--first", "5"}, usage: true, errSub: "--first: for sample mode only"},
		{args: []string{"errorlog", "set", "sample", "--then", "-1"}, usage: true, errSub: "then"},
		{args: []string{"errorlog", "set", "sample", "--window", "soon"}, usage: true, errSub: "soon"},
		{args: []string{"errorlog", "show", "extra"}, usage: true, errSub: "unexpected arguments"},
		{args: []string{"errors", "top", "--limit", "0"}, errSub: "400 Bad Request: control: invalid value: errorlog: invalid query: limit 0"},
		{args: []string{"--key", "wrong", "errorlog", "show"}, errSub: "401 Unauthorized: the API key is not valid (an operator key"},
		{args: []string{"apikey", "create"}, usage: true, errSub: "--tenant is required"},
	} {
		out, stderr, err := b.ctl(t, tc.args...)
		switch {
		case tc.usage && err != errUsage:
			t.Errorf("%q: err %v, want a usage error", tc.args, err)
		case tc.usage && !strings.Contains(stderr, tc.errSub):
			t.Errorf("%q: stderr %q, want %q", tc.args, stderr, tc.errSub)
		case !tc.usage && (err == nil || !strings.Contains(err.Error(), tc.errSub)):
			t.Errorf("%q: err %v, want %q", tc.args, err, tc.errSub)
		case out != "":
			t.Errorf("%q: printed %q on failure", tc.args, out)
		}
	}
	if m, _ := b.store.ErrorLogMode(t.Context()); m != errorlog.DefaultMode {
		t.Fatalf("mode changed by failed commands: %v", m)
	}
}

func TestCtlDefaultsFromEnv(t *testing.T) {
	// Not parallel: it sets the environment.
	b := setupCtl(t)
	t.Setenv("SLUICE_API_URL", b.url+"/")
	t.Setenv("SLUICE_API_KEY", b.key)
	var out bytes.Buffer
	if err := runCtl(t.Context(), []string{"errorlog", "set", "sync"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), " (ops))") {
		t.Fatalf("the key from SLUICE_API_KEY was not sent: %q", out.String())
	}

	// Nothing listening: the error says where it tried and how to change it.
	t.Setenv("SLUICE_API_URL", "http://127.0.0.1:1")
	err := runCtl(t.Context(), []string{"errorlog", "show"}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "http://127.0.0.1:1/v1/admin/errorlog") || !strings.Contains(err.Error(), "SLUICE_API_URL") {
		t.Fatalf("err = %v", err)
	}
	t.Setenv("SLUICE_API_URL", "127.0.0.1:8080")
	if err := runCtl(t.Context(), []string{"errorlog", "show"}, &out, &out); err == nil || !strings.Contains(err.Error(), "--api-url") {
		t.Fatalf("a URL without scheme: %v", err)
	}
}

func TestCtlUsageHidesKey(t *testing.T) {
	t.Setenv("SLUICE_API_KEY", "very-secret-key")
	var out, errOut bytes.Buffer
	if err := runCtl(t.Context(), []string{"errorlog", "show", "-h"}, &out, &errOut); err != errUsage {
		t.Fatalf("-h: %v", err)
	}
	if strings.Contains(errOut.String(), "very-secret-key") || !strings.Contains(errOut.String(), "-key") {
		t.Fatalf("usage shows the key:\n%s", errOut.String())
	}
}
