package api

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/orchestrator/control"
)

// TestOpenAPIMatchesRoutes: every route of a Server with the campaign API is
// described, and every described operation is routed.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	s, err := New(Config{Gatherer: prometheus.NewRegistry()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &Campaigns{auth: &Auth{}, m: mustMetrics(t)}
	c.Register(s)
	(&Admin{c: c, ctl: &control.Store{}}).Register(s)
	(&Suppressions{c: c}).Register(s)
	(&Unsubscribe{c: c}).Register(s)
	(&Feedback{c: c}).Register(s)
	(&Webhooks{c: c}).Register(s)
	if n := len(s.Routes()); n < 7 {
		t.Fatalf("only %d routes: %v", n, s.Routes())
	}
	// The console's pages are mounted by package console (checked with
	// the whole node in package node).
	_, _, console := documentedByTag(t)
	if len(console) < 8 {
		t.Fatalf("only %d console operations documented: %v", len(console), console)
	}
	if err := CheckOpenAPI(append(s.Routes(), console...)); err != nil {
		t.Fatal(err)
	}
	// The check can fail: an undescribed route, a described one missing, a
	// route without a method.
	err = CheckOpenAPI(append(slices.DeleteFunc(s.Routes(), func(r string) bool { return r == "GET /readyz" }), "GET /v1/undocumented", "/v1/nomethod"))
	for _, want := range []string{"GET /v1/undocumented is not described", "describes GET /readyz", `"/v1/nomethod" has no method`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckOpenAPI error %v does not say %q", err, want)
		}
	}
}

func mustMetrics(t *testing.T) *apiMetrics {
	m, err := newAPIMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestOpenAPIServed: the document is served without a key, and its
// references resolve.
func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	f := setup(t)
	r := f.do(http.MethodGet, "/v1/openapi.json", "", nil)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s", r.status, r.header.Get("Content-Type"))
	}
	var all map[string]any
	if err := json.Unmarshal(r.body, &all); err != nil || !strings.HasPrefix(all["openapi"].(string), "3.1.") {
		t.Fatalf("served document: %v, openapi %v", err, all["openapi"])
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				var node any = all
				for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
					m, _ := node.(map[string]any)
					node = m[part]
				}
				if node == nil {
					t.Errorf("unresolved $ref %s", ref)
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(all)
}

// TestProblemsFromMux: an unknown route and a wrong method are problem
// documents too, the 405 with its Allow header.
func TestProblemsFromMux(t *testing.T) {
	t.Parallel()
	f := setup(t)
	p := f.do(http.MethodGet, "/v1/nothing-here", "", nil).problem(t, http.StatusNotFound, ProblemBlank)
	if !strings.Contains(p["detail"].(string), "/v1/nothing-here") {
		t.Fatalf("404 detail = %v", p["detail"])
	}
	r := f.do(http.MethodDelete, "/v1/conversations/x", "", nil)
	r.problem(t, http.StatusMethodNotAllowed, ProblemBlank)
	if allow := r.header.Get("Allow"); !strings.Contains(allow, "GET") {
		t.Fatalf("Allow = %q", allow)
	}
	if r := f.do(http.MethodGet, "/healthz", "", nil); r.status != http.StatusOK {
		t.Fatalf("/healthz = %d", r.status)
	}
}

// TestProblemJSON: extensions sit beside the standard members, which they
// cannot override.
func TestProblemJSON(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(Problem{Status: 400, Title: "Malformed row", Extensions: map[string]any{"row": 7, "type": "spoof"}})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["type"] != ProblemBlank || m["status"] != float64(400) || m["row"] != float64(7) || m["title"] != "Malformed row" {
		t.Fatalf("problem = %s", b)
	}
	if _, ok := m["detail"]; ok {
		t.Fatalf("empty detail written: %s", b)
	}
}
