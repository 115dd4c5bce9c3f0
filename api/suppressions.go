package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/sluicehq/sluice/orchestrator/control"
	"github.com/sluicehq/sluice/suppression"
)

// SuppressionsConfig configures the /v1/suppressions routes.
type SuppressionsConfig struct {
	// Store is the suppression lists. nil (no mask key configured) answers
	// every route 503.
	Store *suppression.Store
	// Audit records each change with the key that made it (control.Store's
	// RecordChange). Required.
	Audit func(ctx context.Context, key, actor string, old, cur any) error
}

// Suppressions serves a tenant's suppression list, with the tenant's keys:
//
//	GET    /v1/suppressions            read   list (?after=<hash>&limit=), or ?address= to look one up
//	POST   /v1/suppressions            admin  {"address": ..., "reason": ...}: 201 added, 200 already there
//	DELETE /v1/suppressions            admin  {"address": ...}: 200 {"removed": true|false}
//
// Addresses are never stored or echoed: an entry is the keyed hash of the
// normalised address (package suppression). Every change is audited in
// control_audit as suppression.<tenant>.<hash> with the key.
type Suppressions struct {
	c     *Campaigns
	store *suppression.Store
	audit func(ctx context.Context, key, actor string, old, cur any) error
}

// Bounds of the suppression routes.
const (
	maxSuppressionBody     = 8 << 10
	maxSuppressionAddress  = 4096 // the longest push token
	maxSuppressionReason   = 64
	defaultSuppressionPage = 100
	maxSuppressionPage     = 1000
)

// NewSuppressions returns the suppression routes, authenticated and
// instrumented by c.
func NewSuppressions(c *Campaigns, cfg SuppressionsConfig) (*Suppressions, error) {
	if c == nil {
		return nil, errors.New("api: NewSuppressions needs the Campaigns (authentication, metrics)")
	}
	if cfg.Audit == nil {
		return nil, errors.New("api: SuppressionsConfig.Audit is required")
	}
	return &Suppressions{c: c, store: cfg.Store, audit: cfg.Audit}, nil
}

// Register adds the routes to s.
func (sp *Suppressions) Register(s *Server) {
	sp.c.handle(s, "GET /v1/suppressions", ScopeRead, sp.get)
	sp.c.handle(s, "POST /v1/suppressions", ScopeAdmin, sp.post)
	sp.c.handle(s, "DELETE /v1/suppressions", ScopeAdmin, sp.delete)
}

// suppressionRequest is the body of POST and DELETE.
type suppressionRequest struct {
	Address string `json:"address"`
	Reason  string `json:"reason"`
}

func (r *suppressionRequest) validate(withReason bool) error {
	n, _ := suppression.Normalize(r.Address)
	switch {
	case n == "" || len(r.Address) > maxSuppressionAddress:
		return errors.New("address: required, an email address, an E.164 number or a push token of at most 4096 bytes")
	case checkText("address", r.Address) != nil:
		return checkText("address", r.Address)
	case !withReason && r.Reason != "":
		return errors.New("reason: only when adding")
	case len(r.Reason) > maxSuppressionReason || checkText("reason", r.Reason) != nil:
		return errors.New("reason: at most 64 bytes of text")
	}
	return nil
}

// available answers 503 when there is no store.
func (sp *Suppressions) available(w http.ResponseWriter) bool {
	if sp.store == nil {
		problem(w, http.StatusServiceUnavailable, ProblemUnavailable, "Suppression not configured",
			"this server has no mask key (SLUICE_ERRORLOG_MASK_KEY) to hash addresses with")
		return false
	}
	return true
}

func (sp *Suppressions) get(w http.ResponseWriter, r *http.Request) {
	if !sp.available(w) {
		return
	}
	p, _ := PrincipalFrom(r.Context())
	q := r.URL.Query()
	if addr := q.Get("address"); addr != "" {
		e, ok, err := sp.store.Get(r.Context(), p.Tenant, addr)
		if sp.failed(w, r, err) {
			return
		}
		out := map[string]any{"suppressed": ok}
		if ok {
			out["entry"] = e
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	limit := defaultSuppressionPage
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxSuppressionPage {
			problem(w, http.StatusBadRequest, ProblemInvalidRequest, "Invalid request", "limit: want 1 to 1000")
			return
		}
		limit = n
	}
	list, err := sp.store.List(r.Context(), p.Tenant, q.Get("after"), limit)
	if sp.failed(w, r, err) {
		return
	}
	out := map[string]any{"suppressions": list}
	if len(list) == limit {
		out["next_after"] = list[len(list)-1].Hash
	}
	writeJSON(w, http.StatusOK, out)
}

func (sp *Suppressions) post(w http.ResponseWriter, r *http.Request) {
	req, ok := sp.read(w, r, true)
	if !ok {
		return
	}
	p, _ := PrincipalFrom(r.Context())
	if req.Reason == "" {
		req.Reason = suppression.ReasonManual
	}
	e, created, err := sp.store.Add(r.Context(), p.Tenant, req.Address, req.Reason, suppression.SourceAPI)
	if sp.failed(w, r, err) {
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		if sp.failed(w, r, sp.audit(r.Context(), "suppression."+p.Tenant+"."+e.Hash, p.Actor(), nil, e)) {
			return
		}
	}
	writeJSON(w, status, e)
}

func (sp *Suppressions) delete(w http.ResponseWriter, r *http.Request) {
	req, ok := sp.read(w, r, false)
	if !ok {
		return
	}
	p, _ := PrincipalFrom(r.Context())
	old, _, err := sp.store.Get(r.Context(), p.Tenant, req.Address)
	if sp.failed(w, r, err) {
		return
	}
	removed, err := sp.store.Remove(r.Context(), p.Tenant, req.Address)
	if sp.failed(w, r, err) {
		return
	}
	if removed && sp.failed(w, r, sp.audit(r.Context(), "suppression."+p.Tenant+"."+old.Hash, p.Actor(), old, nil)) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"removed": removed})
}

// read reads and checks the body of POST or DELETE.
func (sp *Suppressions) read(w http.ResponseWriter, r *http.Request, withReason bool) (suppressionRequest, bool) {
	var req suppressionRequest
	if !sp.available(w) || !jsonContent(w, r) || !readJSON(w, r, maxSuppressionBody, &req) {
		return req, false
	}
	if err := req.validate(withReason); err != nil {
		problem(w, http.StatusUnprocessableEntity, ProblemInvalidRequest, "Invalid suppression", err.Error())
		return req, false
	}
	return req, true
}

// failed answers the problem of err, if any, and reports whether it did.
func (sp *Suppressions) failed(w http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, control.ErrAudit):
		problem(w, http.StatusInternalServerError, ProblemInternal, "Change not audited",
			err.Error()+" (the change is in effect)")
	case errors.Is(err, suppression.ErrInvalid):
		problem(w, http.StatusBadRequest, ProblemInvalidRequest, "Invalid request", err.Error())
	default:
		sp.c.log.Error("suppression request failed", "method", r.Method, "err", err)
		w.Header().Set("Retry-After", "2")
		problem(w, http.StatusServiceUnavailable, ProblemUnavailable, "", "the suppression list could not be read or changed; retry")
	}
	return true
}
