package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sluicehq/sluice/wire"
)

// conversationBody is a conversation definition with name and text as
// given (raw JSON string contents, so that escapes and bad bytes pass as
// they are).
func conversationBody(id, name, text string) string {
	return `{"id":"` + id + `","name":"` + name + `","channel":"sms","lane":"bulk","template":{"text":"` + text + `"}}`
}

// TestBadTextRefused: NUL bytes and invalid UTF-8 in a conversation's id,
// name and template, and in an admin change's reason, are 422 naming the
// field, and nothing is stored.
func TestBadTextRefused(t *testing.T) {
	t.Parallel()
	f := setup(t)
	key := f.key("acme", ScopeSend, ScopeAdmin)
	for _, tc := range []struct{ body, field string }{
		{conversationBody("c1", `a\u0000b`, "hi"), "name: contains a NUL byte"},
		{conversationBody("c1", "ok", `hi\u0000`), "template.text: contains a NUL byte"},
		{conversationBody("c1", "a\xffb", "hi"), "name: not valid UTF-8"},
		{conversationBody("c1", "ok", "h\xc3"), "template.text: not valid UTF-8"},
		{conversationBody(`c\u00001`, "ok", "hi"), "id:"},
		{conversationBody("c\xff1", "ok", "hi"), "id: not valid UTF-8"},
	} {
		r := f.do(http.MethodPost, "/v1/conversations", key, strings.NewReader(tc.body), header("Content-Type", "application/json"))
		p := r.problem(t, http.StatusUnprocessableEntity, ProblemInvalidRequest)
		if d, _ := p["detail"].(string); !strings.HasPrefix(d, tc.field) {
			t.Errorf("%q: detail %q, want it to start with %q", tc.body, d, tc.field)
		}
	}
	var n int
	if err := f.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM conversations`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d conversations stored (%v)", n, err)
	}

	f.conversation(key, "c2")
	audited := f.auditRows()
	for _, body := range []string{`{"reason":"x\u0000"}`, "{\"reason\":\"\xff\"}"} {
		r := f.do(http.MethodPost, "/v1/admin/conversations/acme/c2/pause", key, strings.NewReader(body))
		if p := r.problem(t, http.StatusUnprocessableEntity, ProblemInvalidRequest); !strings.HasPrefix(p["detail"].(string), "reason: ") {
			t.Errorf("pause %q: %v", body, p)
		}
	}
	if st, err := f.ctl.Conversation(t.Context(), "acme", "c2"); err != nil || st.Revision != 0 || f.auditRows() != audited {
		t.Fatalf("a refused pause changed the state: %+v, %v", st, err)
	}
}

// TestInputErrorFromPostgres: what Postgres itself refuses in a value
// (SQLSTATE class 22) is recognised as the client's error, answered 422,
// never 5xx.
func TestInputErrorFromPostgres(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	for _, q := range []struct {
		sql, code string
		arg       any
	}{
		{`SELECT $1::text`, "22021", "a\x00b"},
		{`SELECT $1::jsonb`, "22P05", `{"a":"\u0000"}`},
		{`SELECT $1::int`, "22003", "99999999999"},
	} {
		_, err := f.db.Pool.Exec(ctx, q.sql, q.arg)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != q.code {
			t.Fatalf("%s: %v, want SQLSTATE %s", q.sql, err, q.code)
		}
		if !inputError(fmt.Errorf("store: %w", err)) {
			t.Errorf("SQLSTATE %s is not taken for the client's error", q.code)
		}
	}
	_, err := f.db.Pool.Exec(ctx, `INSERT INTO api_keys (id, tenant, hash, scopes) VALUES ('k', 'a', sha256('k'), '{nope}')`)
	if err == nil || inputError(err) {
		t.Fatalf("a constraint violation (class 23) taken for input: %v", err)
	}
}

// TestEmptySegments: a path with an empty segment is a 404 problem, not a
// redirect without a Location.
func TestEmptySegments(t *testing.T) {
	t.Parallel()
	f := setup(t)
	key := f.key("acme", ScopeSend, ScopeAdmin)
	for _, tc := range []struct{ method, path string }{
		{http.MethodPost, "/v1/conversations//activations"},
		{http.MethodPost, "/v1/admin/conversations//c1/pause"},
		{http.MethodGet, "/v1/admin/conversations/acme//"},
		{http.MethodGet, "/v1//conversations/c1"},
	} {
		r := f.do(tc.method, tc.path, key, strings.NewReader("[]"))
		r.problem(t, http.StatusNotFound, ProblemBlank)
		if loc := r.header.Get("Location"); loc != "" {
			t.Errorf("%s %s: Location %q", tc.method, tc.path, loc)
		}
	}
}

// TestVarsTooLargeRefused: a row whose vars exceed the workers' limit is
// refused at the API, named, with the rows before it stored.
func TestVarsTooLargeRefused(t *testing.T) {
	t.Parallel()
	f := setup(t)
	key := f.key("acme", ScopeSend)
	f.conversation(key, "c")
	big := strings.Repeat("v", wire.DefaultMaxVarsBytes)
	body := `[{"to":"a@example.com"},{"to":"b@example.com","vars":{"name":"` + big + `"}},{"to":"c@example.com"}]`
	p := f.activate(key, "c", "", strings.NewReader(body), false).problem(t, http.StatusRequestEntityTooLarge, ProblemRowTooLarge)
	if p["row"] != float64(2) || p["accepted"] != float64(1) || p["stored_through_row"] != float64(1) || !strings.Contains(p["detail"].(string), `"vars"`) {
		t.Fatalf("problem = %v", p)
	}
	if n := f.streamMsgs(); n != 1 {
		t.Fatalf("%d messages stored, want 1", n)
	}
	// Just under the limit is accepted.
	under := strings.Repeat("v", wire.DefaultMaxVarsBytes-len(`{"name":""}`))
	r := f.activate(key, "c", "", strings.NewReader(`[{"to":"d@example.com","vars":{"name":"`+under+`"}}]`), false)
	if r.status != http.StatusAccepted {
		t.Fatalf("vars at the limit: %d %s", r.status, r.body)
	}
}

// TestExpectContinueRefusal: a 50 MB NDJSON line sent by curl, which sends
// Expect: 100-continue, is answered with the 413 problem document every
// time, never a connection reset.
func TestExpectContinueRefusal(t *testing.T) {
	t.Parallel()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not on PATH")
	}
	f := setup(t)
	key := f.key("acme", ScopeSend)
	f.conversation(key, "c")
	file := filepath.Join(t.TempDir(), "big.ndjson")
	line := append([]byte(`{"to":"a@example.com","vars":{"pad":"`), bytes.Repeat([]byte("x"), 50<<20)...)
	if err := os.WriteFile(file, append(line, "\"}}\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		out, err := exec.CommandContext(t.Context(), curl, "-sS", "-o", "-", "-w", "\n%{http_code}",
			"-H", "Authorization: Bearer "+key, "-H", "Content-Type: application/x-ndjson", "-H", "Expect: 100-continue",
			"--data-binary", "@"+file, f.base+"/v1/conversations/c/activations").CombinedOutput()
		s := strings.TrimSpace(string(out))
		cut := strings.LastIndex(s, "\n")
		body, code := s[:max(cut, 0)], s[cut+1:]
		if err != nil || code != "413" || !strings.Contains(body, ProblemRowTooLarge) || !strings.Contains(body, `"row":1`) {
			t.Fatalf("attempt %d: %v: code %q body %.300s", i+1, err, code, body)
		}
	}
}
