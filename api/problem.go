package api

import (
	"encoding/json"
	"net/http"
)

// Problem types of the API. Each is a stable identifier (RFC 9457 "type"),
// described in the OpenAPI document; clients switch on it, not on the title.
// Generic HTTP errors (unknown route, method not allowed) use "about:blank".
const (
	ProblemBlank               = "about:blank"
	ProblemUnauthenticated     = "urn:sluice:problem:unauthenticated"
	ProblemForbidden           = "urn:sluice:problem:insufficient-scope"
	ProblemNotFound            = "urn:sluice:problem:not-found"
	ProblemInvalidRequest      = "urn:sluice:problem:invalid-request"
	ProblemUnsupportedMedia    = "urn:sluice:problem:unsupported-media-type"
	ProblemConversationExists  = "urn:sluice:problem:conversation-exists"
	ProblemConversationStopped = "urn:sluice:problem:conversation-stopped"
	ProblemMalformedRow        = "urn:sluice:problem:malformed-row"
	ProblemInvalidRow          = "urn:sluice:problem:invalid-row"
	ProblemRowTooLarge         = "urn:sluice:problem:row-too-large"
	ProblemBodyUnreadable      = "urn:sluice:problem:body-unreadable"
	ProblemIdempotencyInUse    = "urn:sluice:problem:idempotency-key-in-use"
	ProblemIdempotencyMismatch = "urn:sluice:problem:idempotency-key-reused"
	ProblemUnavailable         = "urn:sluice:problem:unavailable"
	ProblemIntakePaused        = "urn:sluice:problem:intake-paused"
	ProblemChangeConflict      = "urn:sluice:problem:change-conflict"
	ProblemInternal            = "urn:sluice:problem:internal"
)

// ProblemContentType is the media type of problem documents.
const ProblemContentType = "application/problem+json"

// Problem is an RFC 9457 problem document. Extensions are extra members
// (for example "row" for a malformed activation row); they must not use the
// names of the standard members.
type Problem struct {
	Type       string
	Title      string
	Status     int
	Detail     string
	Instance   string
	Extensions map[string]any
}

// MarshalJSON writes the standard members and the extensions as one object.
func (p Problem) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(p.Extensions)+5)
	for k, v := range p.Extensions {
		m[k] = v
	}
	typ := p.Type
	if typ == "" {
		typ = ProblemBlank
	}
	m["type"] = typ
	m["title"] = p.Title
	m["status"] = p.Status
	if p.Detail != "" {
		m["detail"] = p.Detail
	}
	if p.Instance != "" {
		m["instance"] = p.Instance
	}
	return json.Marshal(m)
}

// WriteProblem writes p as application/problem+json with status p.Status.
// An empty Title is filled with the status text. Headers that belong with the
// problem (Retry-After, WWW-Authenticate, Allow) are set on w before calling.
func WriteProblem(w http.ResponseWriter, p Problem) {
	if p.Status == 0 {
		p.Status = http.StatusInternalServerError
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	b, err := json.Marshal(p)
	if err != nil {
		// Only an unencodable extension can get here; drop them.
		p.Extensions = nil
		b, _ = json.Marshal(p)
	}
	h := w.Header()
	h.Set("Content-Type", ProblemContentType)
	h.Set("Cache-Control", "no-store")
	h.Del("Content-Length")
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(b, '\n'))
}

// problem is shorthand for the common case.
func problem(w http.ResponseWriter, status int, typ, title, detail string) {
	WriteProblem(w, Problem{Type: typ, Title: title, Status: status, Detail: detail})
}
