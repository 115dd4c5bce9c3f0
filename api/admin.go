package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/orchestrator/control"
	"github.com/sluicehq/sluice/status"
	"github.com/sluicehq/sluice/wire"
)

// AdminConfig configures the /v1/admin/ routes.
type AdminConfig struct {
	// Control is the control plane the routes read and change. Required.
	Control *control.Store
	// Stop configures POST .../stop; without Stop.Purge the route answers
	// 500 (stop not available). Stop.Settle defaults to
	// control.DefaultStopSettle.
	Stop control.StopConfig
	// Status gathers GET /v1/admin/status (status.Gather over the node's
	// NATS, control plane and database); without it the route answers 503.
	Status func(ctx context.Context) status.Report
}

// Admin serves the operations routes under /v1/admin/. Who may call what:
//
//	GET  /v1/admin/conversations                       admin (its tenant's) or operator (every tenant's)
//	GET  /v1/admin/conversations/{tenant}/{id}         admin of {tenant}, or operator
//	POST /v1/admin/conversations/{tenant}/{id}/pause   admin of {tenant}, or operator
//	POST /v1/admin/conversations/{tenant}/{id}/resume  admin of {tenant}, or operator
//	POST /v1/admin/conversations/{tenant}/{id}/stop    admin of {tenant}, or operator
//	GET  /v1/admin/errorlog, PUT /v1/admin/errorlog    operator
//	GET  /v1/admin/errors/top                          operator
//	GET  /v1/admin/intake, PUT /v1/admin/intake        operator
//	GET  /v1/admin/channels, PUT /v1/admin/channels/{name}  operator
//	GET  /v1/admin/status                              operator
//	GET  /v1/admin/audit                               admin (its conversations' entries) or operator (every entry)
//
// A tenant's admin key naming another tenant in the path is answered 404
// (as if the conversation did not exist) and changes nothing; a tenant key
// on an operator route is 403. Every change is audited with the key
// (Principal.Actor).
type Admin struct {
	c      *Campaigns
	ctl    *control.Store
	stop   control.StopConfig
	status func(ctx context.Context) status.Report
}

// maxAdminBody bounds the body of an admin request.
const maxAdminBody = 64 << 10

// NewAdmin returns the admin routes, authenticated and instrumented by c.
func NewAdmin(c *Campaigns, cfg AdminConfig) (*Admin, error) {
	if c == nil {
		return nil, errors.New("api: NewAdmin needs the Campaigns (authentication, metrics)")
	}
	if cfg.Control == nil {
		return nil, errors.New("api: AdminConfig.Control is required")
	}
	return &Admin{c: c, ctl: cfg.Control, stop: cfg.Stop, status: cfg.Status}, nil
}

// Register adds the admin routes to s.
func (a *Admin) Register(s *Server) {
	tenantAdmin := []Scope{ScopeAdmin, ScopeOperator}
	operator := []Scope{ScopeOperator}
	for _, rt := range []struct {
		pattern string
		scopes  []Scope
		h       http.HandlerFunc
	}{
		{"GET /v1/admin/conversations", tenantAdmin, a.listConversations},
		{"GET /v1/admin/conversations/{tenant}/{id}", tenantAdmin, a.getConversation},
		{"POST /v1/admin/conversations/{tenant}/{id}/pause", tenantAdmin, a.change(control.StatePaused)},
		{"POST /v1/admin/conversations/{tenant}/{id}/resume", tenantAdmin, a.change(control.StateActive)},
		{"POST /v1/admin/conversations/{tenant}/{id}/stop", tenantAdmin, a.change(control.StateStopped)},
		{"GET /v1/admin/errorlog", operator, a.getErrorLog},
		{"PUT /v1/admin/errorlog", operator, a.putErrorLog},
		{"GET /v1/admin/errors/top", operator, a.getTopErrors},
		{"GET /v1/admin/intake", operator, a.getIntake},
		{"PUT /v1/admin/intake", operator, a.putIntake},
		{"GET /v1/admin/channels", operator, a.listChannels},
		{"PUT /v1/admin/channels/{name}", operator, a.putChannel},
		{"GET /v1/admin/status", operator, a.getStatus},
		{"GET /v1/admin/audit", tenantAdmin, a.getAudit},
	} {
		s.Handle(rt.pattern, a.c.Instrument(rt.pattern, a.c.auth.RequireAnyScope(rt.scopes, rt.h)))
	}
}

// actor names the key of r in the audit.
func actor(r *http.Request) string {
	p, _ := PrincipalFrom(r.Context())
	return p.Actor()
}

// fail answers with the problem document of a control-plane error.
func (a *Admin) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, control.ErrInvalid):
		problem(w, http.StatusBadRequest, ProblemInvalidRequest, "Invalid request", err.Error())
	case errors.Is(err, control.ErrNotFound):
		problem(w, http.StatusNotFound, ProblemNotFound, "Conversation not found", err.Error())
	case errors.Is(err, control.ErrStopped):
		problem(w, http.StatusConflict, ProblemConversationStopped, "Conversation stopped", err.Error())
	case errors.Is(err, control.ErrConflict):
		problem(w, http.StatusConflict, ProblemChangeConflict, "Concurrent changes", err.Error()+"; try again")
	case errors.Is(err, control.ErrNoDatabase):
		w.Header().Set("Retry-After", "30")
		problem(w, http.StatusServiceUnavailable, ProblemUnavailable, "", "this server has no database connection")
	case errors.Is(err, control.ErrAudit):
		// Logged by the control plane.
		problem(w, http.StatusInternalServerError, ProblemInternal, "Change not audited",
			err.Error()+" (the change is in effect; repeating the request records it again)")
	case inputError(err):
		refuseInput(w, "the request")
	default:
		a.c.log.Error("admin request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		problem(w, http.StatusInternalServerError, ProblemInternal, "", err.Error())
	}
}

// answer writes v, or the problem of err.
func (a *Admin) answer(w http.ResponseWriter, r *http.Request, v any, err error) {
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// target returns the conversation a /v1/admin/conversations/{tenant}/{id}
// route names, if the key may act on it: an operator on any tenant's, a
// tenant's admin key on its own tenant's only. Anything else is answered
// 404, as a conversation that does not exist is.
func (a *Admin) target(w http.ResponseWriter, r *http.Request) (tenant, id string, ok bool) {
	p, _ := PrincipalFrom(r.Context())
	tenant, id = r.PathValue("tenant"), r.PathValue("id")
	if !wire.ValidToken(tenant) || !wire.ValidToken(id) || !MayAct(p, tenant) {
		problem(w, http.StatusNotFound, ProblemNotFound, "Conversation not found",
			"no conversation "+truncate(tenant, 64)+"/"+truncate(id, 64)+" that this key may see")
		return "", "", false
	}
	return tenant, id, true
}

// MayAct reports whether p may see and act on tenant's conversations: an
// operator on every tenant's, a tenant's key on its own tenant's only.
func MayAct(p Principal, tenant string) bool { return p.Operator() || tenant == p.Tenant }

func (a *Admin) listConversations(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	tenant := p.Tenant // a tenant's admin key lists its own tenant only
	if p.Operator() {
		tenant = ""
	}
	list, err := a.ctl.Conversations(r.Context(), tenant, control.ConversationState(r.URL.Query().Get("state")))
	a.answer(w, r, control.ConversationList{Conversations: list}, err)
}

func (a *Admin) getConversation(w http.ResponseWriter, r *http.Request) {
	tenant, id, ok := a.target(w, r)
	if !ok {
		return
	}
	info, err := a.ctl.ConversationInfo(r.Context(), tenant, id)
	a.answer(w, r, info, err)
}

// stateRequest is the optional body of the conversation changes.
type stateRequest struct {
	Reason string `json:"reason"`
}

// change pauses, resumes or stops the conversation the path names.
func (a *Admin) change(to control.ConversationState) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tenant, id, ok := a.target(w, r)
		if !ok {
			return
		}
		var req stateRequest
		if r.ContentLength != 0 && !readJSON(w, r, maxAdminBody, &req) {
			return
		}
		if err := checkText("reason", req.Reason); err != nil {
			problem(w, http.StatusUnprocessableEntity, ProblemInvalidRequest, "Invalid request", err.Error())
			return
		}
		var (
			info control.ConversationInfo
			err  error
		)
		if to == control.StateStopped {
			info, err = a.ctl.StopConversation(r.Context(), tenant, id, req.Reason, actor(r), a.stop)
		} else {
			info, err = a.ctl.ChangeConversation(r.Context(), tenant, id, to, req.Reason, actor(r))
		}
		a.answer(w, r, info, err)
	}
}

func (a *Admin) getErrorLog(w http.ResponseWriter, r *http.Request) {
	st, err := a.ctl.ErrorLogStatus(r.Context())
	a.answer(w, r, st, err)
}

// modeRequest is the body of PUT /v1/admin/errorlog.
type modeRequest struct {
	Mode   errorlog.ModeName `json:"mode"`
	First  int               `json:"first"`
	Then   int               `json:"then"`
	Window string            `json:"window"`
}

// mode checks the request and returns the mode it asks for.
func (req modeRequest) mode() (errorlog.Mode, error) {
	if req.Mode == "" {
		return errorlog.Mode{}, errors.New(`"mode" is required: full, sample, off or sync`)
	}
	if _, err := errorlog.ParseModeName(string(req.Mode)); err != nil {
		return errorlog.Mode{}, err
	}
	m := errorlog.Mode{Name: req.Mode, First: req.First, Then: req.Then}
	if req.Mode != errorlog.ModeSample && (req.First != 0 || req.Then != 0 || req.Window != "") {
		return errorlog.Mode{}, fmt.Errorf(`"first", "then" and "window" apply to sample mode only, not %q`, req.Mode)
	}
	if req.Window != "" {
		d, err := time.ParseDuration(req.Window)
		if err != nil || d <= 0 {
			return errorlog.Mode{}, fmt.Errorf(`"window" %q: want a positive duration such as "1m" or "30s"`, req.Window)
		}
		m.Window = d
	}
	return m, nil
}

func (a *Admin) putErrorLog(w http.ResponseWriter, r *http.Request) {
	var req modeRequest
	if !readJSON(w, r, maxAdminBody, &req) {
		return
	}
	m, err := req.mode()
	if err != nil {
		problem(w, http.StatusBadRequest, ProblemInvalidRequest, "Invalid request", err.Error())
		return
	}
	st, err := a.ctl.ChangeErrorLogMode(r.Context(), m, actor(r))
	a.answer(w, r, st, err)
}

func (a *Admin) getTopErrors(w http.ResponseWriter, r *http.Request) {
	window, limit := control.DefaultTopWindow, control.DefaultTopLimit
	q := r.URL.Query()
	if v := q.Get("window"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			problem(w, http.StatusBadRequest, ProblemInvalidRequest, "Invalid request",
				fmt.Sprintf("window %q: want a duration such as 5m or 1h", truncate(v, 32)))
			return
		}
		window = d
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			problem(w, http.StatusBadRequest, ProblemInvalidRequest, "Invalid request",
				fmt.Sprintf("limit %q: want a whole number from 1 to %d", truncate(v, 32), errorlog.MaxTopLimit))
			return
		}
		limit = n
	}
	report, err := a.ctl.TopErrorsReport(r.Context(), window, limit)
	a.answer(w, r, report, err)
}

func (a *Admin) getIntake(w http.ResponseWriter, r *http.Request) {
	info, err := a.ctl.IntakeInfo(r.Context())
	a.answer(w, r, info, err)
}

func (a *Admin) putIntake(w http.ResponseWriter, r *http.Request) {
	paused, ok := readSwitch(w, r, "paused")
	if !ok {
		return
	}
	info, err := a.ctl.ChangeIntake(r.Context(), paused, actor(r))
	a.answer(w, r, info, err)
}

func (a *Admin) listChannels(w http.ResponseWriter, r *http.Request) {
	list, err := a.ctl.ChannelList(r.Context())
	a.answer(w, r, list, err)
}

func (a *Admin) putChannel(w http.ResponseWriter, r *http.Request) {
	ch := dispatch.Channel(r.PathValue("name"))
	if !ch.Valid() {
		problem(w, http.StatusBadRequest, ProblemInvalidRequest, "Invalid request",
			fmt.Sprintf("unknown channel %q: want email, sms or push", truncate(string(ch), 32)))
		return
	}
	disabled, ok := readSwitch(w, r, "disabled")
	if !ok {
		return
	}
	info, err := a.ctl.ChangeChannel(r.Context(), ch, disabled, actor(r))
	a.answer(w, r, info, err)
}

// getStatus answers the deployment's status. It does not need PostgreSQL:
// the items only PostgreSQL knows are listed unavailable while it is down.
func (a *Admin) getStatus(w http.ResponseWriter, r *http.Request) {
	if a.status == nil {
		w.Header().Set("Retry-After", "30")
		problem(w, http.StatusServiceUnavailable, ProblemUnavailable, "", "this server does not report status")
		return
	}
	writeJSON(w, http.StatusOK, a.status(r.Context()))
}

// readSwitch reads a body of one member, {"<field>": true|false}, and
// returns its value; otherwise it answers 400 and returns ok false.
func readSwitch(w http.ResponseWriter, r *http.Request, field string) (value, ok bool) {
	var req map[string]*bool
	if !readJSON(w, r, maxAdminBody, &req) {
		return false, false
	}
	v := req[field]
	delete(req, field)
	for other := range req {
		problem(w, http.StatusBadRequest, ProblemInvalidRequest, "Invalid request",
			fmt.Sprintf("body: unknown field %q; want {%q: true|false}", truncate(other, 32), field))
		return false, false
	}
	if v == nil {
		problem(w, http.StatusBadRequest, ProblemInvalidRequest, "Invalid request", `"`+field+`" is required: true or false`)
		return false, false
	}
	return *v, true
}

// AuditList is the body of GET /v1/admin/audit.
type AuditList struct {
	Entries []control.AuditEntry `json:"entries"`
}

func (a *Admin) getAudit(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	f, err := AuditQuery(r.URL.Query(), p, time.Now())
	if err != nil {
		problem(w, http.StatusBadRequest, ProblemInvalidRequest, "Invalid request", err.Error())
		return
	}
	entries, err := a.ctl.Audit(r.Context(), f)
	a.answer(w, r, AuditList{Entries: entries}, err)
}

// AuditQuery reads an audit filter from query parameters (key: a key
// prefix, actor, since: an RFC 3339 time or a duration back from now such
// as 1h, before: an entry id, limit), narrowed to what p may read: a
// tenant's key reads the entries of its own tenant's conversations only.
// The /v1/admin/audit route and the console's audit page both use it.
func AuditQuery(q url.Values, p Principal, now time.Time) (control.AuditFilter, error) {
	f := control.AuditFilter{KeyPrefix: q.Get("key"), Actor: q.Get("actor")}
	if !p.Operator() {
		f.Tenant = p.Tenant
	}
	if v := q.Get("since"); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			f.Since = now.Add(-d)
		} else if t, err := time.Parse(time.RFC3339, v); err == nil {
			f.Since = t
		} else {
			return f, fmt.Errorf("since %q: want an RFC 3339 time or a duration such as 1h", truncate(v, 64))
		}
	}
	for _, n := range []struct {
		name string
		to   *int64
	}{{"before", &f.Before}, {"limit", nil}} {
		v := q.Get(n.name)
		if v == "" {
			continue
		}
		x, err := strconv.ParseInt(v, 10, 64)
		if err != nil || x < 1 {
			return f, fmt.Errorf("%s %q: want a whole number above 0", n.name, truncate(v, 32))
		}
		if n.to != nil {
			*n.to = x
		} else {
			f.Limit = int(min(x, control.MaxAuditLimit+1))
		}
	}
	if err := checkText("key", f.KeyPrefix); err != nil {
		return f, err
	}
	return f, checkText("actor", f.Actor)
}
