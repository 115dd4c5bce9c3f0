package control

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/errorlog"
)

// adminServer serves s's routes; a request's X-Actor header stands for what
// the API's admin authentication would set.
func adminServer(t *testing.T, s *Store) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	for pattern, h := range s.AdminRoutes() {
		mux.Handle(pattern, h)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("X-Actor"); a != "" {
			r = r.WithContext(WithActor(r.Context(), a))
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// call makes one request and returns the status, content type and body.
func call(t *testing.T, method, url, actor, body string) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if actor != "" {
		req.Header.Set("X-Actor", actor)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

func decodeAs[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

func TestHTTPErrorLog(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	srv := adminServer(t, b.store)
	url := srv.URL + "/v1/admin/errorlog"

	code, ctype, body := call(t, "GET", url, "", "")
	if code != 200 || ctype != "application/json" {
		t.Fatalf("GET: %d %s %s", code, ctype, body)
	}
	if st := decodeAs[ErrorLogStatus](t, body); st.Mode != errorlog.DefaultMode || st.UpdatedBy != "default" || st.Revision == 0 {
		t.Fatalf("GET: %+v", st)
	}

	code, _, body = call(t, "PUT", url, "alice", `{"mode":"sample","first":10,"then":50,"window":"30s"}`)
	if code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	want := errorlog.Mode{Name: errorlog.ModeSample, First: 10, Then: 50, Window: 30 * time.Second}
	st := decodeAs[ErrorLogStatus](t, body)
	if st.Mode != want || st.UpdatedBy != "alice" || st.Previous == nil || *st.Previous != errorlog.DefaultMode {
		t.Fatalf("PUT answered %+v", st)
	}
	// The raw document, as clients see it.
	var raw map[string]any
	_ = json.Unmarshal(body, &raw)
	if raw["mode"] != "sample" || raw["window"] != "30s" || raw["updated_by"] != "alice" {
		t.Fatalf("PUT body %s", body)
	}
	if m, _ := b.worker(t).ErrorLogMode(t.Context()); m != want {
		t.Fatalf("mode after PUT = %v", m)
	}
	_, _, body = call(t, "GET", url, "", "")
	if got := decodeAs[ErrorLogStatus](t, body); got.Mode != want || got.UpdatedBy != "alice" || got.Previous == nil || *got.Previous != errorlog.DefaultMode {
		t.Fatalf("GET after PUT: %+v", got)
	}

	// Without an actor in the context: anonymous.
	if code, _, body := call(t, "PUT", url, "", `{"mode":"off"}`); code != 200 {
		t.Fatalf("PUT off: %d %s", code, body)
	}
	rows := b.audit(t)
	if rows[1].Actor != "alice" || rows[2].Actor != "anonymous" || !sameJSON(t, rows[2].New, `{"mode":"off"}`) {
		t.Fatalf("audit = %+v", rows)
	}
}

func TestHTTPErrorLogBadRequests(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	srv := adminServer(t, b.store)
	url := srv.URL + "/v1/admin/errorlog"
	for _, tc := range []struct{ body, detail string }{
		{`{"mode":"loud"}`, `"loud"`},
		{`{}`, `"mode" is required`},
		{``, "empty body"},
		{`{"mode":"sample"`, "body"},
		{`{"mode":"sample","frist":10}`, "frist"},
		{`{"mode":"sample","first":"10"}`, "first"},
		{`{"mode":"sample","first":-1}`, "first"},
		{`{"mode":"sample","window":"soon"}`, `"soon"`},
		{`{"mode":"sample","window":"-1m"}`, `"-1m"`},
		{`{"mode":"off","first":10}`, "sample mode only"},
		{`{"mode":"off"} {"mode":"full"}`, "single JSON object"},
		{`{"mode":"off","pad":"` + strings.Repeat("x", maxBody) + `"}`, "larger than"},
	} {
		code, ctype, body := call(t, "PUT", url, "mallory", tc.body)
		if code != http.StatusBadRequest || ctype != "application/problem+json" {
			t.Errorf("PUT %.40q: %d %s %s, want 400 problem", tc.body, code, ctype, body)
			continue
		}
		p := decodeAs[problem](t, body)
		if p.Type != "about:blank" || p.Title != "Bad Request" || p.Status != 400 || !strings.Contains(p.Detail, tc.detail) {
			t.Errorf("PUT %.40q: problem %+v, want detail with %s", tc.body, p, tc.detail)
		}
	}
	if m, _ := b.store.ErrorLogMode(t.Context()); m != errorlog.DefaultMode {
		t.Fatalf("mode changed by bad requests: %v", m)
	}
	if rows := b.audit(t); len(rows) != 1 {
		t.Fatalf("bad requests audited: %+v", rows)
	}
	if code, _, _ := call(t, "POST", url, "", `{"mode":"off"}`); code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d, want 405", code)
	}
}

func TestHTTPTopErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	seedCounts(t, b.db)
	srv := adminServer(t, b.store)

	code, _, body := call(t, "GET", srv.URL+"/v1/admin/errors/top", "", "")
	if code != 200 {
		t.Fatalf("top: %d %s", code, body)
	}
	r := decodeAs[TopErrorsReport](t, body)
	if r.Window != "5m0s" || len(r.Conversations) != 4 || r.Conversations[0].Conversation != "c2" || r.Conversations[0].Total != 100 {
		t.Fatalf("top (defaults) = %+v", r)
	}
	_, _, body = call(t, "GET", srv.URL+"/v1/admin/errors/top?window=1h&limit=1", "", "")
	if r := decodeAs[TopErrorsReport](t, body); r.Window != "1h0m0s" || len(r.Conversations) != 1 || r.Conversations[0].Total != 1105 {
		t.Fatalf("top 1h limit 1 = %+v", r)
	}
	for _, q := range []string{"window=soon", "window=0s", "window=-5m", "window=9999h", "limit=0", "limit=x", "limit=1001"} {
		code, ctype, body := call(t, "GET", srv.URL+"/v1/admin/errors/top?"+q, "", "")
		if code != 400 || ctype != "application/problem+json" {
			t.Errorf("top?%s: %d %s %s, want 400 problem", q, code, ctype, body)
		}
	}

	// A Store without a database cannot answer.
	noDB := adminServer(t, b.worker(t))
	code, ctype, body := call(t, "GET", noDB.URL+"/v1/admin/errors/top", "", "")
	if code != http.StatusServiceUnavailable || ctype != "application/problem+json" {
		t.Fatalf("top without a database: %d %s %s", code, ctype, body)
	}
}

func TestHTTPAuditFailure(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	srv := adminServer(t, b.store)
	if _, err := b.db.Pool.Exec(t.Context(), "DROP TABLE control_audit"); err != nil {
		t.Fatal(err)
	}
	code, _, body := call(t, "PUT", srv.URL+"/v1/admin/errorlog", "alice", `{"mode":"off"}`)
	if code != 500 || !strings.Contains(string(body), "not audited") || !strings.Contains(string(body), "in effect") {
		t.Fatalf("PUT with the audit table gone: %d %s", code, body)
	}
}
