package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/sluicehq/sluice/orchestrator/control"
	"github.com/sluicehq/sluice/webhook"
)

// WebhooksConfig configures the /v1/webhooks routes.
type WebhooksConfig struct {
	// Store is the endpoints. Required.
	Store *webhook.Store
	// Replayer runs replays. nil answers replay requests 503.
	Replayer *webhook.Replayer
	// DeleteConsumer removes a deleted endpoint's consumer of events.
	// Required.
	DeleteConsumer func(ctx context.Context, id string) error
	// Audit records each change with the key that made it (control.Store's
	// RecordChange). Required.
	Audit func(ctx context.Context, key, actor string, old, cur any) error
}

// Webhooks serves a tenant's delivery-status webhook endpoints, with the
// tenant's admin key:
//
//	POST   /v1/webhooks                  {"url": ..., "events": [...]}: 201, with the secret (shown once)
//	GET    /v1/webhooks                  list (without secrets)
//	GET    /v1/webhooks/{webhook}        one endpoint, with its failure streak
//	DELETE /v1/webhooks/{webhook}        200 with the endpoint as it was
//	POST   /v1/webhooks/{webhook}/replay {"from": ..., "to": ...}: 202, re-delivery started
//
// Every registration and deletion is audited in control_audit as
// webhook.<tenant>.<id> with the key (never the secret). Another tenant's
// endpoint answers 404.
type Webhooks struct {
	c   *Campaigns
	cfg WebhooksConfig
}

// Bounds of the webhook routes.
const maxWebhookBody = 8 << 10

// NewWebhooks returns the webhook routes, authenticated and instrumented
// by c.
func NewWebhooks(c *Campaigns, cfg WebhooksConfig) (*Webhooks, error) {
	switch {
	case c == nil:
		return nil, errors.New("api: NewWebhooks needs the Campaigns (authentication, metrics)")
	case cfg.Store == nil:
		return nil, errors.New("api: WebhooksConfig.Store is required")
	case cfg.DeleteConsumer == nil:
		return nil, errors.New("api: WebhooksConfig.DeleteConsumer is required")
	case cfg.Audit == nil:
		return nil, errors.New("api: WebhooksConfig.Audit is required")
	}
	return &Webhooks{c: c, cfg: cfg}, nil
}

// Register adds the routes to s.
func (wh *Webhooks) Register(s *Server) {
	wh.c.handle(s, "POST /v1/webhooks", ScopeAdmin, wh.create)
	wh.c.handle(s, "GET /v1/webhooks", ScopeAdmin, wh.list)
	wh.c.handle(s, "GET /v1/webhooks/{webhook}", ScopeAdmin, wh.get)
	wh.c.handle(s, "DELETE /v1/webhooks/{webhook}", ScopeAdmin, wh.delete)
	wh.c.handle(s, "POST /v1/webhooks/{webhook}/replay", ScopeAdmin, wh.replay)
}

type webhookRequest struct {
	URL    string   `json:"url"`
	Events []string `json:"events"`
}

func (wh *Webhooks) create(w http.ResponseWriter, r *http.Request) {
	var req webhookRequest
	if !jsonContent(w, r) || !readJSON(w, r, maxWebhookBody, &req) {
		return
	}
	if err := checkText("url", req.URL); err != nil {
		problem(w, http.StatusUnprocessableEntity, ProblemInvalidRequest, "Invalid webhook", err.Error())
		return
	}
	p, _ := PrincipalFrom(r.Context())
	ep, err := wh.cfg.Store.Create(r.Context(), p.Tenant, req.URL, req.Events)
	if wh.failed(w, r, err) {
		return
	}
	shown := ep
	shown.Secret = ""
	if wh.failed(w, r, wh.cfg.Audit(r.Context(), "webhook."+p.Tenant+"."+ep.ID, p.Actor(), nil, shown)) {
		return
	}
	w.Header().Set("Location", "/v1/webhooks/"+ep.ID)
	writeJSON(w, http.StatusCreated, ep)
}

func (wh *Webhooks) list(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	eps, err := wh.cfg.Store.List(r.Context(), p.Tenant)
	if wh.failed(w, r, err) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"webhooks": eps})
}

func (wh *Webhooks) get(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	ep, err := wh.cfg.Store.Get(r.Context(), p.Tenant, r.PathValue("webhook"))
	if wh.failed(w, r, err) {
		return
	}
	writeJSON(w, http.StatusOK, ep)
}

func (wh *Webhooks) delete(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	ep, err := wh.cfg.Store.Delete(r.Context(), p.Tenant, r.PathValue("webhook"))
	if wh.failed(w, r, err) {
		return
	}
	if err := wh.cfg.DeleteConsumer(r.Context(), ep.ID); err != nil {
		wh.c.log.Warn("deleted webhook's consumer not removed", "endpoint", ep.ID, "err", err)
	}
	if wh.failed(w, r, wh.cfg.Audit(r.Context(), "webhook."+p.Tenant+"."+ep.ID, p.Actor(), ep, nil)) {
		return
	}
	writeJSON(w, http.StatusOK, ep)
}

type replayRequest struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

func (wh *Webhooks) replay(w http.ResponseWriter, r *http.Request) {
	var req replayRequest
	if !jsonContent(w, r) || !readJSON(w, r, maxWebhookBody, &req) {
		return
	}
	if wh.cfg.Replayer == nil {
		problem(w, http.StatusServiceUnavailable, ProblemUnavailable, "Replay not available", "this server does not run replays")
		return
	}
	p, _ := PrincipalFrom(r.Context())
	ep, err := wh.cfg.Replayer.Replay(r.Context(), p.Tenant, r.PathValue("webhook"), req.From, req.To)
	if errors.Is(err, webhook.ErrReplayBusy) {
		problem(w, http.StatusConflict, ProblemChangeConflict, "Replay running", err.Error())
		return
	}
	if wh.failed(w, r, err) {
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"webhook": ep.ID, "from": req.From, "to": req.To, "status": "started"})
}

// failed answers the problem of err, if any, and reports whether it did.
func (wh *Webhooks) failed(w http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, webhook.ErrNotFound):
		problem(w, http.StatusNotFound, ProblemNotFound, "", "no such webhook")
	case errors.Is(err, webhook.ErrInvalid):
		problem(w, http.StatusUnprocessableEntity, ProblemInvalidRequest, "Invalid webhook", err.Error())
	case errors.Is(err, control.ErrAudit):
		problem(w, http.StatusInternalServerError, ProblemInternal, "Change not audited", err.Error()+" (the change is in effect)")
	default:
		wh.c.log.Error("webhook request failed", "method", r.Method, "err", err)
		w.Header().Set("Retry-After", "2")
		problem(w, http.StatusServiceUnavailable, ProblemUnavailable, "", "the webhooks could not be read or changed; retry")
	}
	return true
}
