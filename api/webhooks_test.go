package api

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestWebhooksRoutes: POST registers an endpoint and shows its secret once
// (whsec_, Standard Webhooks), audited without it; GET lists and shows it
// without the secret; another tenant's key gets 404 on it; DELETE removes
// it, audited; bad input is 422 and changes nothing; a replay outside the
// stream's retention is refused.
func TestWebhooksRoutes(t *testing.T) {
	t.Parallel()
	f := setup(t)
	admin, other := f.key("acme", ScopeAdmin), f.key("globex", ScopeAdmin)
	ct := header("Content-Type", "application/json")
	body := func(s string) *strings.Reader { return strings.NewReader(s) }

	r := f.do(http.MethodPost, "/v1/webhooks", admin, body(`{"url":"http://127.0.0.1:9/hook","events":["purged","delivered","delivered"]}`), ct)
	if r.status != http.StatusCreated {
		t.Fatalf("POST %d %s", r.status, r.body)
	}
	ep := r.json(t)
	id, _ := ep["id"].(string)
	secret, _ := ep["secret"].(string)
	if !strings.HasPrefix(secret, "whsec_") || r.header.Get("Location") != "/v1/webhooks/"+id || ep["tenant"] != "acme" {
		t.Fatalf("registration %s (Location %q)", r.body, r.header.Get("Location"))
	}
	if evs := ep["events"].([]any); len(evs) != 2 || evs[0] != "delivered" || evs[1] != "purged" {
		t.Fatalf("events %v, want deduplicated in document order", evs)
	}
	var audited string
	if err := f.db.Pool.QueryRow(context.Background(), `SELECT key || ' ' || new_value::text FROM control_audit ORDER BY id DESC LIMIT 1`).Scan(&audited); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(audited, "webhook.acme."+id) || strings.Contains(audited, secret) || !strings.HasSuffix(f.lastActor(), "@acme") {
		t.Fatalf("audit %q", audited)
	}
	for _, path := range []string{"/v1/webhooks", "/v1/webhooks/" + id} {
		g := f.do(http.MethodGet, path, admin, nil)
		if g.status != http.StatusOK || !strings.Contains(string(g.body), id) || strings.Contains(string(g.body), "whsec_") {
			t.Fatalf("GET %s: %d %s", path, g.status, g.body)
		}
	}
	f.do(http.MethodGet, "/v1/webhooks/"+id, other, nil).problem(t, http.StatusNotFound, ProblemNotFound)
	f.do(http.MethodDelete, "/v1/webhooks/"+id, other, nil).problem(t, http.StatusNotFound, ProblemNotFound)
	if g := f.do(http.MethodGet, "/v1/webhooks", other, nil); strings.Contains(string(g.body), id) {
		t.Fatalf("another tenant lists acme's endpoint: %s", g.body)
	}

	audits := f.auditRows()
	for _, bad := range []string{
		`{"url":"http://127.0.0.1:9/hook","events":[]}`,
		`{"url":"http://127.0.0.1:9/hook","events":["opened"]}`,
		`{"url":"ftp://example.com/hook","events":["delivered"]}`,
		`{"url":"https://user:pw@example.com/hook","events":["delivered"]}`,
	} {
		f.do(http.MethodPost, "/v1/webhooks", admin, body(bad), ct).problem(t, http.StatusUnprocessableEntity, ProblemInvalidRequest)
	}
	old := time.Now().Add(-30 * 24 * time.Hour)
	f.do(http.MethodPost, "/v1/webhooks/"+id+"/replay", admin,
		body(`{"from":"`+old.Format(time.RFC3339)+`","to":"`+old.Add(time.Hour).Format(time.RFC3339)+`"}`), ct).problem(t, http.StatusUnprocessableEntity, ProblemInvalidRequest)
	if f.auditRows() != audits {
		t.Fatal("refused requests were audited")
	}

	d := f.do(http.MethodDelete, "/v1/webhooks/"+id, admin, nil)
	if d.status != http.StatusOK || d.json(t)["id"] != id || f.auditRows() != audits+1 {
		t.Fatalf("DELETE %d %s", d.status, d.body)
	}
	f.do(http.MethodGet, "/v1/webhooks/"+id, admin, nil).problem(t, http.StatusNotFound, ProblemNotFound)
}
