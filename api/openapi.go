package api

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// openAPI is the OpenAPI 3.1 description of the HTTP API, served at
// /v1/openapi.json. CheckOpenAPI tells whether it describes exactly the
// routes of a Server.
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI 3.1 document (JSON).
func OpenAPI() []byte { return openAPI }

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(openAPI)
}

// CheckOpenAPI compares routes (Server.Routes of a fully wired server) with
// the operations of the OpenAPI document: it returns an error naming every
// route that is not described, every described operation that is not
// routed, and every route without a method (which cannot be described).
// A process that mounts more routes (/v1/admin/) runs it in a test.
func CheckOpenAPI(routes []string) error {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		return fmt.Errorf("api: openapi.json: %w", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		return fmt.Errorf("api: openapi.json is OpenAPI %q, want 3.1.x", doc.OpenAPI)
	}
	var ops []string
	for path, item := range doc.Paths {
		for method := range item {
			switch method {
			case "get", "put", "post", "delete", "options", "head", "patch", "trace":
				ops = append(ops, strings.ToUpper(method)+" "+path)
			}
		}
	}
	var errs []error
	var routed []string
	for _, r := range routes {
		method, path, found := strings.Cut(r, " ")
		if !found || method == "" || !strings.HasPrefix(path, "/") {
			errs = append(errs, fmt.Errorf("route %q has no method, so it cannot be described", r))
			continue
		}
		// "/console/{$}" (that path exactly, not the subtree) is
		// described as "/console/".
		routed = append(routed, method+" "+strings.TrimSuffix(path, "{$}"))
	}
	slices.Sort(routed)
	slices.Sort(ops)
	for _, r := range routed {
		if !slices.Contains(ops, r) {
			errs = append(errs, fmt.Errorf("route %s is not described in api/openapi.json", r))
		}
	}
	for _, op := range ops {
		if !slices.Contains(routed, op) {
			errs = append(errs, fmt.Errorf("api/openapi.json describes %s, which is not routed", op))
		}
	}
	return errors.Join(errs...)
}
