package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/orchestrator/control"
)

// put sends a JSON body (as text, so that malformed ones can be sent).
func (f *fixture) put(path, key, body string) response {
	f.t.Helper()
	return f.do(http.MethodPut, path, key, strings.NewReader(body), header("Content-Type", "application/json"))
}

func decodeAs[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %d %s: %v", r.status, r.body, err)
	}
	return v
}

// lastActor is the actor of the latest control_audit row.
func (f *fixture) lastActor() string {
	f.t.Helper()
	var actor string
	if err := f.db.Pool.QueryRow(context.Background(), `SELECT actor FROM control_audit ORDER BY id DESC LIMIT 1`).Scan(&actor); err != nil {
		f.t.Fatal(err)
	}
	return actor
}

func (f *fixture) auditRows() int {
	f.t.Helper()
	var n int
	if err := f.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM control_audit`).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

func TestAdminErrorLog(t *testing.T) {
	t.Parallel()
	f := setup(t)
	op := f.operatorKey("alice")
	const path = "/v1/admin/errorlog"

	r := f.do(http.MethodGet, path, op, nil)
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET: %d %s", r.status, r.body)
	}
	if st := decodeAs[control.ErrorLogStatus](t, r); st.Mode != errorlog.DefaultMode || st.UpdatedBy != "default" || st.Revision == 0 {
		t.Fatalf("GET: %+v", st)
	}

	r = f.put(path, op, `{"mode":"sample","first":10,"then":50,"window":"30s"}`)
	if r.status != 200 {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	want := errorlog.Mode{Name: errorlog.ModeSample, First: 10, Then: 50, Window: 30 * time.Second}
	st := decodeAs[control.ErrorLogStatus](t, r)
	if st.Mode != want || !strings.HasPrefix(st.UpdatedBy, "operator:") || !strings.HasSuffix(st.UpdatedBy, "(alice)") ||
		st.Previous == nil || *st.Previous != errorlog.DefaultMode {
		t.Fatalf("PUT answered %+v", st)
	}
	raw := r.json(t)
	if raw["mode"] != "sample" || raw["window"] != "30s" || raw["updated_by"] != st.UpdatedBy {
		t.Fatalf("PUT body %s", r.body)
	}
	if a := f.lastActor(); a != st.UpdatedBy {
		t.Fatalf("audited actor %q, want %q", a, st.UpdatedBy)
	}
	if m, _ := f.ctl.ErrorLogMode(t.Context()); m != want {
		t.Fatalf("mode after PUT = %v", m)
	}
	if got := decodeAs[control.ErrorLogStatus](t, f.do(http.MethodGet, path, op, nil)); got.Mode != want || got.Previous == nil {
		t.Fatalf("GET after PUT: %+v", got)
	}
}

func TestAdminErrorLogBadRequests(t *testing.T) {
	t.Parallel()
	f := setup(t)
	op := f.operatorKey("mallory")
	audited := f.auditRows()
	for _, tc := range []struct {
		body   string
		status int
		detail string
	}{
		{`{"mode":"loud"}`, 400, `"loud"`},
		{`{}`, 400, `"mode" is required`},
		{``, 400, "empty"},
		{`{"mode":"sample"`, 400, "body"},
		{`{"mode":"sample","frist":10}`, 400, "frist"},
		{`{"mode":"sample","first":"10"}`, 400, "first"},
		{`{"mode":"sample","first":-1}`, 400, "first"},
		{`{"mode":"sample","window":"soon"}`, 400, `"soon"`},
		{`{"mode":"sample","window":"-1m"}`, 400, `"-1m"`},
		{`{"mode":"off","first":10}`, 400, "sample mode only"},
		{`{"mode":"off"} {"mode":"full"}`, 400, "more than one JSON value"},
		{`{"mode":"off","pad":"` + strings.Repeat("x", maxAdminBody) + `"}`, 413, "larger than"},
		{"{\"mode\":\"off\",\"window\":\"\xff\"}", 422, "window: not valid UTF-8"},
	} {
		r := f.put("/v1/admin/errorlog", op, tc.body)
		if r.status != tc.status || r.header.Get("Content-Type") != ProblemContentType {
			t.Errorf("PUT %.40q: %d %s, want %d problem", tc.body, r.status, r.body, tc.status)
			continue
		}
		if p := r.json(t); p["type"] != ProblemInvalidRequest || !strings.Contains(p["detail"].(string), tc.detail) {
			t.Errorf("PUT %.40q: problem %v, want detail with %s", tc.body, p, tc.detail)
		}
	}
	if m, _ := f.ctl.ErrorLogMode(t.Context()); m != errorlog.DefaultMode {
		t.Fatalf("mode changed by bad requests: %v", m)
	}
	if n := f.auditRows(); n != audited {
		t.Fatalf("bad requests audited: %d rows, want %d", n, audited)
	}
	f.do(http.MethodPost, "/v1/admin/errorlog", op, strings.NewReader(`{"mode":"off"}`)).problem(t, http.StatusMethodNotAllowed, ProblemBlank)
}

func TestAdminTopErrors(t *testing.T) {
	t.Parallel()
	f := setup(t)
	op := f.operatorKey("ops")
	if _, err := f.db.Pool.Exec(t.Context(), `
INSERT INTO error_counts (tenant, conversation, channel, reason, outcome, minute, count) VALUES
  ('acme',  'c1', 'email', 'empty', 'invalid',  date_trunc('minute', now()),                         50),
  ('acme',  'c2', 'email', 'empty', 'invalid',  date_trunc('minute', now() - interval '1 minute'),  100),
  ('acme',  'c2', 'email', 'empty', 'invalid',  date_trunc('minute', now() - interval '30 minutes'), 1000),
  ('bravo', 'c1', 'email', 'syntax', 'invalid', date_trunc('minute', now()),                         40)`); err != nil {
		t.Fatal(err)
	}
	r := f.do(http.MethodGet, "/v1/admin/errors/top", op, nil)
	rep := decodeAs[control.TopErrorsReport](t, r)
	if r.status != 200 || rep.Window != "5m0s" || len(rep.Conversations) != 3 || rep.Conversations[0].Conversation != "c2" || rep.Conversations[0].Total != 100 {
		t.Fatalf("top (defaults): %d %+v", r.status, rep)
	}
	rep = decodeAs[control.TopErrorsReport](t, f.do(http.MethodGet, "/v1/admin/errors/top?window=1h&limit=1", op, nil))
	if rep.Window != "1h0m0s" || len(rep.Conversations) != 1 || rep.Conversations[0].Total != 1100 {
		t.Fatalf("top 1h limit 1 = %+v", rep)
	}
	for _, q := range []string{"window=soon", "window=0s", "window=-5m", "window=9999h", "limit=0", "limit=x", "limit=1001"} {
		f.do(http.MethodGet, "/v1/admin/errors/top?"+q, op, nil).problem(t, http.StatusBadRequest, ProblemInvalidRequest)
	}

	// A control plane without a database cannot answer.
	noDB, err := control.Open(t.Context(), f.js, nil, nil, control.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := &Admin{c: f.c, ctl: noDB}
	rec := httptest.NewRecorder()
	a.getTopErrors(rec, httptest.NewRequest(http.MethodGet, "/v1/admin/errors/top", nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Content-Type") != ProblemContentType {
		t.Fatalf("top without a database: %d %s", rec.Code, rec.Body)
	}
}

func TestAdminAuditFailure(t *testing.T) {
	t.Parallel()
	f := setup(t)
	op := f.operatorKey("alice")
	if _, err := f.db.Pool.Exec(t.Context(), "DROP TABLE control_audit"); err != nil {
		t.Fatal(err)
	}
	p := f.put("/v1/admin/errorlog", op, `{"mode":"off"}`).problem(t, http.StatusInternalServerError, ProblemInternal)
	if d := p["detail"].(string); !strings.Contains(d, "not audited") || !strings.Contains(d, "in effect") {
		t.Fatalf("PUT with the audit table gone: %v", p)
	}
}

// TestAdminSwitchBadRequests: the intake and channel switches take one
// boolean member, nothing else, and a refused body changes nothing.
func TestAdminSwitchBadRequests(t *testing.T) {
	t.Parallel()
	f := setup(t)
	op := f.operatorKey("ops")
	for _, body := range []string{`{}`, `{"F":null}`, `{"F":"yes"}`, `{"F":true,"other":true}`, `[]`} {
		f.put("/v1/admin/intake", op, strings.ReplaceAll(body, "F", "paused")).problem(t, http.StatusBadRequest, ProblemInvalidRequest)
		f.put("/v1/admin/channels/sms", op, strings.ReplaceAll(body, "F", "disabled")).problem(t, http.StatusBadRequest, ProblemInvalidRequest)
	}
	if in, _ := f.ctl.IntakeInfo(t.Context()); in.Paused || in.UpdatedBy != "" {
		t.Fatalf("intake changed: %+v", in)
	}
	if ch, _ := f.ctl.ChannelList(t.Context()); ch.Channels[1].Disabled || ch.Channels[1].UpdatedBy != "" {
		t.Fatalf("sms changed: %+v", ch.Channels[1])
	}
	if n := f.auditRows(); n != 1 { // the error-log mode set at first start
		t.Fatalf("%d audit rows", n)
	}
}
