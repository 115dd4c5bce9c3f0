package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/internal/apitest"
	"github.com/sluicehq/sluice/internal/natstest"
	"github.com/sluicehq/sluice/internal/pgtest"
	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/control"
	"github.com/sluicehq/sluice/wire"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// recorder is the provider of every channel: it counts deliveries per
// conversation and message id, each taking delay.
type recorder struct {
	delay time.Duration
	mu    sync.Mutex
	byID  map[string]int
	conv  map[string]int
}

func (r *recorder) Send(ctx context.Context, m *dispatch.Message) error {
	if r.delay > 0 {
		time.Sleep(r.delay)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byID[m.Conversation+"/"+m.ID]++
	r.conv[m.Conversation]++
	return nil
}

func (r *recorder) delivered(conv string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conv[conv]
}

// duplicates returns how many ids of conv were delivered more than once.
func (r *recorder) duplicates(conv string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, c := range r.byID {
		if strings.HasPrefix(k, conv+"/") && c > 1 {
			n++
		}
	}
	return n
}

type bundle struct {
	n    *node.Node
	base string
	rec  *recorder
	db   *pgtest.DB
	nats string
}

func quietLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.DiscardHandler)
}

func config(natsURL string, db *pgtest.DB, rec *recorder, env string) node.Config {
	cfg := node.Config{
		NATSURL: natsURL, DatabaseURL: db.URL, HTTPAddr: "127.0.0.1:0",
		Worker: true, API: true, Env: env, Name: "sluice-test",
		Providers:  map[dispatch.Channel]dispatch.Provider{dispatch.ChannelEmail: rec, dispatch.ChannelSMS: rec, dispatch.ChannelPush: rec},
		StopSettle: 500 * time.Millisecond,
	}
	if env == control.EnvDev {
		cfg.DevTenant = "acme"
	}
	cfg.ErrorLog.MaskKey = []byte("test-mask-key-0123456789")
	cfg.Pipeline.Bulk.Workers = 4
	cfg.Pipeline.Transactional.Workers = 4
	return cfg
}

func setup(t *testing.T, delay time.Duration, opts ...func(*node.Config)) *bundle {
	t.Helper()
	_, url := natstest.Start(t)
	db := pgtest.New(t)
	rec := &recorder{delay: delay, byID: map[string]int{}, conv: map[string]int{}}
	cfg := config(url, db, rec, control.EnvDev)
	for _, o := range opts {
		o(&cfg)
	}
	n, err := node.Start(t.Context(), cfg, quietLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = n.Stop(ctx)
	})
	return &bundle{n: n, base: "http://" + n.HTTP.Addr(), rec: rec, db: db, nats: url}
}

func (b *bundle) do(t *testing.T, method, path string, body any) (int, http.Header, []byte) {
	t.Helper()
	return apitest.Do(t, b.base, method, path, "", body)
}

func (b *bundle) must(t *testing.T, method, path string, body any, want int) []byte {
	t.Helper()
	return apitest.Must(t, b.base, method, path, "", body, want)
}

func (b *bundle) conversation(t *testing.T, id string, ch dispatch.Channel, lane wire.Lane) {
	t.Helper()
	tpl := map[string]string{"subject": "hello", "text": "hello {{.name}}"}
	if ch == dispatch.ChannelSMS {
		delete(tpl, "subject")
	}
	b.must(t, "POST", "/v1/conversations", map[string]any{
		"id": id, "name": id, "channel": ch, "lane": lane, "template": tpl,
	}, http.StatusCreated)
}

// pause pauses conv (tenant acme) and waits for this node's workers to
// learn it: the control plane's watch brings a pause to the lanes within a
// second, so activations submitted before then may be delivered.
func (b *bundle) pause(t *testing.T, conv string, body any) {
	t.Helper()
	b.must(t, "POST", "/v1/admin/conversations/acme/"+conv+"/pause", body, http.StatusOK)
	waitFor(t, 10*time.Second, "the workers to learn the pause of "+conv, func() bool {
		return b.n.Service.Controls().Conversation("acme", conv) == control.StatePaused
	})
}

// activate sends n activations to conv, every invalidEvery-th one (if not 0)
// with an invalid address.
func (b *bundle) activate(t *testing.T, conv string, ch dispatch.Channel, n, invalidEvery int) {
	t.Helper()
	b.activateFunc(t, conv, ch, n, func(i int) bool { return invalidEvery > 0 && i%invalidEvery == 0 })
}

// activateFunc sends n activations to conv, those for which invalid says so
// with an invalid address.
func (b *bundle) activateFunc(t *testing.T, conv string, ch dispatch.Channel, n int, invalid func(i int) bool) {
	t.Helper()
	rows := make([]map[string]any, n)
	for i := range rows {
		to := fmt.Sprintf("user%d@example.com", i)
		if ch == dispatch.ChannelSMS {
			to = fmt.Sprintf("+33612%06d", i)
		}
		if invalid(i) {
			to = "not-an-address"
		}
		rows[i] = map[string]any{"to": to, "vars": map[string]string{"name": "n" + strconv.Itoa(i)}}
	}
	data := b.must(t, "POST", "/v1/conversations/"+conv+"/activations", rows, http.StatusAccepted)
	var got struct {
		Accepted int64 `json:"accepted"`
	}
	if err := json.Unmarshal(data, &got); err != nil || got.Accepted != int64(n) {
		t.Fatalf("activations: %s (%v), want %d accepted", data, err, n)
	}
}

func (b *bundle) counts(t *testing.T, conv string) api.Counts {
	t.Helper()
	c, err := api.ConversationCounts(t.Context(), b.db.Pool, "acme", conv)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// queued is the number of messages of conv in the stream.
func (b *bundle) queued(t *testing.T, conv string) uint64 {
	t.Helper()
	var n uint64
	for _, lane := range []wire.Lane{wire.LaneBulk, wire.LaneTransactional} {
		s, err := b.n.JS.Stream(t.Context(), orchestrator.StreamOf(lane))
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(t.Context(), jetstreamSubjects(wire.Subject(lane, "acme", conv)))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range info.State.Subjects {
			n += c
		}
	}
	return n
}

// metric returns the sum of the samples of a metric whose line contains all
// of parts.
func (b *bundle) metric(t *testing.T, name string, parts ...string) float64 {
	t.Helper()
	_, _, data := b.do(t, "GET", "/metrics", nil)
	var sum float64
	for line := range strings.SplitSeq(string(data), "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPauseResume: a pause stops a conversation's deliveries within a second,
// in either lane, and a resume delivers the rest, each message once.
func TestPauseResume(t *testing.T) {
	t.Parallel()
	b := setup(t, 2*time.Millisecond)
	for _, lane := range []wire.Lane{wire.LaneBulk, wire.LaneTransactional} {
		conv := "pause-" + string(lane)
		const n = 3000
		b.conversation(t, conv, dispatch.ChannelEmail, lane)
		b.activate(t, conv, dispatch.ChannelEmail, n, 0)
		waitFor(t, 10*time.Second, "first deliveries", func() bool { return b.rec.delivered(conv) >= 100 })
		paused := time.Now()
		b.must(t, "POST", "/v1/admin/conversations/acme/"+conv+"/pause", map[string]string{"reason": "test"}, http.StatusOK)
		time.Sleep(time.Second - time.Since(paused))
		at1s := b.rec.delivered(conv)
		time.Sleep(1500 * time.Millisecond)
		if later := b.rec.delivered(conv); later != at1s || later >= n {
			t.Fatalf("%s: delivered %d a second after the pause, %d 1.5s later (of %d): still flowing", lane, at1s, later, n)
		}
		t.Logf("%s: paused at %d of %d delivered", lane, at1s, n)

		data := b.must(t, "GET", "/v1/admin/conversations?state=paused", nil, http.StatusOK)
		var list control.ConversationList
		if err := json.Unmarshal(data, &list); err != nil || len(list.Conversations) != 1 || list.Conversations[0].Conversation != conv || list.Conversations[0].UpdatedBy == "" {
			t.Fatalf("list paused: %s", data)
		}

		b.must(t, "POST", "/v1/admin/conversations/acme/"+conv+"/resume", nil, http.StatusOK)
		waitFor(t, 30*time.Second, "every message delivered after resume", func() bool { return b.rec.delivered(conv) >= n })
		if d := b.rec.duplicates(conv); d != 0 || b.rec.delivered(conv) != n {
			t.Fatalf("%s: delivered %d with %d duplicated ids, want %d once each", lane, b.rec.delivered(conv), d, n)
		}
		waitFor(t, 10*time.Second, "counts at rest", func() bool { c := b.counts(t, conv); return c.Delivered == n && c.Pending == 0 })
	}
	var state string
	if err := b.db.Pool.QueryRow(t.Context(), `SELECT state FROM conversations WHERE tenant = 'acme' AND id = 'pause-bulk'`).Scan(&state); err != nil || state != "active" {
		t.Fatalf("state in Postgres = %q, %v", state, err)
	}
	var audits int
	if err := b.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM control_audit WHERE key LIKE 'conversation.acme.pause-%'`).Scan(&audits); err != nil || audits != 4 {
		t.Fatalf("audit rows = %d, %v; want 4", audits, err)
	}
}

// TestPausedConversationCost: a paused bulk conversation with a large
// backlog is never fetched: the other conversations of the lane drain as fast
// as without it, and its messages are not handled at all.
func TestPausedConversationCost(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	big, clean, base := "paused-big", "clean", "baseline"
	for _, c := range []string{big, clean, base} {
		b.conversation(t, c, dispatch.ChannelEmail, wire.LaneBulk)
	}
	// SLUICE_PAUSED_BACKLOG sizes the paused backlog (default 50000), to
	// measure with 1M.
	backlog, n := 50000, 5000
	if testing.Short() {
		backlog, n = 10000, 1000
	}
	if v, err := strconv.Atoi(os.Getenv("SLUICE_PAUSED_BACKLOG")); err == nil && v >= 10000 {
		backlog = v / 10000 * 10000
	}

	start := time.Now()
	b.activate(t, base, dispatch.ChannelEmail, n, 0)
	waitFor(t, 60*time.Second, "baseline delivered", func() bool { return b.rec.delivered(base) == n })
	baseline := time.Since(start)

	b.pause(t, big, nil)
	for i := 0; i < backlog/10000; i++ {
		b.activate(t, big, dispatch.ChannelEmail, 10000, 0)
	}
	heldBefore := b.metric(t, "sluice_orchestrator_held_total")
	start = time.Now()
	b.activate(t, clean, dispatch.ChannelEmail, n, 0)
	waitFor(t, 60*time.Second, "clean delivered", func() bool { return b.rec.delivered(clean) == n })
	withPaused := time.Since(start)
	held := b.metric(t, "sluice_orchestrator_held_total") - heldBefore
	t.Logf("%d messages of another conversation: %v alone, %v beside a paused %d-message backlog; paused messages handled: %v delivered, %v held",
		n, baseline.Round(time.Millisecond), withPaused.Round(time.Millisecond), backlog, b.rec.delivered(big), held)
	if b.rec.delivered(big) != 0 || held != 0 {
		t.Fatalf("the paused conversation was handled: %d delivered, %v held", b.rec.delivered(big), held)
	}
	if q := b.queued(t, big); q != uint64(backlog) {
		t.Fatalf("paused conversation has %d queued, want %d", q, backlog)
	}
	if withPaused > 3*baseline+2*time.Second {
		t.Fatalf("a paused backlog slowed the lane: %v, alone %v", withPaused, baseline)
	}
}

// TestPausedTransactionalCost: the transactional lane has one consumer for
// every conversation; a paused conversation with more queued messages than
// its MaxAckPending must not starve the others (its messages are parked on
// the bulk subject, each handled once).
func TestPausedTransactionalCost(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.conversation(t, "txbig", dispatch.ChannelEmail, wire.LaneTransactional)
	b.conversation(t, "txclean", dispatch.ChannelEmail, wire.LaneTransactional)
	b.pause(t, "txbig", nil)
	const backlog, n = 5000, 500
	b.activate(t, "txbig", dispatch.ChannelEmail, backlog, 0)
	start := time.Now()
	b.activate(t, "txclean", dispatch.ChannelEmail, n, 0)
	waitFor(t, 30*time.Second, "clean delivered", func() bool { return b.rec.delivered("txclean") == n })
	took := time.Since(start)
	waitFor(t, 30*time.Second, "the paused backlog parked", func() bool {
		return b.metric(t, "sluice_orchestrator_held_total", `lane="transactional"`) == backlog
	})
	time.Sleep(1500 * time.Millisecond)
	held := b.metric(t, "sluice_orchestrator_held_total")
	t.Logf("%d transactional messages in %v beside a paused %d-message transactional conversation; paused messages handled %v times in all",
		n, took.Round(time.Millisecond), backlog, held)
	if held > backlog+100 || b.rec.delivered("txbig") != 0 || b.queued(t, "txbig") != backlog {
		t.Fatalf("paused messages cycled: held %v, delivered %d, queued %d", held, b.rec.delivered("txbig"), b.queued(t, "txbig"))
	}
	b.must(t, "POST", "/v1/admin/conversations/acme/txbig/resume", nil, http.StatusOK)
	waitFor(t, 60*time.Second, "the resumed backlog delivered", func() bool { return b.rec.delivered("txbig") == backlog })
	if d := b.rec.duplicates("txbig"); d != 0 {
		t.Fatalf("%d duplicated", d)
	}
}

// TestStopPurges: a stop, even two at once as two API replicas would, purges
// the queued messages and the accounting identity holds exactly.
func TestStopPurges(t *testing.T) {
	t.Parallel()
	b := setup(t, 2*time.Millisecond)
	for _, lane := range []wire.Lane{wire.LaneBulk, wire.LaneTransactional} {
		conv := "stop-" + string(lane)
		const n = 3000
		b.conversation(t, conv, dispatch.ChannelEmail, lane)
		b.activate(t, conv, dispatch.ChannelEmail, n, 10)
		waitFor(t, 10*time.Second, "first deliveries", func() bool { return b.rec.delivered(conv) >= 100 })

		var wg sync.WaitGroup
		purged := make([]uint64, 2)
		for i := range purged {
			wg.Go(func() {
				code, _, data := b.do(t, "POST", "/v1/admin/conversations/acme/"+conv+"/stop", map[string]string{"reason": "bad list"})
				var ci control.ConversationInfo
				if code != http.StatusOK || json.Unmarshal(data, &ci) != nil || ci.Purged == nil || ci.State != control.StateStopped {
					t.Errorf("stop: %d %s", code, data)
					return
				}
				purged[i] = *ci.Purged
			})
		}
		wg.Wait()
		total := purged[0] + purged[1]
		if total == 0 {
			t.Fatalf("%s: nothing purged", lane)
		}
		if q := b.queued(t, conv); q != 0 {
			t.Fatalf("%s: %d still queued after stop", lane, q)
		}
		// Stopping again is harmless; a stopped conversation stays stopped.
		data := b.must(t, "POST", "/v1/admin/conversations/acme/"+conv+"/stop", nil, http.StatusOK)
		if !strings.Contains(string(data), `"purged":0`) {
			t.Fatalf("second stop: %s", data)
		}
		b.must(t, "POST", "/v1/admin/conversations/acme/"+conv+"/resume", nil, http.StatusConflict)
		b.must(t, "POST", "/v1/conversations/"+conv+"/activations", []map[string]string{{"to": "x@example.com"}}, http.StatusConflict)

		var c api.Counts
		waitFor(t, 15*time.Second, "counts at rest", func() bool {
			c = b.counts(t, conv)
			return c.Pending == 0 && c.Delivered == int64(b.rec.delivered(conv))
		})
		if c.Accepted != n || c.Purged != int64(total) || c.Accepted != c.Delivered+c.Invalid+c.Failed+c.Purged {
			t.Fatalf("%s: counts %+v (purged %v by the two stops): accepted != delivered + invalid + failed + purged", lane, c, purged)
		}
		t.Logf("%s: %d accepted = %d delivered + %d invalid + %d failed + %d purged (%d + %d by two concurrent stops)",
			lane, c.Accepted, c.Delivered, c.Invalid, c.Failed, c.Purged, purged[0], purged[1])
	}
	b.must(t, "POST", "/v1/admin/conversations/acme/nope/stop", nil, http.StatusNotFound)
}

// TestOpenAPIDescribesEveryRoute: the node's routes, admin ones included,
// are exactly those api/openapi.json describes.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	if err := api.CheckOpenAPI(b.n.HTTP.Routes()); err != nil {
		t.Fatal(err)
	}
}

// TestStopSweep: messages that reach a stopped conversation after its purge
// (an activation request still publishing) are swept by the workers and
// counted as purged.
func TestStopSweep(t *testing.T) {
	t.Parallel()
	b := setup(t, 0, func(c *node.Config) { c.SweepInterval, c.SweepMinAge = 200*time.Millisecond, time.Second })
	for _, lane := range []wire.Lane{wire.LaneBulk, wire.LaneTransactional} {
		conv := "late-" + string(lane)
		b.conversation(t, conv, dispatch.ChannelEmail, lane)
		b.activate(t, conv, dispatch.ChannelEmail, 10, 0)
		waitFor(t, 10*time.Second, "delivered", func() bool { return b.rec.delivered(conv) == 10 })
		b.must(t, "POST", "/v1/admin/conversations/acme/"+conv+"/stop", nil, http.StatusOK)
		// As a request that passed the state check before the stop would.
		pub := orchestrator.NewPublisher(b.n.JS, 0)
		for i := range 25 {
			a := &wire.Activation{ID: fmt.Sprintf("%s-%d", conv, i), Tenant: "acme", Conversation: conv, Lane: lane,
				Channel: string(dispatch.ChannelEmail), To: "x@example.com", EnqueuedAt: time.Now()}
			if err := pub.Publish(t.Context(), a); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := b.db.Pool.Exec(t.Context(), `UPDATE conversations SET accepted = accepted + 25 WHERE id = $1`, conv); err != nil {
			t.Fatal(err)
		}
		var c api.Counts
		waitFor(t, 15*time.Second, "swept "+conv, func() bool {
			c = b.counts(t, conv)
			q := b.queued(t, conv)
			if testing.Verbose() {
				t.Logf("%s: purged %d, queued %d", conv, c.Purged, q)
			}
			return c.Purged == 25 && q == 0
		})
		if c.Accepted != 35 || c.Delivered != 10 || c.Accepted != c.Delivered+c.Invalid+c.Failed+c.Purged || b.rec.delivered(conv) != 10 {
			t.Fatalf("%s: counts %+v, %d sent", lane, c, b.rec.delivered(conv))
		}
	}
}

// TestIntakePause: while intake is paused the API answers 503 with
// Retry-After; after resume it accepts again.
func TestIntakePause(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.conversation(t, "c", dispatch.ChannelEmail, wire.LaneBulk)
	b.must(t, "PUT", "/v1/admin/intake", map[string]bool{"paused": true}, http.StatusOK)
	var code int
	var hdr http.Header
	accepted := 0 // a request may still be accepted before every process sees the pause
	waitFor(t, time.Second, "503 from the API", func() bool {
		code, hdr, _ = b.do(t, "POST", "/v1/conversations/c/activations", []map[string]string{{"to": "a@example.com"}})
		if code == http.StatusAccepted {
			accepted++
		}
		return code == http.StatusServiceUnavailable
	})
	if hdr.Get("Retry-After") == "" {
		t.Fatalf("503 without Retry-After")
	}
	data := b.must(t, "GET", "/v1/admin/intake", nil, http.StatusOK)
	if !strings.Contains(string(data), `"paused":true`) {
		t.Fatalf("intake: %s", data)
	}
	b.must(t, "PUT", "/v1/admin/intake", map[string]bool{"paused": false}, http.StatusOK)
	waitFor(t, time.Second, "202 from the API", func() bool {
		code, _, _ = b.do(t, "POST", "/v1/conversations/c/activations", []map[string]string{{"to": "a@example.com"}})
		return code == http.StatusAccepted
	})
	accepted++
	waitFor(t, 10*time.Second, "delivery", func() bool { return b.rec.delivered("c") == accepted })
}

// TestChannelDisable: a disabled channel's messages wait, neither sent nor
// failed, in both lanes, and flow once it is enabled; other channels flow
// meanwhile.
func TestChannelDisable(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.must(t, "PUT", "/v1/admin/channels/sms", map[string]bool{"disabled": true}, http.StatusOK)
	waitFor(t, 10*time.Second, "the workers to learn that sms is disabled", func() bool {
		return b.n.Service.Controls().ChannelDisabled(dispatch.ChannelSMS)
	})
	b.conversation(t, "sms-bulk", dispatch.ChannelSMS, wire.LaneBulk)
	b.conversation(t, "sms-tx", dispatch.ChannelSMS, wire.LaneTransactional)
	b.conversation(t, "mail", dispatch.ChannelEmail, wire.LaneBulk)
	const n = 500
	b.activate(t, "sms-bulk", dispatch.ChannelSMS, n, 0)
	b.activate(t, "sms-tx", dispatch.ChannelSMS, 50, 0)
	b.activate(t, "mail", dispatch.ChannelEmail, n, 0)
	waitFor(t, 10*time.Second, "email flowing", func() bool { return b.rec.delivered("mail") == n })
	time.Sleep(1500 * time.Millisecond)
	if d := b.rec.delivered("sms-bulk") + b.rec.delivered("sms-tx"); d != 0 {
		t.Fatalf("%d sms delivered while sms is disabled", d)
	}
	if c := b.counts(t, "sms-bulk"); c.Failed+c.Invalid != 0 {
		t.Fatalf("disabled channel's messages failed: %+v", c)
	}
	data := b.must(t, "GET", "/v1/admin/channels", nil, http.StatusOK)
	if !strings.Contains(string(data), `"channel":"sms","disabled":true`) {
		t.Fatalf("channels: %s", data)
	}
	b.must(t, "PUT", "/v1/admin/channels/sms", map[string]bool{"disabled": false}, http.StatusOK)
	waitFor(t, 15*time.Second, "sms flowing after enable", func() bool {
		return b.rec.delivered("sms-bulk") == n && b.rec.delivered("sms-tx") == 50
	})
	b.must(t, "PUT", "/v1/admin/channels/fax", map[string]bool{"disabled": true}, http.StatusBadRequest)
}

// TestEnvFence: a process configured for another environment than the one
// recorded in the database or in NATS refuses to start, naming both.
func TestEnvFence(t *testing.T) {
	t.Parallel()
	b := setup(t, 0) // records dev in both
	rec := &recorder{byID: map[string]int{}, conv: map[string]int{}}
	_, err := node.Start(t.Context(), config(b.nats, b.db, rec, control.EnvStaging), quietLogger(t))
	if !errors.Is(err, control.ErrEnvMismatch) || !strings.Contains(err.Error(), `"staging"`) || !strings.Contains(err.Error(), `"dev"`) || !strings.Contains(err.Error(), "database") {
		t.Fatalf("start as staging on a dev database: %v", err)
	}
	// A fresh database with the dev NATS: NATS says no.
	db2 := pgtest.New(t)
	_, err = node.Start(t.Context(), config(b.nats, db2, rec, control.EnvProduction), quietLogger(t))
	if !errors.Is(err, control.ErrEnvMismatch) || !strings.Contains(err.Error(), "NATS") || !strings.Contains(err.Error(), `"production"`) {
		t.Fatalf("start as production on dev NATS: %v", err)
	}
	// Refusals of tools that write test data.
	if err := control.RefuseProduction(t.Context(), b.n.JS, b.n.Pool, false); err != nil {
		t.Fatalf("dev deployment refused: %v", err)
	}
	if err := control.CheckEnv(t.Context(), nil, db2.Pool, control.EnvProduction, "test"); err != nil {
		t.Fatal(err)
	}
	if err := control.RefuseProduction(t.Context(), nil, db2.Pool, false); !errors.Is(err, control.ErrProduction) {
		t.Fatalf("production database not refused: %v", err)
	}
	if err := control.RefuseProduction(t.Context(), nil, db2.Pool, true); err != nil {
		t.Fatalf("override: %v", err)
	}
	if err := control.CheckEnv(t.Context(), nil, nil, "prod", "test"); !errors.Is(err, control.ErrInvalid) {
		t.Fatalf("bad env name: %v", err)
	}
}

// TestQuarantine: a 90%-invalid conversation is quarantined automatically
// and listed, while a clean conversation of the same lane is delivered in
// full; an operator resumes it (it trips again) and stops it, and the
// accounting identity holds.
func TestQuarantine(t *testing.T) {
	t.Parallel()
	b := setup(t, 0, func(c *node.Config) {
		c.Quarantine = orchestrator.QuarantineConfig{Ratio: 0.5, Window: 1000}
	})
	b.conversation(t, "bad", dispatch.ChannelEmail, wire.LaneBulk)
	b.conversation(t, "good", dispatch.ChannelEmail, wire.LaneBulk)
	n := 20000
	if testing.Short() {
		n = 5000
	}
	b.activateFunc(t, "bad", dispatch.ChannelEmail, n, func(i int) bool { return i%10 != 0 })
	start := time.Now()
	b.activate(t, "good", dispatch.ChannelEmail, n, 0)

	var list control.ConversationList
	waitFor(t, 30*time.Second, "bad quarantined", func() bool {
		data := b.must(t, "GET", "/v1/admin/conversations?state=quarantined", nil, http.StatusOK)
		list = control.ConversationList{}
		return json.Unmarshal(data, &list) == nil && len(list.Conversations) == 1
	})
	q := list.Conversations[0]
	if q.Conversation != "bad" || q.UpdatedBy != control.ActorQuarantine || !strings.Contains(q.Reason, "invalid addresses") {
		t.Fatalf("quarantined: %+v", q)
	}
	waitFor(t, 60*time.Second, "good delivered", func() bool { return b.rec.delivered("good") == n })
	t.Logf("good: %d delivered in %v beside the quarantined conversation; reason: %s", n, time.Since(start).Round(time.Millisecond), q.Reason)
	if got := b.metric(t, "sluice_orchestrator_quarantines_total"); got != 1 {
		t.Fatalf("quarantines_total = %v", got)
	}
	time.Sleep(500 * time.Millisecond)
	c := b.counts(t, "bad")
	if processed := c.Delivered + c.Invalid; processed > 3000 || b.queued(t, "bad") == 0 {
		t.Fatalf("bad processed %d of %d after its quarantine", processed, n)
	}

	// Resumed, it trips again after a fresh window.
	b.must(t, "POST", "/v1/admin/conversations/acme/bad/resume", nil, http.StatusOK)
	waitFor(t, 30*time.Second, "bad quarantined again", func() bool {
		st, err := b.n.Control.Conversation(t.Context(), "acme", "bad")
		return err == nil && st.Value.State == control.StateQuarantined
	})
	b.must(t, "POST", "/v1/admin/conversations/acme/bad/stop", nil, http.StatusOK)
	waitFor(t, 15*time.Second, "counts at rest", func() bool {
		c = b.counts(t, "bad")
		return c.Pending == 0 && c.Delivered == int64(b.rec.delivered("bad"))
	})
	if c.Accepted != int64(n) || c.Accepted != c.Delivered+c.Invalid+c.Failed+c.Purged || c.Purged == 0 {
		t.Fatalf("bad: counts %+v", c)
	}
}

func jetstreamSubjects(filter string) jetstream.StreamInfoOpt {
	return jetstream.WithSubjectFilter(filter)
}
