package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/internal/apitest"
	"github.com/sluicehq/sluice/internal/natstest"
	"github.com/sluicehq/sluice/internal/pgtest"
	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/control"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// accept is every channel's provider: it accepts every message.
type accept struct{}

func (accept) Send(context.Context, *dispatch.Message) error { return nil }

// deployment is a NATS server, a database and the nodes started on them.
type deployment struct {
	natsURL string
	db      *pgtest.DB
	nodes   []*node.Node
	base    string // the first node's HTTP address
}

// start starts a deployment of one API and worker node, plus extra
// worker-only nodes, in env (dev: keyless requests are tenant demo's
// admin and the operator).
func start(t *testing.T, env string, extraWorkers int) *deployment {
	t.Helper()
	_, url := natstest.Start(t)
	d := &deployment{natsURL: url, db: pgtest.New(t)}
	for i := range 1 + extraWorkers {
		cfg := node.Config{
			NATSURL: url, DatabaseURL: d.db.URL, HTTPAddr: "127.0.0.1:0", Migrate: false,
			Worker: true, API: i == 0, Env: env, Name: fmt.Sprintf("console-test-%d", i),
			Providers:         map[dispatch.Channel]dispatch.Provider{dispatch.ChannelEmail: accept{}, dispatch.ChannelSMS: accept{}, dispatch.ChannelPush: accept{}},
			StopSettle:        300 * time.Millisecond,
			HeartbeatInterval: 300 * time.Millisecond,
			ConsoleInterval:   500 * time.Millisecond,
			Quarantine:        orchestrator.QuarantineConfig{Ratio: 0.5, Window: 200},
		}
		if env == control.EnvDev {
			cfg.DevTenant = "demo"
		}
		cfg.ErrorLog.MaskKey = []byte("console-test-mask-key-0123456789")
		cfg.Pipeline.Bulk.Workers = 4
		n, err := node.Start(t.Context(), cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_ = n.Stop(ctx)
		})
		d.nodes = append(d.nodes, n)
	}
	d.base = "http://" + d.nodes[0].HTTP.Addr()
	return d
}

func (d *deployment) must(t *testing.T, method, path, key string, body any, want int) []byte {
	t.Helper()
	return apitest.Must(t, d.base, method, path, key, body, want)
}

// campaign creates a conversation and sends it n activations, those for
// which bad says so with an invalid address.
func (d *deployment) campaign(t *testing.T, key, id, name, channel string, n int, bad func(i int) bool) {
	t.Helper()
	tpl := map[string]string{"subject": "Hello", "text": "Hello {{.name}}"}
	if channel == "sms" {
		delete(tpl, "subject")
	}
	d.must(t, "POST", "/v1/conversations", key, map[string]any{"id": id, "name": name, "channel": channel, "lane": "bulk", "template": tpl}, http.StatusCreated)
	rows := make([]map[string]any, n)
	for i := range rows {
		to := fmt.Sprintf("user%d@example.com", i)
		if channel == "sms" {
			to = fmt.Sprintf("+33612%06d", i)
		}
		if bad(i) {
			to = "12345"
		}
		rows[i] = map[string]any{"to": to, "vars": map[string]string{"name": "n" + strconv.Itoa(i)}}
	}
	d.must(t, "POST", "/v1/conversations/"+id+"/activations", key, rows, http.StatusAccepted)
}

// counts reads a conversation's exact counts through the campaign API.
func (d *deployment) counts(t *testing.T, key, id string) api.Counts {
	t.Helper()
	var c struct{ Counts api.Counts }
	if err := json.Unmarshal(d.must(t, "GET", "/v1/conversations/"+id, key, nil, http.StatusOK), &c); err != nil {
		t.Fatal(err)
	}
	return c.Counts
}

// quarantinedAt reads when each conversation was quarantined from the audit
// trail.
func (d *deployment) quarantinedAt(t *testing.T) map[string]time.Time {
	t.Helper()
	var list api.AuditList
	if err := json.Unmarshal(d.must(t, "GET", "/v1/admin/audit?actor=quarantine", "", nil, http.StatusOK), &list); err != nil {
		t.Fatal(err)
	}
	out := map[string]time.Time{}
	for _, e := range list.Entries {
		if tenant, conv, ok := control.ConversationOfKey(e.Key); ok {
			out[tenant+"/"+conv] = e.At
		}
	}
	return out
}

// TestConsoleBrowser drives headless Chromium through the console of a dev
// deployment (an API and worker node and a second worker) during a replayed
// incident: 18,000 messages to four conversations, 95 % of them invalid,
// and a clean campaign of 2,000, with quarantine on. The storm view flags
// each offending conversation within 5s of its quarantine (the audit
// entry's time); one is stopped through its page, which says how many
// queued messages it will purge and then the purged count, equal to the
// API's; the error-log mode is switched off from the overview and every
// worker's heartbeat reports it there; the clean campaign's counts converge
// on its page; a conversation named <script> renders as text. Any console
// error, exception or dialog fails the test. Screenshots of each page are
// written (EnvScreenshots).
func TestConsoleBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("the browser test runs in make test-browser")
	}
	alloc := newAllocator(t)
	d := start(t, control.EnvDev, 1)
	b := newBrowser(t, alloc, d.base, false)

	b.open("/console/storm")
	b.clean("storm view, empty")
	storms := []string{"storm-a", "storm-b", "storm-c", "storm-d"}
	for i, id := range storms {
		d.campaign(t, "", id, fmt.Sprintf("Winter promo %c", 'A'+i), "sms", 4500, func(i int) bool { return i%20 != 0 })
	}
	d.campaign(t, "", "clean", "Order confirmations", "email", 2000, func(int) bool { return false })
	d.campaign(t, "", "xss", "<script>alert(1)</script>", "email", 3, func(int) bool { return false })

	stormView(t, b, d, storms)
	stopThroughPage(t, b, d, "storm-a")
	errorLogOff(t, b, d)
	converge(t, b, d, "clean", 2000)
	escaped(t, b)
	auditPage(t, b, storms)
}

// stormView waits until every storm conversation is flagged quarantined in
// the storm view, and checks each appeared within 5s of its quarantine.
func stormView(t *testing.T, b *browser, d *deployment, storms []string) {
	t.Helper()
	seen := map[string]time.Time{}
	deadline := time.Now().Add(90 * time.Second)
	for len(seen) < len(storms) {
		if time.Now().After(deadline) {
			t.Fatalf("the storm view flagged only %v of %v as quarantined", seen, storms)
		}
		flagged := eval[[]string](b, `Array.from(document.querySelectorAll('tr.quarantined [data-quarantined-at]')).map(e => e.closest('tr').dataset.conv)`)
		now := time.Now()
		for _, c := range flagged {
			if _, ok := seen[c]; !ok {
				seen[c] = now
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	at := d.quarantinedAt(t)
	for _, id := range storms {
		q, ok := at["demo/"+id]
		if !ok {
			t.Fatalf("%s flagged but no quarantine in the audit trail: %v", id, at)
		}
		if lag := seen["demo/"+id].Sub(q); lag > 5*time.Second {
			t.Errorf("%s: shown %v after its quarantine, want within 5s", id, lag)
		} else {
			t.Logf("%s: flagged in the storm view %v after its quarantine", id, lag.Round(time.Millisecond))
		}
	}
	text := eval[string](b, `document.querySelector('tr[data-conv="demo/storm-b"]').textContent`)
	for _, want := range []string{"Winter promo B", "Quarantined", "after creation", "went through", "held", "not_e164"} {
		if !strings.Contains(text, want) {
			t.Errorf("storm row of storm-b lacks %q: %s", want, text)
		}
	}
	b.shot("storm")
	b.clean("storm view")
}

// stopThroughPage stops a conversation from its page: the confirmation
// says how many queued messages will be purged, the page then says how many
// were, which is the API's purged count, and the counts show it.
func stopThroughPage(t *testing.T, b *browser, d *deployment, id string) {
	t.Helper()
	b.open("/console/conversations/demo/" + id)
	b.waitJS("queued messages", `document.getElementById('queued').textContent !== '0'`, 10*time.Second)
	b.do("click stop", chromedp.Click("#action-stop"))
	b.waitJS("the confirmation", `document.getElementById('confirm-stop').open`, 5*time.Second)
	confirm := eval[string](b, `document.getElementById('confirm-text').textContent`)
	queued := eval[string](b, `document.getElementById('queued').textContent`)
	if !strings.Contains(confirm, queued+" queued message(s) will be purged") {
		t.Errorf("confirmation %q does not say the %s queued messages", confirm, queued)
	}
	b.do("confirm the stop", chromedp.Click("#confirm-yes"))
	b.waitJS("the stop's answer", `document.getElementById('flash').textContent.startsWith('Stopped: ')`, 20*time.Second)
	flash := eval[string](b, `document.getElementById('flash').textContent`)
	var purged int64
	if _, err := fmt.Sscanf(flash, "Stopped: %d queued", &purged); err != nil || purged == 0 {
		t.Fatalf("flash %q: want the purged count (%v)", flash, err)
	}
	if c := d.counts(t, "", id); c.Purged != purged {
		t.Errorf("the page says %d purged, the API %d", purged, c.Purged)
	}
	b.waitJS("the purged count on the page", `document.getElementById('count-purged').textContent.replaceAll(',', '') === `+jsString(strconv.FormatInt(purged, 10)), 10*time.Second)
	b.waitJS("the stopped state", `document.getElementById('conv-state-now').textContent === 'stopped'`, 10*time.Second)
	b.shot("conversation-stopped")
	b.clean("stop through the page")
}

// errorLogOff switches the error-log mode off from the overview and waits
// until every worker's heartbeat reports it there.
func errorLogOff(t *testing.T, b *browser, d *deployment) {
	t.Helper()
	b.open("/console/")
	b.waitJS("both workers", `document.querySelectorAll('td[data-col="errorlog-mode"]').length === 2`, 10*time.Second)
	b.do("switch the mode off", chromedp.SetValue("#mode", "off"), chromedp.Click("#mode-apply"))
	b.waitJS("every worker reporting off",
		`Array.from(document.querySelectorAll('td[data-col="errorlog-mode"]')).every(td => td.textContent === 'off')`, 10*time.Second)
	if mode := eval[string](b, `document.getElementById('mode-now').textContent`); !strings.HasPrefix(mode, "off, set by key:dev@demo") {
		t.Errorf("mode shown as %q", mode)
	}
	b.waitJS("the lanes' charts", `document.querySelectorAll('.lane polyline.rate[points*=","]').length === 2`, 10*time.Second)
	b.shot("overview")
	b.clean("error-log mode off")
}

// converge waits until a conversation's page shows every message counted.
func converge(t *testing.T, b *browser, d *deployment, id string, n int) {
	t.Helper()
	b.open("/console/conversations/demo/" + id)
	want := jsString(strconv.Itoa(n))
	b.waitJS("the counts to converge", `document.getElementById('count-pending').textContent === '0' && `+
		`document.getElementById('count-delivered').textContent.replaceAll(',', '') === `+want+
		` && document.getElementById('count-accepted').textContent.replaceAll(',', '') === `+want, 30*time.Second)
	if c := d.counts(t, "", id); c.Accepted != int64(n) || c.Delivered != int64(n) || c.Pending != 0 {
		t.Errorf("API counts of %s: %+v", id, c)
	}
	b.shot("conversation")
	b.clean("counts converge")
}

// escaped checks that a conversation named <script> renders as text.
func escaped(t *testing.T, b *browser) {
	t.Helper()
	b.open("/console/conversations?q=xss")
	name := eval[string](b, `document.querySelector('tr[data-conv="demo/xss"] th a').textContent`)
	if name != "<script>alert(1)</script>" {
		t.Errorf("the name renders as %q", name)
	}
	if n := eval[int](b, `document.scripts.length`); n != 1 {
		t.Errorf("%d script elements on the page, want the console's own", n)
	}
	b.open("/console/conversations/demo/xss")
	if name := eval[string](b, `document.getElementById('conv-name').textContent`); name != "<script>alert(1)</script>" {
		t.Errorf("the detail page shows the name as %q", name)
	}
	b.open("/console/conversations")
	b.shot("conversations")
	b.clean("escaping")
}

// auditPage filters the audit trail by actor.
func auditPage(t *testing.T, b *browser, storms []string) {
	t.Helper()
	b.open("/console/audit?actor=quarantine")
	if n := eval[int](b, `document.querySelectorAll('tr[data-audit]').length`); n != len(storms) {
		t.Errorf("audit filtered by actor quarantine: %d rows, want %d", n, len(storms))
	}
	b.open("/console/audit")
	text := eval[string](b, `document.querySelector('table.audit').textContent`)
	for _, want := range []string{"key:dev@demo", "conversation.demo.storm-a", `"state": "stopped"`, `"mode": "off"`} {
		if !strings.Contains(text, want) {
			t.Errorf("audit page lacks %q", want)
		}
	}
	b.shot("audit")
	b.clean("audit")
}

// signIn signs in with key on the sign-in page and waits for the next
// page or the refusal.
func (b *browser) signIn(key string) {
	b.t.Helper()
	b.open("/console/signin")
	b.do("sign in", chromedp.SetValue("#key", key), chromedp.Click("#signin"))
	b.waitJS("the next page", `document.readyState === 'complete' && document.querySelector('main h1') !== null && location.pathname !== '/console/signin' || document.getElementById('signin-message') !== null`, 10*time.Second)
}

// fetchStatus makes a request from the page with its session cookie, the
// CSRF header set to the JavaScript expression csrf, and returns the status.
func (b *browser) fetchStatus(method, path, csrf, body string) int {
	b.t.Helper()
	const js = `fetch(%s, {method: %s, headers: {'Content-Type': 'application/json', 'X-CSRF-Token': %s}, body: %s}).then(r => r.status)`
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf(js, jsString(path), jsString(method), csrf, body), chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatal(err)
	}
	return n
}

// checkTenantAdmin: signed in with acme's admin key, the console shows
// acme's conversations only, another tenant's is not found, and the
// session acts on the admin routes as the key.
func checkTenantAdmin(t *testing.T, b *browser) {
	t.Helper()
	b.open("/console/conversations")
	rows := eval[[]string](b, `Array.from(document.querySelectorAll('tr[data-conv]')).map(r => r.dataset.conv)`)
	if strings.Join(rows, " ") != "acme/acme-news" {
		t.Errorf("tenant admin's conversations: %v, want acme/acme-news only", rows)
	}
	b.open("/console/conversations/bravo/bravo-news")
	if h := eval[string](b, `document.querySelector('main h1').textContent`); h != "Not Found" {
		t.Errorf("another tenant's conversation: %q, want Not Found", h)
	}
	// The session acts on the admin routes as the key: the fleet's switch
	// is refused, its own conversation's pause is allowed, and a change
	// without the CSRF token is refused.
	if n := b.fetchStatus("PUT", "/v1/admin/errorlog", "document.body.dataset.csrf", `'{"mode":"off"}'`); n != http.StatusForbidden {
		t.Errorf("tenant session PUT errorlog: %d, want 403", n)
	}
	if n := b.fetchStatus("POST", "/v1/admin/conversations/acme/acme-news/pause", "'forged'", "null"); n != http.StatusForbidden {
		t.Errorf("tenant session pause without the CSRF token: %d, want 403", n)
	}
	if n := b.fetchStatus("POST", "/v1/admin/conversations/acme/acme-news/pause", "document.body.dataset.csrf", "null"); n != http.StatusOK {
		t.Errorf("tenant session pause: %d, want 200", n)
	}
	if n := b.fetchStatus("POST", "/v1/conversations/acme-news/activations", "document.body.dataset.csrf", `'[{"to":"x@example.com"}]'`); n != http.StatusForbidden {
		t.Errorf("tenant session sending activations: %d, want 403 (a session carries admin only)", n)
	}
	b.open("/console/audit")
	if text := eval[string](b, `document.querySelector('table.audit').textContent`); !strings.Contains(text, "key:") || !strings.Contains(text, "@acme") || strings.Contains(text, "errorlog.mode") {
		t.Errorf("tenant admin's audit: %s", text)
	}
}

// TestConsoleSignIn drives the console of a deployment outside dev: without
// a credential only the sign-in page answers; a key without the admin scope
// is refused; a tenant's admin key sees its tenant's conversations only and
// no fleet-wide switch (and the fleet's routes refuse its session); another
// tenant's conversation is not found; an operator sees both tenants; a
// change without the session's CSRF token is refused; signing out ends the
// session.
func TestConsoleSignIn(t *testing.T) {
	if testing.Short() {
		t.Skip("the browser test runs in make test-browser")
	}
	alloc := newAllocator(t)
	d := start(t, "test", 0)
	ctx := t.Context()
	sendA, _, err := api.CreateAPIKey(ctx, d.db.Pool, "acme", "sender", []api.Scope{api.ScopeSend, api.ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	adminA, _, err := api.CreateAPIKey(ctx, d.db.Pool, "acme", "alice", []api.Scope{api.ScopeAdmin})
	if err != nil {
		t.Fatal(err)
	}
	sendB, _, err := api.CreateAPIKey(ctx, d.db.Pool, "bravo", "sender", []api.Scope{api.ScopeSend})
	if err != nil {
		t.Fatal(err)
	}
	operator, _, err := api.CreateOperatorKey(ctx, d.db.Pool, "oncall")
	if err != nil {
		t.Fatal(err)
	}
	d.campaign(t, sendA, "acme-news", "Acme news", "email", 5, func(int) bool { return false })
	d.campaign(t, sendB, "bravo-news", "Bravo news", "email", 5, func(int) bool { return false })

	b := newBrowser(t, alloc, d.base, false)
	b.allowStatus = true // refusals answer 4xx on purpose
	for _, path := range []string{"/console/", "/console/storm", "/console/conversations", "/console/audit", "/console/conversations/acme/acme-news"} {
		b.open(path)
		if u := eval[string](b, `location.pathname`); u != "/console/signin" || eval[bool](b, `document.querySelector('nav') !== null`) {
			t.Errorf("%s without a credential: at %s, want the sign-in page alone", path, u)
		}
	}
	b.shot("signin")
	b.signIn(sendA)
	if msg := eval[string](b, `(document.getElementById('signin-message') || {}).textContent || ''`); !strings.Contains(msg, "admin scope") {
		t.Errorf("a send key's sign-in: %q, want a refusal naming the admin scope", msg)
	}
	b.signIn("sk_acme_0123456789abcdef_" + strings.Repeat("0", 48))
	if msg := eval[string](b, `(document.getElementById('signin-message') || {}).textContent || ''`); !strings.Contains(msg, "not valid") {
		t.Errorf("a wrong key's sign-in: %q", msg)
	}

	b.signIn(adminA)
	if u := eval[string](b, `location.pathname`); u != "/console/" {
		t.Fatalf("tenant admin signed in at %s", u)
	}
	if eval[bool](b, `document.getElementById('mode') !== null || document.body.textContent.includes('Pause intake')`) {
		t.Error("a tenant admin sees a fleet-wide switch")
	}
	checkTenantAdmin(t, b)
	b.shot("tenant-admin")
	b.do("sign out", chromedp.Click(".signout button"))
	b.waitJS("the sign-in page", `location.pathname === '/console/signin'`, 10*time.Second)
	b.open("/console/")
	if u := eval[string](b, `location.pathname`); u != "/console/signin" {
		t.Errorf("after sign-out: at %s", u)
	}

	b.signIn(operator)
	b.open("/console/conversations")
	if rows := eval[[]string](b, `Array.from(document.querySelectorAll('tr[data-conv]')).map(r => r.dataset.conv).sort()`); strings.Join(rows, " ") != "acme/acme-news bravo/bravo-news" {
		t.Errorf("operator's conversations: %v", rows)
	}
	b.open("/console/")
	if !eval[bool](b, `document.getElementById('mode') !== null`) {
		t.Error("the operator has no error-log switch")
	}
	b.clean("sign-in")
}
