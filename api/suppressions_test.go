package api

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/wire"
)

// TestSuppressionsRoutes: POST adds one entry per normalised address (a
// second spelling answers 200 with the stored entry), audited with the key;
// GET looks it up and lists it by hash, never showing the address; DELETE
// removes it (idempotently) and is audited; one tenant never sees
// another's; bad input is 422 and changes nothing.
func TestSuppressionsRoutes(t *testing.T) {
	t.Parallel()
	f := setup(t)
	admin, read, other := f.key("acme", ScopeAdmin), f.key("acme", ScopeRead), f.key("globex", ScopeAdmin, ScopeRead)
	body := func(s string) *strings.Reader { return strings.NewReader(s) }
	ct := header("Content-Type", "application/json")

	r := f.do(http.MethodPost, "/v1/suppressions", admin, body(`{"address":" Ann@Example.com","reason":"asked by phone"}`), ct)
	if r.status != http.StatusCreated {
		t.Fatalf("POST %d %s", r.status, r.body)
	}
	created := r.json(t)
	if created["kind"] != "email" || created["source"] != "api" || created["reason"] != "asked by phone" || strings.Contains(string(r.body), "ann") {
		t.Fatalf("entry %s", r.body)
	}
	if a := f.lastActor(); !strings.HasPrefix(a, "key:") || !strings.HasSuffix(a, "@acme") {
		t.Fatalf("audit actor %q", a)
	}
	audits := f.auditRows()
	r = f.do(http.MethodPost, "/v1/suppressions", admin, body(`{"address":"ann@example.COM"}`), ct)
	if r.status != http.StatusOK || r.json(t)["hash"] != created["hash"] || f.auditRows() != audits {
		t.Fatalf("second spelling: %d %s (audit rows %d, were %d)", r.status, r.body, f.auditRows(), audits)
	}

	lookup := func(key, addr string) map[string]any {
		return f.do(http.MethodGet, "/v1/suppressions?address="+url.QueryEscape(addr), key, nil).json(t)
	}
	if got := lookup(read, "ANN@example.com"); got["suppressed"] != true {
		t.Fatalf("lookup %v", got)
	}
	if got := lookup(other, "ann@example.com"); got["suppressed"] != false {
		t.Fatalf("another tenant sees acme's entry: %v", got)
	}
	list := f.do(http.MethodGet, "/v1/suppressions", read, nil).json(t)["suppressions"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["hash"] != created["hash"] {
		t.Fatalf("list %v", list)
	}

	for _, bad := range []string{`{"address":"   "}`, `{"address":"a@b.c","reason":"` + strings.Repeat("x", 65) + `"}`, `{"address":"a\u0000@b.c"}`} {
		f.do(http.MethodPost, "/v1/suppressions", admin, body(bad), ct).problem(t, http.StatusUnprocessableEntity, ProblemInvalidRequest)
	}
	f.do(http.MethodGet, "/v1/suppressions?limit=0", read, nil).problem(t, http.StatusBadRequest, ProblemInvalidRequest)

	r = f.do(http.MethodDelete, "/v1/suppressions", admin, body(`{"address":"ann@example.com"}`), ct)
	if r.status != http.StatusOK || r.json(t)["removed"] != true || f.auditRows() != audits+1 {
		t.Fatalf("DELETE %d %s", r.status, r.body)
	}
	r = f.do(http.MethodDelete, "/v1/suppressions", admin, body(`{"address":"ann@example.com"}`), ct)
	if r.status != http.StatusOK || r.json(t)["removed"] != false || f.auditRows() != audits+1 {
		t.Fatalf("second DELETE %d %s", r.status, r.body)
	}
	if got := lookup(read, "ann@example.com"); got["suppressed"] != false {
		t.Fatalf("still suppressed after DELETE: %v", got)
	}
}

// TestActivationExpiry: a row's expires_at travels in its envelope; a row
// without one gets acceptance time + the conversation's ttl; a conversation
// without a ttl leaves it unset.
func TestActivationExpiry(t *testing.T) {
	t.Parallel()
	f := setup(t)
	key := f.key("acme", ScopeSend, ScopeRead)
	r := f.postJSON("/v1/conversations", key, map[string]any{
		"id": "otp", "name": "otp", "channel": "sms", "lane": "transactional", "ttl": 300,
		"template": map[string]string{"text": "Your code is {{.code}}"},
	})
	if r.status != http.StatusCreated || r.json(t)["ttl"] != float64(300) {
		t.Fatalf("create %d %s", r.status, r.body)
	}
	f.conversation(key, "news")
	f.postJSON("/v1/conversations", key, map[string]any{"id": "neg", "name": "n", "channel": "sms", "lane": "bulk", "ttl": -1,
		"template": map[string]string{"text": "x"}}).problem(t, http.StatusUnprocessableEntity, ProblemInvalidRequest)

	before := time.Now()
	for _, tc := range []struct{ conv, rows string }{
		{"otp", `[{"to":"+447700900001"},{"to":"+447700900002","expires_at":"2030-01-02T03:04:05+01:00"}]`},
		{"news", `[{"to":"a@example.com"}]`},
	} {
		if r := f.activate(key, tc.conv, "", strings.NewReader(tc.rows), false); r.status != http.StatusAccepted {
			t.Fatalf("%s: %d %s", tc.conv, r.status, r.body)
		}
	}
	// otp is transactional (its own stream), news bulk.
	tx, err := f.js.Stream(context.Background(), orchestrator.TransactionalStreamName)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]*wire.Activation, 3)
	for i, at := range []struct {
		s   jetstream.Stream
		seq uint64
	}{{tx, 1}, {tx, 2}, {f.stream, 1}} {
		msg, err := at.s.GetMsg(context.Background(), at.seq)
		if err != nil {
			t.Fatal(err)
		}
		if got[i], err = wire.Decode(msg.Data, 0); err != nil {
			t.Fatal(err)
		}
	}
	if e := got[0].ExpiresAt; e == nil || e.Before(before.Add(300*time.Second)) || e.After(time.Now().Add(300*time.Second)) {
		t.Errorf("ttl row expires at %v, want acceptance + 300s", e)
	}
	if e := got[1].ExpiresAt; e == nil || !e.Equal(time.Date(2030, 1, 2, 2, 4, 5, 0, time.UTC)) {
		t.Errorf("row with expires_at: %v", e)
	}
	if got[2].ExpiresAt != nil {
		t.Errorf("a conversation without ttl: expires_at %v", got[2].ExpiresAt)
	}
}
