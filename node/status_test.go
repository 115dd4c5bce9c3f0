package node_test

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/control"
	"github.com/sluicehq/sluice/status"
	"github.com/sluicehq/sluice/wire"
)

// fakeBreaker is a provider breaker the heartbeat reports.
type fakeBreaker struct{ name, state string }

func (b fakeBreaker) Name() string  { return b.name }
func (b fakeBreaker) State() string { return b.state }

func (b *bundle) status(t *testing.T) status.Report {
	t.Helper()
	var r status.Report
	data := b.must(t, "GET", "/v1/admin/status", nil, http.StatusOK)
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("status: %v: %s", err, data)
	}
	return r
}

// TestStatusEveryItem: GET /v1/admin/status of a dev node reports every
// item: the NATS server and the leader of each sluice stream, this process's
// heartbeat (roles, lanes, error-log breaker, provider breakers), both
// lanes' consumers, the error-log mode, spill depth and partitions ahead,
// quarantined and paused conversations, intake, channels and PostgreSQL,
// with nothing unavailable; a cleanly stopped process is gone at once.
func TestStatusEveryItem(t *testing.T) {
	t.Parallel()
	b := setup(t, 0, func(c *node.Config) {
		c.Breakers = []node.Breaker{fakeBreaker{"smtp", "open"}}
		c.Version = "v-test"
	})
	ctx := t.Context()
	b.conversation(t, "held", dispatch.ChannelEmail, wire.LaneBulk)
	b.conversation(t, "bad", dispatch.ChannelEmail, wire.LaneBulk)
	b.pause(t, "held", map[string]string{"reason": "status test"})
	if _, err := b.n.Control.Quarantine(ctx, "acme", "bad", "test"); err != nil {
		t.Fatal(err)
	}
	b.must(t, "PUT", "/v1/admin/channels/sms", map[string]bool{"disabled": true}, http.StatusOK)
	b.activate(t, "held", dispatch.ChannelEmail, 5, 0) // queued: paused

	var r status.Report
	waitFor(t, 10*time.Second, "the paused conversation's messages queued", func() bool {
		r = b.status(t)
		return len(r.Lanes) == 2 && r.Lanes[1].Queued == 5
	})
	// Paused before its first message: its consumer (kept while held)
	// delivers nothing.
	waitFor(t, 10*time.Second, "the paused conversation's consumer", func() bool {
		r = b.status(t)
		return len(r.Lanes) == 2 && r.Lanes[1].Consumers == 1
	})
	if l := r.Lanes[1]; l.Consumers != 1 || l.Pending != 5 || l.AckPending != 0 {
		t.Errorf("bulk lane %+v: want the paused conversation's consumer, its 5 messages undelivered", l)
	}
	if len(r.Unavailable) != 0 {
		t.Errorf("unavailable: %v", r.Unavailable)
	}
	if r.NATS.Server == "" || r.NATS.URL == "" || len(r.NATS.Known) == 0 || r.NATS.Streams < 4 {
		t.Errorf("nats: %+v", r.NATS)
	}
	streams := map[string]status.Stream{}
	for _, s := range r.Streams {
		streams[s.Name] = s
	}
	for _, name := range []string{orchestrator.StreamName, orchestrator.TransactionalStreamName, errorlog.SpillStream, "KV_" + control.Bucket, "KV_" + orchestrator.ConversationsBucket} {
		if s, ok := streams[name]; !ok || s.Replicas != 1 || s.Leader != r.NATS.Server {
			t.Errorf("stream %s: %+v (present %v), want 1 replica led by %s", name, s, ok, r.NATS.Server)
		}
	}
	if len(r.NATS.Peers) != 1 || r.NATS.Peers[0].Name != r.NATS.Server || len(r.NATS.Peers[0].Leads) < 4 {
		t.Errorf("peers: %+v", r.NATS.Peers)
	}
	if s := streams[orchestrator.StreamName]; s.Messages != 5 || r.Lanes[1].Queued != 5 || r.Lanes[1].Lane != "bulk" || r.Lanes[0].Consumers != 1 {
		t.Errorf("activations %d, lanes %+v", s.Messages, r.Lanes)
	}
	checkWorker(t, r)
	e := r.ErrorLog
	if e.Mode == nil || e.Mode.Mode.Name != errorlog.ModeFull || e.SpillDepth == nil || *e.SpillDepth != 0 ||
		e.PartitionsAhead == nil || *e.PartitionsAhead != 2 || len(e.Breakers) != 1 {
		t.Errorf("errorlog: %+v", e)
	}
	if len(r.Conversations.Paused) != 1 || r.Conversations.Paused[0].Conversation != "held" ||
		len(r.Conversations.Quarantined) != 1 || r.Conversations.Quarantined[0].Conversation != "bad" {
		t.Errorf("conversations: %+v", r.Conversations)
	}
	if r.Intake == nil || r.Intake.Paused || len(r.Channels) != 3 || !r.Channels[1].Disabled {
		t.Errorf("intake %+v channels %+v", r.Intake, r.Channels)
	}
	if !r.Postgres.Reachable || r.Postgres.SystemIdentifier == "" || r.Postgres.BoundTo != r.Postgres.SystemIdentifier {
		t.Errorf("postgres: %+v", r.Postgres)
	}

	// A second process joins; stopped cleanly, it leaves at once.
	rec := &recorder{byID: map[string]int{}, conv: map[string]int{}}
	cfg := config(b.nats, b.db, rec, control.EnvDev)
	cfg.API = false
	n2, err := node.Start(ctx, cfg, quietLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if ws := b.status(t).Workers; len(ws) != 2 {
		t.Fatalf("after a second start: %d processes", len(ws))
	}
	if err := n2.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if ws := b.status(t).Workers; len(ws) != 1 {
		t.Fatalf("after a clean stop: %d processes: %+v", len(ws), ws)
	}
}

// statusWithKey calls GET /v1/admin/status with key and returns the status.
func (b *bundle) statusWithKey(t *testing.T, key string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", b.base+"/v1/admin/status", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// checkWorker checks the one process's heartbeat in r.
func checkWorker(t *testing.T, r status.Report) {
	t.Helper()
	if len(r.Workers) != 1 {
		t.Fatalf("workers: %+v", r.Workers)
	}
	w := r.Workers[0]
	if !w.Live || w.Version != "v-test" || w.Env != "dev" || !slices.Equal(w.Roles, []string{"api", "worker"}) || w.Host == "" ||
		w.StartedAt.IsZero() || w.AgeSeconds > control.HeartbeatGoneAfter.Seconds() {
		t.Errorf("worker: %+v", w)
	}
	if len(w.Lanes) != 2 || w.Lanes[0].Lane != "transactional" || w.Lanes[0].Workers != 4 || w.Lanes[1].Lane != "bulk" {
		t.Errorf("lanes: %+v", w.Lanes)
	}
	if w.ErrorLogMode != "full" || w.ErrorLogBreaker != "closed" || r.ErrorLog.Breakers[w.ID] != "closed" {
		t.Errorf("error log: %q %q %v", w.ErrorLogMode, w.ErrorLogBreaker, r.ErrorLog.Breakers)
	}
	if len(w.Providers) != 1 || w.Providers[0] != (control.ProviderState{Name: "smtp", Breaker: "open"}) {
		t.Errorf("providers: %+v", w.Providers)
	}
}

// pgProxy forwards TCP to Postgres until cut: then it drops every
// connection and refuses new ones, as an unreachable server does.
type pgProxy struct {
	ln     net.Listener
	target string
	down   atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func startProxy(t *testing.T, dbURL string) (*pgProxy, string) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{ln: ln, target: u.Host}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go p.serve()
	u.Host = ln.Addr().String()
	return p, u.String()
}

func (p *pgProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.down.Load() {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); up.Close() }()
		go func() { _, _ = io.Copy(c, up); c.Close() }()
	}
}

// cut makes Postgres unreachable through the proxy.
func (p *pgProxy) cut() {
	p.down.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestStatusWithoutPostgres: with Postgres unreachable, GET
// /v1/admin/status still answers at once with everything NATS and the
// heartbeats know, and marks the Postgres items unavailable; /readyz says
// not ready.
func TestStatusWithoutPostgres(t *testing.T) {
	t.Parallel()
	var proxy *pgProxy
	b := setup(t, 0, func(c *node.Config) {
		proxy, c.DatabaseURL = startProxy(t, c.DatabaseURL)
	})
	b.must(t, "POST", "/v1/admin/conversations/acme/x/pause", nil, http.StatusNotFound) // needs Postgres: it is up
	b.conversation(t, "held", dispatch.ChannelEmail, wire.LaneBulk)
	b.pause(t, "held", nil)
	// Keys: an operator key used while Postgres answers, one never used,
	// a tenant's admin key used.
	used, _, err1 := api.CreateOperatorKey(t.Context(), b.db.Pool, "ops")
	unused, _, err2 := api.CreateOperatorKey(t.Context(), b.db.Pool, "ops2")
	admin, _, err3 := api.CreateAPIKey(t.Context(), b.db.Pool, "acme", "admin", []api.Scope{api.ScopeAdmin})
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{used, admin} {
		if code := b.statusWithKey(t, k); code != http.StatusOK && code != http.StatusForbidden {
			t.Fatalf("status with a key while Postgres answers: %d", code)
		}
	}
	proxy.cut()

	start := time.Now()
	r := b.status(t)
	took := time.Since(start)
	if took > 5*time.Second {
		t.Errorf("status took %v without Postgres", took)
	}
	if r.Postgres.Reachable || r.Unavailable["postgres"] == "" || r.Unavailable["errorlog.partitions_ahead"] == "" || r.ErrorLog.PartitionsAhead != nil {
		t.Errorf("postgres items: %+v, unavailable %v", r.Postgres, r.Unavailable)
	}
	if len(r.Unavailable) != 2 {
		t.Errorf("more than the Postgres items unavailable: %v", r.Unavailable)
	}
	if r.Postgres.BoundTo == "" || len(r.Streams) < 4 || len(r.Workers) != 1 || !r.Workers[0].Live || len(r.Lanes) != 2 ||
		r.ErrorLog.Mode == nil || r.ErrorLog.SpillDepth == nil || r.Intake == nil || len(r.Channels) != 3 ||
		len(r.Conversations.Paused) != 1 {
		t.Errorf("report without Postgres lacks NATS items: %+v", r)
	}
	// The operator key verified before the outage still opens status; no
	// other key does, since the key store cannot be asked.
	if code := b.statusWithKey(t, used); code != http.StatusOK {
		t.Errorf("status with an operator key verified before the outage: %d", code)
	}
	for _, k := range []string{unused, admin} {
		if code := b.statusWithKey(t, k); code != http.StatusServiceUnavailable {
			t.Errorf("status with a key not verified before the outage: %d, want 503", code)
		}
	}
	code, _, body := b.do(t, "GET", "/readyz", nil)
	if code != http.StatusServiceUnavailable {
		t.Errorf("readyz without Postgres: %d %s", code, body)
	}
	t.Logf("status without Postgres in %v; unavailable: %v", took.Round(time.Millisecond), r.Unavailable)
}
