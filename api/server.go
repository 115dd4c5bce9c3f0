package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports whether one dependency is usable.
type Check func(ctx context.Context) error

// Config configures the HTTP server.
type Config struct {
	// Addr is the listen address. Default 127.0.0.1:8080.
	Addr string
	// Checks are run by /readyz, by name ("nats", "postgres").
	Checks map[string]Check
	// Gatherer is served on /metrics. Required.
	Gatherer prometheus.Gatherer
	// CheckTimeout bounds each readiness check. Default 2s.
	CheckTimeout time.Duration
}

// Server serves sluice's HTTP endpoints.
type Server struct {
	cfg Config
	mux *http.ServeMux
	srv *http.Server
	ln  net.Listener
	log *slog.Logger

	mu     sync.Mutex
	routes []string
}

// New builds a server; routes may be added with Handle before Start.
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8080"
	}
	if cfg.CheckTimeout == 0 {
		cfg.CheckTimeout = 2 * time.Second
	}
	if cfg.Gatherer == nil {
		return nil, errors.New("api: Config.Gatherer is required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), log: logger}
	s.Handle("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	s.Handle("GET /readyz", http.HandlerFunc(s.readyz))
	s.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	return s, nil
}

// Handle registers a route, as http.ServeMux.Handle. Give patterns a method
// ("GET /v1/..."): every route must be described in the OpenAPI document, by
// method and path, and a test checks it.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mu.Lock()
	s.routes = append(s.routes, pattern)
	s.mu.Unlock()
	s.mux.Handle(pattern, h)
}

// Routes returns the registered patterns in registration order.
func (s *Server) Routes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.routes)
}

// ServeHTTP routes r. The mux's own answers, unknown path (404) and method
// not allowed (405, with its Allow header), are turned into problem
// documents like every other error of the API, and a path that is not
// canonical (an empty segment) is 404, never a redirect; a panicking handler gets a
// 500 problem when nothing was written yet.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A path the mux would clean (an empty segment, "." or "..") is routed
	// nowhere: the mux would redirect, and a redirect is no answer for an
	// API client, which does not follow it with its body.
	if _, pattern := s.mux.Handler(r); pattern == "" || !canonical(r.URL.Path) {
		s.unrouted(w, r)
		return
	}
	rw := &trackingWriter{ResponseWriter: w}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("http handler panicked", "method", r.Method, "path", r.URL.Path, "panic", v)
			if !rw.wrote {
				problem(rw, http.StatusInternalServerError, ProblemInternal, "", "internal error")
			}
		}
	}()
	s.mux.ServeHTTP(rw, r)
}

// canonical reports whether p is a path the mux would not clean: no empty
// segment, "." or ".."; a trailing slash is kept (/console/).
func canonical(p string) bool {
	c := path.Clean(p)
	return c == p || c+"/" == p && c != "/"
}

// unrouted answers a request no pattern matches: 405 with the Allow header
// when the path exists under another method, 404 otherwise, whatever else
// the mux would have answered (a redirect without Location for
// "/v1/conversations//activations").
func (s *Server) unrouted(w http.ResponseWriter, r *http.Request) {
	h, _ := s.mux.Handler(r)
	rec := &headerRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	p := Problem{Status: http.StatusNotFound, Detail: "no route for " + r.Method + " " + truncate(r.URL.Path, 200)}
	if allow := rec.header.Get("Allow"); rec.status == http.StatusMethodNotAllowed && allow != "" {
		w.Header().Set("Allow", allow)
		p.Status = http.StatusMethodNotAllowed
		p.Detail = r.Method + " is not allowed on " + truncate(r.URL.Path, 200) + "; allowed: " + allow
	}
	WriteProblem(w, p)
}

// headerRecorder captures the status and headers of the mux's 404/405
// handler and discards its plain-text body.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header { return h.header }
func (h *headerRecorder) Write(b []byte) (int, error) {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	return len(b), nil
}
func (h *headerRecorder) WriteHeader(code int) {
	if h.status == 0 {
		h.status = code
	}
}

// trackingWriter remembers whether the response was started.
type trackingWriter struct {
	http.ResponseWriter
	wrote bool
}

func (t *trackingWriter) WriteHeader(code int) {
	t.wrote = true
	t.ResponseWriter.WriteHeader(code)
}

func (t *trackingWriter) Write(b []byte) (int, error) {
	t.wrote = true
	return t.ResponseWriter.Write(b)
}

// Flush sends what is buffered, for handlers that stream.
func (t *trackingWriter) Flush() {
	t.wrote = true
	_ = http.NewResponseController(t.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection (flush,
// deadlines).
func (t *trackingWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }

// Start listens and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("api: listen %s: %w", s.cfg.Addr, err)
	}
	s.ln = ln
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", "err", err)
		}
	}()
	return nil
}

// Addr returns the address the server listens on, once started.
func (s *Server) Addr() string {
	if s.ln == nil {
		return s.cfg.Addr
	}
	return s.ln.Addr().String()
}

// Stop shuts the server down gracefully.
func (s *Server) Stop(ctx context.Context) error { return s.srv.Shutdown(ctx) }

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	names := make([]string, 0, len(s.cfg.Checks))
	for name := range s.cfg.Checks {
		names = append(names, name)
	}
	sort.Strings(names)
	results := make(map[string]string, len(names))
	status := http.StatusOK
	for _, name := range names {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.CheckTimeout)
		err := s.cfg.Checks[name](ctx)
		cancel()
		if err != nil {
			results[name] = err.Error()
			status = http.StatusServiceUnavailable
			continue
		}
		results[name] = "ok"
	}
	verdict := "ready"
	if status != http.StatusOK {
		verdict = "not ready"
	}
	writeJSON(w, status, map[string]any{"status": verdict, "checks": results})
}

// writeJSON answers with v as JSON, not to be cached: the one JSON writer of
// every route (problem documents have WriteProblem).
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
