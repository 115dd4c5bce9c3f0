package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/feedback"
	"github.com/sluicehq/sluice/internal/natstest"
	"github.com/sluicehq/sluice/internal/pgtest"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/control"
	"github.com/sluicehq/sluice/status"
	"github.com/sluicehq/sluice/suppression"
	"github.com/sluicehq/sluice/unsubscribe"
	"github.com/sluicehq/sluice/webhook"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// fixture is one test's API: its own NATS, database and HTTP server.
type fixture struct {
	t      *testing.T
	base   string
	db     *pgtest.DB
	js     jetstream.JetStream
	stream jetstream.Stream
	c      *Campaigns
	ctl    *control.Store
	srv    *Server
	reg    *prometheus.Registry
	supp   *suppression.Store
	unsub  *unsubscribe.Signer
	hooks  *webhook.Store
}

func setup(t *testing.T, tune ...func(*CampaignDeps)) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := &fixture{t: t, db: pgtest.New(t), reg: prometheus.NewRegistry()}
	nc, _ := natstest.Start(t)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		t.Fatal(err)
	}
	f.js = js
	streams, err := orchestrator.EnsureStreams(ctx, js, orchestrator.StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	f.stream = streams.Bulk
	tw := &testWriter{t: t}
	t.Cleanup(func() { tw.done.Store(true) })
	logger := slog.New(slog.NewTextHandler(tw, &slog.HandlerOptions{Level: slog.LevelWarn}))
	deps := CampaignDeps{Pool: f.db.Pool, JS: js, Logger: logger, Registerer: f.reg, Env: "test"}
	for _, fn := range tune {
		fn(&deps)
	}
	if f.c, err = NewCampaigns(ctx, deps); err != nil {
		t.Fatal(err)
	}
	if f.srv, err = New(Config{Addr: "127.0.0.1:0", Gatherer: f.reg}, logger); err != nil {
		t.Fatal(err)
	}
	f.c.Register(f.srv)
	if f.ctl, err = control.Open(ctx, js, f.db.Pool, logger, control.Options{}); err != nil {
		t.Fatal(err)
	}
	admin, err := NewAdmin(f.c, AdminConfig{Control: f.ctl, Stop: control.StopConfig{
		Purge: func(ctx context.Context, tenant, conv string) (uint64, error) {
			return orchestrator.PurgeConversation(ctx, js, tenant, conv)
		},
		Settle: time.Millisecond,
	}, Status: func(ctx context.Context) status.Report {
		return status.Gather(ctx, status.Sources{JS: js, Control: f.ctl, Pool: f.db.Pool})
	}})
	if err != nil {
		t.Fatal(err)
	}
	admin.Register(f.srv)
	h, err := suppression.NewHasher([]byte("test-mask-key-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := suppression.EnsureStream(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	f.supp = suppression.NewStore(f.db.Pool, js, h, logger)
	sp, err := NewSuppressions(f.c, SuppressionsConfig{Store: f.supp, Audit: f.ctl.RecordChange})
	if err != nil {
		t.Fatal(err)
	}
	sp.Register(f.srv)
	if f.unsub, err = unsubscribe.New([]byte("test-unsubscribe-key-0123"), h, "https://mail.example.com"); err != nil {
		t.Fatal(err)
	}
	u, err := NewUnsubscribe(f.c, UnsubscribeConfig{Store: f.supp, Signer: f.unsub, Audit: f.ctl.RecordChange})
	if err != nil {
		t.Fatal(err)
	}
	u.Register(f.srv)
	fb, err := NewFeedback(f.c, FeedbackConfig{Store: f.supp, Counts: feedback.NewStore(f.db.Pool), Pause: f.ctl.Quarantine})
	if err != nil {
		t.Fatal(err)
	}
	fb.Register(f.srv)
	f.mountWebhooks(t, js, logger)
	if err := f.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = f.srv.Stop(ctx)
	})
	f.base = "http://" + f.srv.Addr()
	return f
}

// mountWebhooks registers /v1/webhooks over a store that admits
// loopback URLs (the test environment), with replays.
func (f *fixture) mountWebhooks(t *testing.T, js jetstream.JetStream, logger *slog.Logger) {
	t.Helper()
	if _, err := webhook.EnsureStream(t.Context(), js, 1); err != nil {
		t.Fatal(err)
	}
	f.hooks = webhook.NewStore(f.db.Pool, js.Conn(), true, logger)
	rp, err := webhook.NewReplayer(js, f.hooks, webhook.DispatcherConfig{AllowInternal: true, Timeout: time.Second, BatchWait: 100 * time.Millisecond}, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rp.Stop(context.Background()) })
	wh, err := NewWebhooks(f.c, WebhooksConfig{Store: f.hooks, Replayer: rp, Audit: f.ctl.RecordChange,
		DeleteConsumer: func(ctx context.Context, id string) error { return webhook.DeleteConsumer(ctx, js, id) }})
	if err != nil {
		t.Fatal(err)
	}
	wh.Register(f.srv)
}

// testWriter sends log lines to t.Log while the test runs.
type testWriter struct {
	t    *testing.T
	done atomic.Bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// key creates an API key.
func (f *fixture) key(tenant string, scopes ...Scope) string {
	f.t.Helper()
	k, _, err := CreateAPIKey(context.Background(), f.db.Pool, tenant, "test", scopes)
	if err != nil {
		f.t.Fatal(err)
	}
	return k
}

// operatorKey creates an operator key named name.
func (f *fixture) operatorKey(name string) string {
	f.t.Helper()
	k, _, err := CreateOperatorKey(context.Background(), f.db.Pool, name)
	if err != nil {
		f.t.Fatal(err)
	}
	return k
}

// response is an HTTP answer read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("answer %d is not a JSON object: %v: %s", r.status, err, r.body)
	}
	return m
}

// problem checks that r is a problem document with status and type, and
// returns it.
func (r response) problem(t *testing.T, status int, typ string) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d: %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != ProblemContentType {
		t.Fatalf("Content-Type = %q, want %s: %s", ct, ProblemContentType, r.body)
	}
	p := r.json(t)
	if p["type"] != typ || p["status"] != float64(status) || p["title"] == "" || p["title"] == nil {
		t.Fatalf("problem = %v, want type %s status %d and a title", p, typ, status)
	}
	return p
}

type reqOpt func(*http.Request)

func header(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }

func (f *fixture) do(method, path, key string, body io.Reader, opts ...reqOpt) response {
	f.t.Helper()
	req, err := http.NewRequest(method, f.base+path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for _, o := range opts {
		o(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (f *fixture) postJSON(path, key string, v any, opts ...reqOpt) response {
	f.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		f.t.Fatal(err)
	}
	return f.do(http.MethodPost, path, key, bytes.NewReader(b), append([]reqOpt{header("Content-Type", "application/json")}, opts...)...)
}

// conversation creates an email conversation in the bulk lane.
func (f *fixture) conversation(key, id string) {
	f.t.Helper()
	r := f.postJSON("/v1/conversations", key, map[string]any{
		"id": id, "name": "test " + id, "channel": "email", "lane": "bulk",
		"template": map[string]string{"subject": "Hello", "text": "Hello {{.name}}"},
	})
	if r.status != http.StatusCreated {
		f.t.Fatalf("create conversation %s: %d %s", id, r.status, r.body)
	}
}

func (f *fixture) activate(key, conv, idemKey string, body io.Reader, ndjson bool) response {
	f.t.Helper()
	ct := "application/json"
	if ndjson {
		ct = "application/x-ndjson"
	}
	opts := []reqOpt{header("Content-Type", ct)}
	if idemKey != "" {
		opts = append(opts, header("Idempotency-Key", idemKey))
	}
	return f.do(http.MethodPost, "/v1/conversations/"+conv+"/activations", key, body, opts...)
}

// streamMsgs is the number of messages in SLUICE_BULK.
func (f *fixture) streamMsgs() uint64 {
	f.t.Helper()
	info, err := f.stream.Info(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return info.State.Msgs
}

// resetStream deletes and recreates the stream: its duplicate window starts
// empty, as it is more than 2 minutes after a request.
func (f *fixture) resetStream() {
	f.t.Helper()
	ctx := context.Background()
	for _, name := range []string{orchestrator.StreamName, orchestrator.TransactionalStreamName} {
		if err := f.js.DeleteStream(ctx, name); err != nil {
			f.t.Fatal(err)
		}
	}
	s, err := orchestrator.EnsureStreams(ctx, f.js, orchestrator.StreamConfig{})
	if err != nil {
		f.t.Fatal(err)
	}
	f.stream = s.Bulk
}

// accepted is conversations.accepted.
func (f *fixture) accepted(tenant, conv string) int64 {
	f.t.Helper()
	var n int64
	if err := f.db.Pool.QueryRow(context.Background(), `SELECT accepted FROM conversations WHERE tenant = $1 AND id = $2`,
		tenant, conv).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// rowsReader generates NDJSON rows first..last without holding them.
type rowsReader struct {
	next, last int
	bad        map[int]string // row -> replacement line
	buf        []byte
}

func ndjsonRows(first, last int, bad map[int]string) *rowsReader {
	return &rowsReader{next: first, last: last, bad: bad}
}

func (r *rowsReader) Read(p []byte) (int, error) {
	for len(r.buf) < len(p) && r.next <= r.last {
		if line, ok := r.bad[r.next]; ok {
			r.buf = append(r.buf, line...)
			r.buf = append(r.buf, '\n')
		} else {
			r.buf = fmt.Appendf(r.buf, `{"to":"user%d@example.com","vars":{"name":"User %d"}}`+"\n", r.next, r.next)
		}
		r.next++
	}
	if len(r.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// webhook registers an endpoint of tenant's and returns its id.
func (f *fixture) webhook(tenant string) string {
	f.t.Helper()
	ep, err := f.hooks.Create(f.t.Context(), tenant, "http://127.0.0.1:9/hook", []string{webhook.EventDelivered})
	if err != nil {
		f.t.Fatal(err)
	}
	return ep.ID
}
