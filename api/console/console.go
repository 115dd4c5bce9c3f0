package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/orchestrator/control"
	"github.com/sluicehq/sluice/status"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// Defaults of Config.
const (
	// DefaultInterval is Config.Interval's default.
	DefaultInterval = time.Second
	// DefaultHistory is Config.History's default.
	DefaultHistory = 5 * time.Minute
	// DefaultStormWindow is Config.StormWindow's default.
	DefaultStormWindow = 5 * time.Minute
)

// Config configures the console.
type Config struct {
	// Auth signs in and identifies the console's users. Required.
	Auth *api.Auth
	// Control is the deployment's control plane. Required.
	Control *control.Store
	// Pool is the deployment's PostgreSQL (conversations, counts, audit).
	// Required.
	Pool *pgxpool.Pool
	// JS is the deployment's JetStream (queued messages). Required.
	JS jetstream.JetStream
	// Status gathers the fleet's status (the overview). Required.
	Status func(ctx context.Context) status.Report
	// Gatherer is the node's metrics registry, sampled for the lanes'
	// charts. Default: no charts.
	Gatherer prometheus.Gatherer
	// Logger. Default: discard.
	Logger *slog.Logger
	// Interval is how often live pages are updated and metrics sampled.
	// Default DefaultInterval (1s).
	Interval time.Duration
	// History is the span of the overview's charts. Default
	// DefaultHistory (5m).
	History time.Duration
	// StormWindow is the storm view's window. Default DefaultStormWindow.
	StormWindow time.Duration
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.History <= 0 {
		c.History = DefaultHistory
	}
	if c.StormWindow <= 0 {
		c.StormWindow = DefaultStormWindow
	}
}

func (c *Config) validate() error {
	switch {
	case c.Auth == nil:
		return errors.New("console: Config.Auth is required")
	case c.Control == nil:
		return errors.New("console: Config.Control is required")
	case c.Pool == nil:
		return errors.New("console: Config.Pool is required")
	case c.JS == nil:
		return errors.New("console: Config.JS is required")
	case c.Status == nil:
		return errors.New("console: Config.Status is required")
	}
	return nil
}

// Console serves the web console under /console/.
type Console struct {
	cfg     Config
	log     *slog.Logger
	pages   map[string]*template.Template
	regions *template.Template
	sampler *sampler
	done    chan struct{} // closed by Run's end: live streams end
}

// pageNames are the pages, each templates/<name>.html defining "content".
var pageNames = []string{"overview", "storm", "conversations", "conversation", "audit", "signin", "error"}

// New checks cfg and parses the templates.
func New(cfg Config) (*Console, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	c := &Console{cfg: cfg, log: cfg.Logger.With("component", "console"), pages: map[string]*template.Template{},
		sampler: newSampler(cfg.Gatherer, cfg.History, cfg.Interval), done: make(chan struct{})}
	base, err := template.New("layout").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/regions.html")
	if err != nil {
		return nil, fmt.Errorf("console: templates: %w", err)
	}
	c.regions = base
	for _, name := range pageNames {
		t, err := template.Must(base.Clone()).ParseFS(templateFS, "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		c.pages[name] = t
	}
	return c, nil
}

// Run samples the metrics for the charts until ctx ends, then ends the
// live streams (so that the HTTP server's shutdown does not wait for them).
func (c *Console) Run(ctx context.Context) {
	defer close(c.done)
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		c.sampler.sample(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Register adds the console's routes to s (each described in the OpenAPI
// document, tag console).
func (c *Console) Register(s *api.Server) {
	s.Handle("GET /console", http.RedirectHandler("/console/", http.StatusPermanentRedirect))
	s.Handle("GET /console/{$}", c.page("overview", c.overview))
	s.Handle("GET /console/storm", c.page("storm", c.storm))
	s.Handle("GET /console/conversations", c.page("conversations", c.conversations))
	s.Handle("GET /console/conversations/{tenant}/{id}", c.page("conversation", c.conversation))
	s.Handle("GET /console/audit", c.page("audit", c.audit))
	s.Handle("GET /console/live", c.guard(http.HandlerFunc(c.live)))
	s.Handle("GET /console/signin", secured(http.HandlerFunc(c.signInPage)))
	s.Handle("POST /console/signin", secured(http.HandlerFunc(c.signIn)))
	s.Handle("POST /console/signout", secured(http.HandlerFunc(c.signOut)))
	assets, _ := fs.Sub(assetFS, "assets")
	s.Handle("GET /console/assets/{name}", http.StripPrefix("/console/assets/", assetServer(assets)))
}

// secured sets the headers of every console answer: nothing from another
// origin (no CDN: the console works air-gapped), no framing, no caching.
func secured(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "+
			"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "same-origin") // no-referrer would make form posts send Origin: null
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// assetServer serves the embedded assets, a short cache allowed.
func assetServer(fsys fs.FS) http.Handler {
	files := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/") || path.Ext(r.URL.Path) == "" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "public, max-age=300")
		files.ServeHTTP(w, r)
	})
}

type principalKey struct{}

// guard lets through the requests of a signed-in user (or the dev
// identity), with its principal in the context; others go to the sign-in
// page, saying why.
func (c *Console) guard(h http.Handler) http.Handler {
	return secured(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := c.cfg.Auth.Identify(r)
		switch {
		case errors.Is(err, api.ErrKeyStore):
			c.render(w, r, http.StatusServiceUnavailable, "error", view{Title: "Unavailable", Body: "The key store (PostgreSQL) cannot be reached; retry shortly."})
			return
		case err != nil:
			q := url.Values{}
			if errors.Is(err, api.ErrSessionExpired) {
				q.Set("why", "expired")
			} else if !errors.Is(err, api.ErrNoSession) {
				q.Set("why", "invalid")
			}
			if r.Header.Get("Accept") == "text/event-stream" {
				http.Error(w, "sign in again", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/console/signin?"+q.Encode(), http.StatusSeeOther)
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(api.WithPrincipal(r.Context(), p), principalKey{}, p)))
	}))
}

// principal is who the request acts for, as guard found it.
func principal(r *http.Request) api.Principal {
	p, _ := r.Context().Value(principalKey{}).(api.Principal)
	return p
}

// view is what every page's template gets.
type view struct {
	Title string
	// Nav is the page's name, to mark it in the navigation.
	Nav  string
	Who  who
	CSRF string
	// Live is the query of /console/live for this page ("" for a page
	// that is not live).
	Live string
	Body any
}

// who is the signed-in identity as pages show it.
type who struct {
	Actor    string
	Tenant   string
	Operator bool
	Dev      bool
}

// page serves a page: build returns its title, live query and body, or an
// error (a *pageError for a status of its own).
func (c *Console) page(name string, build func(r *http.Request, p api.Principal) (view, error)) http.Handler {
	return c.guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := principal(r)
		v, err := build(r, p)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		v.Nav = name
		c.render(w, r, http.StatusOK, name, v)
	}))
}

// pageError is a page's refusal with its status.
type pageError struct {
	status int
	msg    string
}

func (e *pageError) Error() string { return e.msg }

func notFound(what string) error {
	return &pageError{http.StatusNotFound, what + " not found (or not yours to see)"}
}

func badRequest(msg string) error { return &pageError{http.StatusBadRequest, msg} }

// fail renders the error page.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	var pe *pageError
	if !errors.As(err, &pe) {
		c.log.Error("console page failed", "path", r.URL.Path, "err", err)
		pe = &pageError{http.StatusInternalServerError, "Something failed on the server; see its log."}
	}
	c.render(w, r, pe.status, "error", view{Title: http.StatusText(pe.status), Body: pe.msg})
}

// render executes a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, code int, name string, v view) {
	p, ok := r.Context().Value(principalKey{}).(api.Principal)
	if !ok && name == "signin" {
		p, _ = c.cfg.Auth.Identify(r) // the dev identity needs no sign-in
	}
	if p.KeyID != "" {
		v.Who = who{Actor: p.Actor(), Tenant: p.Tenant, Operator: p.Operator(), Dev: p.KeyID == "dev" && p.Name == "dev"}
		v.CSRF = c.cfg.Auth.CSRFToken(r)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if err := c.pages[name].ExecuteTemplate(w, "layout", v); err != nil {
		c.log.Error("console template failed", "page", name, "err", err)
	}
}

func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	msg := map[string]string{
		"expired": "Your session expired: sign in again.",
		"invalid": "Your session is no longer valid (signed out, or its key was revoked): sign in again.",
	}[r.URL.Query().Get("why")]
	c.render(w, r, http.StatusOK, "signin", view{Title: "Sign in", Body: signInBody{Message: msg}})
}

// signInBody is the sign-in page's content.
type signInBody struct {
	Message string
	Refused bool
}

// sameOrigin reports whether a form post comes from this site: a browser
// sends Origin (and Sec-Fetch-Site) with every POST; either naming another
// site refuses it (login CSRF).
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		c.render(w, r, http.StatusForbidden, "error", view{Title: "Forbidden", Body: "A sign-in from another site is refused."})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	_, err := c.cfg.Auth.SignIn(w, r, strings.TrimSpace(r.PostFormValue("key")))
	if err != nil {
		msg := "This key is not valid (unknown, revoked or mistyped)."
		code := http.StatusUnauthorized
		switch {
		case errors.Is(err, api.ErrConsoleScope):
			msg, code = "This key may not use the console: it needs an operator key, or a tenant key with the admin scope.", http.StatusForbidden
		case errors.Is(err, api.ErrKeyStore):
			msg, code = "The key store (PostgreSQL) cannot be reached; retry shortly.", http.StatusServiceUnavailable
		case errors.Is(err, api.ErrNoSessions):
			msg, code = "This server opens no console sessions.", http.StatusServiceUnavailable
		}
		c.render(w, r, code, "signin", view{Title: "Sign in", Body: signInBody{Message: msg, Refused: true}})
		return
	}
	http.Redirect(w, r, "/console/", http.StatusSeeOther)
}

func (c *Console) signOut(w http.ResponseWriter, r *http.Request) {
	if !c.cfg.Auth.CheckCSRF(r) {
		c.render(w, r, http.StatusForbidden, "error", view{Title: "Forbidden", Body: "The sign-out form's CSRF token is missing or wrong; reload the page."})
		return
	}
	c.cfg.Auth.SignOut(w, r)
	http.Redirect(w, r, "/console/signin", http.StatusSeeOther)
}
