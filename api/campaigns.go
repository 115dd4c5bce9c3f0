package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/wire"
)

// CampaignDeps are what the campaign API needs.
type CampaignDeps struct {
	// Pool is the Postgres pool (conversations, api_keys,
	// activation_requests; the outcome counters through errorlog.Counts). Required.
	Pool *pgxpool.Pool
	// JS publishes activations to SLUICE_BULK, which must exist
	// (orchestrator.EnsureStream). Its WithPublishAsyncMaxPending bounds the
	// unacknowledged publishes of all requests together. Required.
	JS jetstream.JetStream
	// KV is the ConversationsBucket. Default: EnsureConversationsBucket(JS,
	// Replicas).
	KV jetstream.KeyValue
	// Replicas is the ConversationsBucket's number of replicas when KV is
	// nil: 1 on one server, 3 on a three-node cluster. Default 1.
	Replicas int
	// Logger. Default: discard.
	Logger *slog.Logger
	// Registerer receives the sluice_api_* metrics. Default: none.
	Registerer prometheus.Registerer
	// Env is the deployment's environment name (SLUICE_ENV). DevTenant is
	// refused unless it is "dev".
	Env string
	// ConversationState, when set, returns the live state of a conversation
	// (active, paused, quarantined or stopped), as the control plane keeps it;
	// GET reports it, and activations to a stopped conversation are refused.
	// Default: the state column of conversations.
	ConversationState func(ctx context.Context, tenant, id string) (string, error)
	// IntakePaused, when set, is asked at each activation request; while it
	// returns true the request is answered 503 with Retry-After and nothing is
	// read. It must be cheap (a watched value). Default: never paused.
	IntakePaused func() bool

	// DevTenant, when set, lets requests without an Authorization header act
	// as this tenant with every scope, so that curl and `sluice ctl` work
	// against `sluice dev` without a key. Requests with a key are still
	// checked. Only with Env "dev". Default "" (a key is always required).
	DevTenant string
	// Sessions, when set, opens the console's sessions (AuthConfig.Sessions).
	Sessions *Sessions

	// PublishWindow is how many activations of one request may await the
	// stream's acknowledgement. Default 1024.
	PublishWindow int
	// MaxRowBytes bounds one activation row of a request body. Default 16 KiB.
	MaxRowBytes int
	// MaxVarsBytes bounds the encoded vars of one row (wire.VarsSize);
	// a row over it is refused (413, the row named) rather than accepted and
	// counted invalid (vars_too_large) by the workers. Keep it at the
	// workers' orchestrator.Config.MaxVarsBytes. Default
	// wire.DefaultMaxVarsBytes (8 KiB).
	MaxVarsBytes int
	// AckTimeout bounds the wait for one publish acknowledgement before it is
	// retried (twice, each retry waiting as long, while the retry ends within
	// DuplicateWindow of the publish). Default 5s: three attempts take 15 s,
	// half the default window.
	AckTimeout time.Duration
	// DuplicateWindow is the activation streams' duplicate window
	// (orchestrator.StreamConfig): a publish is retried only within it.
	// Default orchestrator.DefaultDuplicateWindow.
	DuplicateWindow time.Duration
	// CheckpointInterval is how often a request's progress is written to
	// Postgres (conversations.accepted, activation_requests). Default 500ms.
	CheckpointInterval time.Duration
	// LeaseDuration is how long a request with an Idempotency-Key owns it
	// without a checkpoint; a retry after a crash waits this long at most
	// before taking over, and a request that cannot write its progress for
	// about this long stops. Keep it well under DuplicateWindow, so that a
	// retry that takes over still has the rows the crashed process stored
	// recognised as duplicates. Default 10s.
	LeaseDuration time.Duration
	// IdempotencyRetention is how long an Idempotency-Key is remembered
	// after its request was first sent (PruneRequests). Default 7 days;
	// negative: forever.
	IdempotencyRetention time.Duration
}

func (d *CampaignDeps) setDefaults() {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.PublishWindow == 0 {
		d.PublishWindow = 1024
	}
	if d.MaxRowBytes == 0 {
		d.MaxRowBytes = 16 << 10
	}
	if d.MaxVarsBytes == 0 {
		d.MaxVarsBytes = wire.DefaultMaxVarsBytes
	}
	if d.AckTimeout == 0 {
		d.AckTimeout = 5 * time.Second
	}
	if d.CheckpointInterval == 0 {
		d.CheckpointInterval = 500 * time.Millisecond
	}
	if d.LeaseDuration == 0 {
		d.LeaseDuration = 10 * time.Second
	}
	if d.DuplicateWindow == 0 {
		d.DuplicateWindow = orchestrator.DefaultDuplicateWindow
	}
	if d.IdempotencyRetention == 0 {
		d.IdempotencyRetention = DefaultIdempotencyRetention
	}
}

func (d *CampaignDeps) validate() error {
	switch {
	case d.Pool == nil:
		return errors.New("api: CampaignDeps.Pool is required")
	case d.JS == nil:
		return errors.New("api: CampaignDeps.JS is required")
	case d.DevTenant != "" && d.Env != "dev":
		return fmt.Errorf("api: CampaignDeps.DevTenant serves requests without a key and is only for Env \"dev\", not %q", d.Env)
	case d.DevTenant != "" && !wire.ValidToken(d.DevTenant):
		return errors.New("api: CampaignDeps.DevTenant must be 1-64 of [A-Za-z0-9_-]")
	case d.PublishWindow < 1:
		return errors.New("api: CampaignDeps.PublishWindow must be at least 1")
	case d.MaxRowBytes < 256:
		return errors.New("api: CampaignDeps.MaxRowBytes must be at least 256")
	case d.MaxVarsBytes < 2:
		return errors.New("api: CampaignDeps.MaxVarsBytes must be at least 2 (an empty object)")
	case d.LeaseDuration < 4*d.CheckpointInterval:
		return errors.New("api: CampaignDeps.LeaseDuration must be at least 4 CheckpointIntervals")
	case d.IdempotencyRetention > 0 && d.IdempotencyRetention < time.Hour:
		return errors.New("api: CampaignDeps.IdempotencyRetention must be at least an hour (negative: forever)")
	}
	return nil
}

// Campaigns serves the campaign API.
type Campaigns struct {
	deps CampaignDeps
	pool *pgxpool.Pool
	js   jetstream.JetStream
	kv   jetstream.KeyValue
	pub  *orchestrator.Publisher
	log  *slog.Logger
	auth *Auth
	m    *apiMetrics
}

// NewCampaigns returns the campaign API; ctx bounds the creation of the KV
// bucket when deps.KV is nil.
func NewCampaigns(ctx context.Context, deps CampaignDeps) (*Campaigns, error) {
	deps.setDefaults()
	if err := deps.validate(); err != nil {
		return nil, err
	}
	if deps.DuplicateWindow <= deps.LeaseDuration {
		deps.Logger.Warn("the activation streams' duplicate window is not longer than a request's lease: a request resumed after a crash of its API process will queue again the rows that process stored but had not recorded",
			"duplicate_window", deps.DuplicateWindow, "lease", deps.LeaseDuration)
	}
	if deps.KV == nil {
		kv, err := EnsureConversationsBucket(ctx, deps.JS, deps.Replicas, deps.Logger)
		if err != nil {
			return nil, err
		}
		deps.KV = kv
	}
	auth, err := NewAuth(AuthConfig{Pool: deps.Pool, DevTenant: deps.DevTenant, Logger: deps.Logger, Registerer: deps.Registerer, Sessions: deps.Sessions})
	if err != nil {
		return nil, err
	}
	m, err := newAPIMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	if deps.DevTenant != "" {
		deps.Logger.Warn("API accepts requests without a key as the dev tenant (dev only)", "tenant", deps.DevTenant)
	}
	return &Campaigns{
		deps: deps, pool: deps.Pool, js: deps.JS, kv: deps.KV, pub: orchestrator.NewPublisher(deps.JS, deps.DuplicateWindow),
		log: deps.Logger, auth: auth, m: m,
	}, nil
}

// Auth returns the authenticator, for other routes (/v1/admin/).
func (c *Campaigns) Auth() *Auth { return c.auth }

// RequireScope guards h with an API key having scope; see Auth.RequireScope.
func (c *Campaigns) RequireScope(scope Scope, h http.Handler) http.Handler {
	return c.auth.RequireScope(scope, h)
}

// Register adds the campaign routes to s.
func (c *Campaigns) Register(s *Server) {
	c.handle(s, "POST /v1/conversations", ScopeSend, c.createConversation)
	c.handle(s, "GET /v1/conversations/{id}", ScopeRead, c.getConversation)
	c.handle(s, "POST /v1/conversations/{id}/activations", ScopeSend, c.postActivations)
	s.Handle("GET /v1/openapi.json", c.Instrument("GET /v1/openapi.json", http.HandlerFunc(serveOpenAPI)))
}

func (c *Campaigns) handle(s *Server, pattern string, scope Scope, h http.HandlerFunc) {
	s.Handle(pattern, c.Instrument(pattern, c.auth.RequireScope(scope, h)))
}

// Instrument counts h's requests and their durations under route (a
// pattern, never a raw path) in sluice_api_requests_total and
// sluice_api_request_duration_seconds.
func (c *Campaigns) Instrument(route string, h http.Handler) http.Handler {
	labels := prometheus.Labels{"route": route}
	return promhttp.InstrumentHandlerDuration(c.m.duration.MustCurryWith(labels),
		promhttp.InstrumentHandlerCounter(c.m.requests.MustCurryWith(labels), h))
}

type apiMetrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	accepted  *prometheus.CounterVec
	rowErrors *prometheus.CounterVec
}

func newAPIMetrics(reg prometheus.Registerer) (*apiMetrics, error) {
	m := &apiMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sluice", Subsystem: "api", Name: "requests_total",
			Help: "HTTP requests of the API by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "sluice", Subsystem: "api", Name: "request_duration_seconds",
			Help:    "Duration of API requests by route pattern; activation uploads can take minutes.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10), // 1ms .. 262s
		}, []string{"route"}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sluice", Subsystem: "api", Name: "activations_accepted_total",
			Help: "Activations published by the API and acknowledged by the stream, by lane.",
		}, []string{"lane"}),
		rowErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sluice", Subsystem: "api", Name: "activation_requests_failed_total",
			Help: "Activation requests that ended before their last row, by cause (row, body, publish, progress).",
		}, []string{"cause"}),
	}
	if reg != nil {
		for _, col := range []prometheus.Collector{m.requests, m.duration, m.accepted, m.rowErrors} {
			if err := reg.Register(col); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
