package api

import (
	"context"
	"encoding/hex"
	"errors"
	"html/template"
	"net/http"

	"github.com/sluicehq/sluice/suppression"
	"github.com/sluicehq/sluice/unsubscribe"
)

// UnsubscribeConfig configures the /u/{token} routes.
type UnsubscribeConfig struct {
	// Store is the suppression lists; Signer checks the links. Either nil
	// (no mask key) answers 503.
	Store  *suppression.Store
	Signer *unsubscribe.Signer
	// Audit records each unsubscription (control.Store's RecordChange).
	// Required.
	Audit func(ctx context.Context, key, actor string, old, cur any) error
}

// Unsubscribe answers the List-Unsubscribe links of bulk email, without a
// key: the signed token in the path is the credential.
//
//	GET  /u/{token}   a small page naming the effect, with a button that POSTs
//	POST /u/{token}   one-click unsubscribe (RFC 8058): the recipient is put on
//	                  the tenant's suppression list, source unsubscribe
//
// GET never unsubscribes: mail scanners and link previews fetch links.
// POST is what mailbox providers send for one click
// (body List-Unsubscribe=One-Click) and what the page's button sends;
// both answer 200 with a page, and again 200 for a recipient already off
// the list. A forged or damaged token is 404.
type Unsubscribe struct {
	c     *Campaigns
	cfg   UnsubscribeConfig
	pages *template.Template
}

var unsubscribePages = template.Must(template.New("confirm").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Unsubscribe</title></head><body style="font-family:sans-serif;max-width:32em;margin:3em auto">
{{if .Done}}<h1>You are unsubscribed</h1><p>You will not receive these messages any more.</p>
{{else}}<h1>Unsubscribe?</h1><p>Stop receiving messages from this sender at this address.</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button></form>{{end}}
</body></html>
`))

// NewUnsubscribe returns the unsubscribe routes, instrumented by c.
func NewUnsubscribe(c *Campaigns, cfg UnsubscribeConfig) (*Unsubscribe, error) {
	if c == nil {
		return nil, errors.New("api: NewUnsubscribe needs the Campaigns (metrics)")
	}
	if cfg.Audit == nil {
		return nil, errors.New("api: UnsubscribeConfig.Audit is required")
	}
	return &Unsubscribe{c: c, cfg: cfg, pages: unsubscribePages}, nil
}

// Register adds the routes to s.
func (u *Unsubscribe) Register(s *Server) {
	for _, p := range []string{"GET /u/{token}", "POST /u/{token}"} {
		s.Handle(p, u.c.Instrument(p, http.HandlerFunc(u.serve)))
	}
}

func (u *Unsubscribe) serve(w http.ResponseWriter, r *http.Request) {
	if u.cfg.Store == nil || u.cfg.Signer == nil {
		problem(w, http.StatusServiceUnavailable, ProblemUnavailable, "Unsubscribe not configured",
			"this server has no mask key (SLUICE_ERRORLOG_MASK_KEY) to check unsubscribe links with")
		return
	}
	claim, err := u.cfg.Signer.Parse(r.PathValue("token"))
	if err != nil {
		problem(w, http.StatusNotFound, ProblemNotFound, "", "this unsubscribe link is not valid")
		return
	}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
		e, created, err := u.cfg.Store.AddHash(r.Context(), claim.Tenant, claim.Hash, claim.Kind, "unsubscribed", suppression.SourceUnsubscribe)
		if err == nil && created {
			err = u.cfg.Audit(r.Context(), "suppression."+claim.Tenant+"."+hex.EncodeToString(claim.Hash[:]), "unsubscribe:"+claim.Conversation, nil, e)
		}
		if err != nil {
			u.c.log.Error("unsubscribe failed", "tenant", claim.Tenant, "err", err)
			w.Header().Set("Retry-After", "2")
			problem(w, http.StatusServiceUnavailable, ProblemUnavailable, "", "the unsubscription could not be stored; retry")
			return
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
	w.WriteHeader(http.StatusOK)
	_ = u.pages.Execute(w, struct{ Done bool }{r.Method == http.MethodPost})
}
