package api

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/wire"
)

// TestCreateConversation: stored in Postgres and published to the KV bucket;
// the same definition again is 200, a different one 409.
func TestCreateConversation(t *testing.T) {
	t.Parallel()
	f := setup(t)
	key := f.key("acme", ScopeSend, ScopeRead)
	def := map[string]any{
		"id": "summer-sale", "name": "Summer sale", "channel": "sms", "lane": "bulk",
		"template": map[string]string{"text": "Sale! {{.code}}"},
	}
	r := f.postJSON("/v1/conversations", key, def)
	if r.status != http.StatusCreated || r.header.Get("Location") != "/v1/conversations/summer-sale" {
		t.Fatalf("create: %d %v %s", r.status, r.header, r.body)
	}
	c := r.json(t)
	if c["id"] != "summer-sale" || c["state"] != StateActive || c["template_version"] != float64(1) || c["channel"] != "sms" {
		t.Fatalf("created = %v", c)
	}

	// The workers' view, from NATS KV.
	entry, err := f.c.kv.Get(context.Background(), ConversationKey("acme", "summer-sale"))
	if err != nil {
		t.Fatal(err)
	}
	var e ConversationEntry
	if err := json.Unmarshal(entry.Value(), &e); err != nil {
		t.Fatal(err)
	}
	if e.Tenant != "acme" || e.ID != "summer-sale" || e.Channel != "sms" || e.Lane != wire.LaneBulk ||
		e.Template.Text != "Sale! {{.code}}" || e.TemplateVersion != 1 || e.State != StateActive || e.UpdatedAt.IsZero() {
		t.Fatalf("KV entry = %+v", e)
	}
	st, err := f.c.kv.Status(context.Background())
	if err != nil || st.History() != 5 || st.Bucket() != ConversationsBucket {
		t.Fatalf("bucket status %v, %v", st, err)
	}

	if again := f.postJSON("/v1/conversations", key, def); again.status != http.StatusOK || again.json(t)["id"] != "summer-sale" {
		t.Fatalf("same definition again: %d %s", again.status, again.body)
	}
	def["name"] = "Another"
	f.postJSON("/v1/conversations", key, def).problem(t, http.StatusConflict, ProblemConversationExists)

	// Without an id, one is generated.
	gen := f.postJSON("/v1/conversations", key, map[string]any{
		"name": "Reset", "channel": "email", "lane": "transactional",
		"template": map[string]string{"subject": "Reset", "html": "<p>Reset</p>"},
	})
	if gen.status != http.StatusCreated || !regexp.MustCompile(`^cv_[0-9a-f]{20}$`).MatchString(gen.json(t)["id"].(string)) {
		t.Fatalf("generated: %d %s", gen.status, gen.body)
	}

	got := f.do(http.MethodGet, "/v1/conversations/summer-sale", key, nil)
	if got.status != http.StatusOK {
		t.Fatalf("get: %d %s", got.status, got.body)
	}
	if g := got.json(t); g["name"] != "Summer sale" || g["counts"] == nil {
		t.Fatalf("get = %v", g)
	}
	f.do(http.MethodGet, "/v1/conversations/nope", key, nil).problem(t, http.StatusNotFound, ProblemNotFound)
	f.do(http.MethodGet, "/v1/conversations/no.such", key, nil).problem(t, http.StatusNotFound, ProblemNotFound)
}

// TestCreateConversationInvalid: each invalid definition is 4xx naming what
// is wrong.
func TestCreateConversationInvalid(t *testing.T) {
	t.Parallel()
	f := setup(t)
	key := f.key("acme", ScopeSend)
	valid := func() map[string]any {
		return map[string]any{"name": "n", "channel": "email", "lane": "bulk",
			"template": map[string]string{"subject": "s", "text": "t"}}
	}
	with := func(k string, v any) map[string]any { m := valid(); m[k] = v; return m }
	cases := []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"bad id", with("id", "a.b"), "id"},
		{"no name", with("name", " "), "name"},
		{"bad channel", with("channel", "fax"), "channel"},
		{"bad lane", with("lane", "fast"), "lane"},
		{"email without subject", with("template", map[string]string{"text": "t"}), "subject"},
		{"email without body", with("template", map[string]string{"subject": "s"}), "text or html"},
		{"subject on two lines", with("template", map[string]string{"subject": "a\nb", "text": "t"}), "subject"},
		{"sms with html", map[string]any{"name": "n", "channel": "sms", "lane": "bulk",
			"template": map[string]string{"text": "t", "html": "<p>"}}, "text only"},
		{"push without text", map[string]any{"name": "n", "channel": "push", "lane": "bulk",
			"template": map[string]string{"subject": "Title"}}, "text"},
		{"push with html", map[string]any{"name": "n", "channel": "push", "lane": "bulk",
			"template": map[string]string{"text": "t", "html": "<p>"}}, "not html"},
		{"text does not parse", with("template", map[string]string{"subject": "s", "text": "Hi {{.name"}), "template text"},
		{"html does not parse", with("template", map[string]string{"subject": "s", "html": "<p>{{if}}</p>"}), "template html"},
		{"subject uses a function", with("template", map[string]string{"subject": "{{name}}", "text": "t"}), "template subject"},
	}
	for _, tc := range cases {
		p := f.postJSON("/v1/conversations", key, tc.body).problem(t, http.StatusUnprocessableEntity, ProblemInvalidRequest)
		if !strings.Contains(p["detail"].(string), tc.field) {
			t.Errorf("%s: detail %q does not name %q", tc.name, p["detail"], tc.field)
		}
	}
	unknown := f.postJSON("/v1/conversations", key, with("priority", 1)).problem(t, http.StatusBadRequest, ProblemInvalidRequest)
	if !strings.Contains(unknown["detail"].(string), "priority") {
		t.Errorf("unknown field: %v", unknown["detail"])
	}
	f.do(http.MethodPost, "/v1/conversations", key, strings.NewReader("{"), header("Content-Type", "application/json")).
		problem(t, http.StatusBadRequest, ProblemInvalidRequest)
	f.do(http.MethodPost, "/v1/conversations", key, strings.NewReader("name=x"), header("Content-Type", "application/x-www-form-urlencoded")).
		problem(t, http.StatusUnsupportedMediaType, ProblemUnsupportedMedia)
	huge := with("name", strings.Repeat("x", maxCreateBody))
	f.postJSON("/v1/conversations", key, huge).problem(t, http.StatusRequestEntityTooLarge, ProblemInvalidRequest)
}

// TestCounts: GET reads the stored outcome of every count (never the
// reason's spelling) and computes pending.
func TestCounts(t *testing.T) {
	t.Parallel()
	f := setup(t)
	key := f.key("acme", ScopeSend, ScopeRead)
	f.conversation(key, "c1")
	ctx := context.Background()
	for _, q := range []string{
		`UPDATE conversations SET accepted = 100, purged = 7 WHERE tenant = 'acme' AND id = 'c1'`,
		`INSERT INTO delivery_counts VALUES ('acme', 'c1', 'email', '2026-01-01 10:00Z', 40), ('acme', 'c1', 'email', '2026-01-01 10:01Z', 10),
			('acme', 'other', 'email', '2026-01-01 10:00Z', 999), ('zeta', 'c1', 'email', '2026-01-01 10:00Z', 999)`,
		`INSERT INTO error_counts (tenant, conversation, channel, reason, outcome, minute, count) VALUES
			('acme', 'c1', 'email', 'empty', 'invalid', '2026-01-01 10:00Z', 12), ('acme', 'c1', 'email', 'syntax', 'invalid', '2026-01-01 10:00Z', 3),
			('acme', 'c1', 'email', 'empty', 'invalid', '2026-01-01 10:01Z', 5), ('acme', 'c1', 'email', 'max_deliveries', 'failed', '2026-01-01 10:00Z', 2),
			('acme', 'c1', 'email', 'recipient_rejected', 'failed', '2026-01-01 10:00Z', 4), ('acme', 'c1', 'push', 'unregistered', 'failed', '2026-01-01 10:00Z', 1),
			('zeta', 'c1', 'email', 'empty', 'invalid', '2026-01-01 10:00Z', 999)`,
	} {
		if _, err := f.db.Pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	r := f.do(http.MethodGet, "/v1/conversations/c1", key, nil)
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var got struct{ Counts Counts }
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	c := got.Counts
	if c.Accepted != 100 || c.Delivered != 50 || c.Invalid != 20 || c.Failed != 7 || c.Purged != 7 || c.Pending != 16 {
		t.Fatalf("counts = %+v", c)
	}
	if c.InvalidReasons["empty"] != 17 || c.InvalidReasons["syntax"] != 3 || c.FailedReasons["max_deliveries"] != 2 ||
		c.FailedReasons["recipient_rejected"] != 4 || c.FailedReasons["unregistered"] != 1 {
		t.Fatalf("reasons = %v / %v", c.InvalidReasons, c.FailedReasons)
	}
	// Workers ahead of the API's checkpoint: pending does not go below 0.
	if _, err := f.db.Pool.Exec(ctx, `UPDATE conversations SET accepted = 10 WHERE id = 'c1'`); err != nil {
		t.Fatal(err)
	}
	if c, err := ConversationCounts(ctx, f.db.Pool, "acme", "c1"); err != nil || c.Pending != 0 {
		t.Fatalf("pending = %d, %v", c.Pending, err)
	}
	if _, err := ConversationCounts(ctx, f.db.Pool, "zeta", "c1"); err != ErrConversationNotFound {
		t.Fatalf("other tenant: %v", err)
	}
}
