// Package api is sluice's HTTP surface: health (/healthz), readiness
// (/readyz, which checks NATS and Postgres), Prometheus metrics (/metrics),
// and the routes of the campaign API (/v1/) and of operations (/v1/admin/).
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
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
	s := &Server{cfg: cfg, mux: http.NewServeMux(), log: logger}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	s.srv = &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	return s, nil
}

// Handle registers a route, as http.ServeMux.Handle.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

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

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
