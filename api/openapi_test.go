package api

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

type openAPIDoc struct {
	OpenAPI string                               `json:"openapi"`
	Paths   map[string]map[string]map[string]any `json:"paths"`
}

func loadOpenAPI(t *testing.T, b []byte) openAPIDoc {
	t.Helper()
	var doc openAPIDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Fatalf("openapi = %q, want 3.1.x", doc.OpenAPI)
	}
	return doc
}

// operations lists "METHOD /path" of every operation in the document.
func (d openAPIDoc) operations() []string {
	var out []string
	for path, item := range d.Paths {
		for method := range item {
			switch method {
			case "get", "put", "post", "delete", "options", "head", "patch", "trace":
				out = append(out, strings.ToUpper(method)+" "+path)
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestOpenAPIMatchesRoutes: every route of a Server with the campaign API is
// described, and every described operation is routed.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	s, err := New(Config{Gatherer: prometheus.NewRegistry()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	(&Campaigns{auth: &Auth{}, m: mustMetrics(t)}).Register(s)
	var routes []string
	for _, r := range s.Routes() {
		method, path, found := strings.Cut(r, " ")
		if !found || method == "" || !strings.HasPrefix(path, "/") {
			t.Errorf("route %q has no method: it cannot be described", r)
			continue
		}
		routes = append(routes, method+" "+path)
	}
	slices.Sort(routes)
	ops := loadOpenAPI(t, OpenAPI()).operations()
	for _, r := range routes {
		if !slices.Contains(ops, r) {
			t.Errorf("route %s is not described in openapi.json", r)
		}
	}
	for _, op := range ops {
		if !slices.Contains(routes, op) {
			t.Errorf("openapi.json describes %s, which is not routed", op)
		}
	}
	if len(routes) < 7 {
		t.Fatalf("only %d routes: %v", len(routes), routes)
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
	loadOpenAPI(t, r.body)
	var all map[string]any
	if err := json.Unmarshal(r.body, &all); err != nil {
		t.Fatal(err)
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
