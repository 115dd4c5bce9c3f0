// Package node wires one sluice process: a NATS connection, a Postgres pool
// with migrations applied, the error log, the worker pipeline and the HTTP
// server, in the roles it is given (API, worker or both). `sluice serve`,
// `sluice dev` and the load test all start a Node; they differ only in where
// NATS, Postgres and the providers come from.
//
// Shutdown order (Stop): stop consuming and finish in-flight messages, flush
// the error log (which sends the acks of recorded messages), flush NATS, stop
// HTTP, close the Postgres pool.
package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/api/console"
	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/feedback"
	"github.com/sluicehq/sluice/internal/migrate"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/control"
	"github.com/sluicehq/sluice/status"
	"github.com/sluicehq/sluice/suppression"
	"github.com/sluicehq/sluice/unsubscribe"
	"github.com/sluicehq/sluice/webhook"
)

// Config configures a Node.
type Config struct {
	// NATSURL is the NATS server to connect to. Required.
	NATSURL string
	// DatabaseURL is the Postgres database. Required.
	DatabaseURL string
	// HTTPAddr is the HTTP listen address. Default 127.0.0.1:8080.
	HTTPAddr string
	// Worker runs the pipeline; API serves the HTTP API. Health, readiness
	// and metrics are served in either role. At least one must be set.
	Worker, API bool
	// Migrate applies pending migrations at start. `sluice dev` sets it;
	// production runs `sluice migrate` as its own step.
	Migrate  bool
	Pipeline orchestrator.Config
	// Replicas is the replica count of every stream and bucket the node
	// uses (SLUICE_BULK, SLUICE_ERRORLOG_SPILL, KV_sluice_control,
	// KV_sluice_conversations): 1 on one server, 3 on a three-node cluster.
	// Existing ones are scaled to it at start (see internal/jsensure).
	// Default 1.
	Replicas int
	// Stream configures the activation streams; its Replicas, when 0, is
	// Replicas. Its DuplicateWindow also bounds the API's publish retries.
	Stream   orchestrator.StreamConfig
	ErrorLog errorlog.Config
	// Providers by channel, for the worker role.
	Providers map[dispatch.Channel]dispatch.Provider
	// Name is the NATS connection name. Default "sluice".
	Name string
	// Env is the deployment's environment name (SLUICE_ENV): dev, test,
	// staging or production. Default "dev".
	Env string
	// DevTenant lets API requests without a key act as this tenant with
	// every scope. Only `sluice dev` sets it; refused unless Env is dev.
	DevTenant string
	// StopSettle is how long a conversation stop waits for the workers
	// before purging (control.StopConfig.Settle). Default 2s.
	StopSettle time.Duration
	// IdempotencyRetention is how long the API remembers an
	// Idempotency-Key (api.CampaignDeps.IdempotencyRetention); an API node
	// forgets older ones every hour. Default 7 days; negative: forever.
	IdempotencyRetention time.Duration
	// SweepInterval is how often a worker looks for stopped conversations
	// that still hold queued messages (published by a request that was
	// running when the stop came) to purge and count them; SweepMinAge is
	// how long after a stop it may (the stop's own settle and purge come
	// first; keep it well above StopSettle). Defaults 10s and 30s.
	SweepInterval, SweepMinAge time.Duration
	// Quarantine configures automatic quarantine in the worker role; its
	// zero value (Ratio 0) turns it off.
	Quarantine orchestrator.QuarantineConfig
	// PublicURL is the base URL recipients reach the API at
	// ("https://mail.example.com"); bulk email carries List-Unsubscribe
	// links under it (PublicURL/u/<token>). Default "": no
	// List-Unsubscribe headers.
	PublicURL string
	// UnsubscribeKey signs the unsubscribe links (at least 16 bytes).
	// Default: a key derived from ErrorLog.MaskKey. Changing it (or the
	// mask key) invalidates the links already sent.
	UnsubscribeKey []byte
	// Feedback are the thresholds of POST /v1/feedback's pause; zero
	// fields take feedback's defaults (complaints 0.3 %, hard bounces 5 %,
	// over at least 1000 delivered).
	Feedback feedback.Thresholds
	// Collectors are registered on the node's registry (provider breakers).
	Collectors []prometheus.Collector
	// TopErrors configures the API role's export of the conversations
	// writing the most errors (errorlog.TopExporter: at most 10 series,
	// refreshed every 15s over 5 minutes by default).
	TopErrors errorlog.TopExportConfig
	// Breakers are the providers' breakers, which the heartbeat reports
	// (providerset.Set.Guards).
	Breakers []Breaker
	// Version is the build's version, which the heartbeat reports. Default
	// "unknown".
	Version string
	// SessionTTL is how long a console session lasts after sign-in.
	// Default api.DefaultSessionTTL (8h).
	SessionTTL time.Duration
	// ConsoleInterval is how often the console's live pages update and its
	// charts sample. Default console.DefaultInterval (1s).
	ConsoleInterval time.Duration
	// HeartbeatInterval is how often the process announces itself in the
	// control bucket. Default control.HeartbeatInterval (5s); readers count
	// a process gone after control.HeartbeatGoneAfter (15s) whatever it is,
	// so only tests shorten it.
	HeartbeatInterval time.Duration
	// Webhooks configures the delivery of delivery-status webhooks (the
	// worker role's dispatcher, the API role's replays). Its AllowInternal
	// is forced on in the dev and test environments and off elsewhere:
	// endpoints on loopback or private addresses are refused outside them.
	Webhooks webhook.DispatcherConfig
	// WebhookQueue is how many events wait to be published to the webhook
	// events stream; more are dropped and counted
	// (sluice_webhook_events_dropped_total). Default webhook.QueueDefault.
	WebhookQueue int
}

// Node is one running sluice process.
type Node struct {
	cfg      Config
	log      *slog.Logger
	Registry *prometheus.Registry
	NC       *nats.Conn
	JS       jetstream.JetStream
	txNC     *nats.Conn // the transactional lane's own connection (workers)
	Pool     *pgxpool.Pool
	ErrorLog *errorlog.Log
	Service  *orchestrator.Service
	// Suppressions is the worker role's copy of the suppression lists (nil
	// without a mask key).
	Suppressions *suppression.Mirror
	HTTP         *api.Server
	Control      *control.Store
	// WebhookEvents produces delivery-status events (both roles);
	// Webhooks delivers them (worker role).
	WebhookEvents *webhook.Publisher
	Webhooks      *webhook.Dispatcher

	webhookStore   *webhook.Store
	webhookMetrics *webhook.Metrics
	replayer       *webhook.Replayer

	systemID      string             // the PostgreSQL cluster's system identifier, checked at start
	stopWatch     context.CancelFunc // ends the control-plane watchers
	hb            control.Heartbeat  // what the heartbeat announces, load aside
	stopHeartbeat func()             // ends the heartbeat loop
	watchers      sync.WaitGroup

	gaugesOnce sync.Once
	gauges     *control.SwitchGauges
	gaugesErr  error
}

// Start connects, migrates if asked, and starts the configured roles. On
// error everything already started is stopped.
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (_ *Node, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	n := &Node{cfg: cfg, log: logger, Registry: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = n.Stop(stopCtx)
		}
	}()
	if err := n.registerMetrics(); err != nil {
		return nil, err
	}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	n.stopWatch = stopWatch

	stream, err := n.connectNATS(ctx)
	if err != nil {
		return nil, err
	}
	if err := n.connectPostgres(ctx); err != nil {
		return nil, err
	}
	// Created replicated before the environment fence reads it.
	if _, err := control.EnsureBucket(ctx, n.JS, cfg.Replicas, logger); err != nil {
		return nil, err
	}
	if err := n.checkEnv(ctx); err != nil {
		return nil, err
	}
	if err := n.startWebhookEvents(ctx); err != nil {
		return nil, err
	}
	n.Control, err = control.Open(ctx, n.JS, n.Pool, logger, control.Options{DefaultErrorLogMode: cfg.ErrorLog.Mode, Replicas: cfg.Replicas,
		Events: n.WebhookEvents})
	if err != nil {
		return nil, err
	}
	if cfg.Worker {
		if err := n.startWorker(ctx, watchCtx, stream); err != nil {
			return nil, err
		}
	}
	if err := n.startHTTP(ctx, watchCtx); err != nil {
		return nil, err
	}
	n.startHeartbeat(ctx)
	return n, nil
}

// validate checks that the config names a role, NATS and Postgres.
func (cfg *Config) validate() error {
	if !cfg.Worker && !cfg.API {
		return errors.New("node: at least one of Worker and API must be set")
	}
	if cfg.NATSURL == "" {
		return errors.New("node: NATSURL is required")
	}
	if cfg.DatabaseURL == "" {
		return errors.New("node: DatabaseURL is required")
	}
	if cfg.Replicas < 0 || cfg.Replicas > 5 {
		return fmt.Errorf("node: Replicas must be 1 to 5 (0 means 1), not %d", cfg.Replicas)
	}
	if len(cfg.UnsubscribeKey) > 0 && len(cfg.UnsubscribeKey) < unsubscribe.MinKeyBytes {
		return fmt.Errorf("node: UnsubscribeKey: want at least %d bytes", unsubscribe.MinKeyBytes)
	}
	if cfg.PublicURL != "" {
		if u, err := url.Parse(cfg.PublicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("node: PublicURL %q: want an absolute http(s) URL", cfg.PublicURL)
		}
	}
	fb := cfg.Feedback
	fb.SetDefaults()
	return fb.Validate()
}

// setDefaults fills the connection name, the environment, the version, the
// heartbeat interval and the replicas.
func (cfg *Config) setDefaults() {
	cfg.Replicas = max(cfg.Replicas, 1)
	cfg.Stream.Replicas = cmp.Or(cfg.Stream.Replicas, cfg.Replicas)
	cfg.ErrorLog.SpillReplicas = cmp.Or(cfg.ErrorLog.SpillReplicas, cfg.Replicas)
	if cfg.Name == "" {
		cfg.Name = "sluice"
	}
	if cfg.Env == "" {
		cfg.Env = "dev"
	}
	if cfg.Version == "" {
		cfg.Version = "unknown"
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = control.HeartbeatInterval
	}
	cfg.Webhooks.AllowInternal = cfg.Env == control.EnvDev || cfg.Env == control.EnvTest
	cfg.Webhooks.Replicas = cmp.Or(cfg.Webhooks.Replicas, cfg.Replicas)
}

// registerMetrics registers the Go and process collectors and the
// configured ones (provider breakers) on the node's registry.
func (n *Node) registerMetrics() error {
	n.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, c := range n.cfg.Collectors {
		if err := n.Registry.Register(c); err != nil {
			return fmt.Errorf("node: register metrics: %w", err)
		}
	}
	return nil
}

// dialNATS opens a connection to NATS that reconnects forever.
func (n *Node) dialNATS(name string) (*nats.Conn, error) {
	logger := n.log.With("conn", name)
	nc, err := nats.Connect(n.cfg.NATSURL,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { logger.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
	)
	if err != nil {
		return nil, fmt.Errorf("node: connect nats %s: %w", n.cfg.NATSURL, err)
	}
	return nc, nil
}

// connectNATS connects to NATS (reconnecting forever), opens JetStream and
// ensures the activations stream, which it returns.
func (n *Node) connectNATS(ctx context.Context) (jetstream.Stream, error) {
	var err error
	if n.NC, err = n.dialNATS(n.cfg.Name); err != nil {
		return nil, err
	}
	n.JS, err = jetstream.New(n.NC, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		return nil, fmt.Errorf("node: jetstream: %w", err)
	}
	sc := n.cfg.Stream
	sc.Logger = n.log
	streams, err := orchestrator.EnsureStreams(ctx, n.JS, sc)
	return streams.Bulk, err
}

// connectPostgres opens and pings the pool, logs which Postgres answered,
// and applies pending migrations if the config asks.
func (n *Node) connectPostgres(ctx context.Context) error {
	var err error
	n.Pool, err = pgxpool.New(ctx, n.cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("node: postgres: %w", err)
	}
	if err := n.Pool.Ping(ctx); err != nil {
		return fmt.Errorf("node: postgres: %w", err)
	}
	if !n.cfg.Migrate {
		return nil
	}
	applied, err := migrate.Up(ctx, n.Pool, migrate.Options{Logger: n.log})
	if err != nil {
		return err
	}
	if len(applied) > 0 {
		n.log.Info("migrations applied", "versions", applied)
	}
	return nil
}

// checkEnv runs the fences: a process configured for another environment
// than the database's or NATS's stops here, and so does one that finds
// another PostgreSQL cluster behind its URL than the deployment is bound
// to (control.CheckDatabase).
func (n *Node) checkEnv(ctx context.Context) error {
	if err := control.CheckEnv(ctx, n.JS, n.Pool, n.cfg.Env, n.cfg.Name); err != nil {
		return err
	}
	id, err := control.CheckDatabase(ctx, n.JS, n.Pool, n.cfg.Name)
	if err != nil {
		return err
	}
	n.systemID = id
	var db string
	_ = n.Pool.QueryRow(ctx, `SELECT current_database()`).Scan(&db)
	n.log.Info("environment", "env", n.cfg.Env, "postgres_system_identifier", id, "database", db)
	return nil
}

// startWorker starts the worker role: the error log, the pipeline with
// automatic quarantine, the control-plane watchers it follows, its lanes
// and the sweep of stopped conversations. The watchers run until watchCtx
// ends.
func (n *Node) startWorker(ctx, watchCtx context.Context, stream jetstream.Stream) error {
	if err := n.startErrorLog(ctx, watchCtx, stream); err != nil {
		return err
	}
	if err := n.newPipeline(watchCtx); err != nil {
		return err
	}
	if err := n.startSuppressions(ctx); err != nil {
		return err
	}
	n.Service.SetNotifier(n.WebhookEvents)
	if err := n.startWebhookDispatcher(ctx); err != nil {
		return err
	}
	// The lanes start once the current states are known, so that a
	// paused conversation is not fetched by a worker just started.
	if err := n.followConversationsAndChannels(ctx, watchCtx); err != nil {
		return err
	}
	if err := n.Service.Start(ctx); err != nil {
		return err
	}
	n.watchers.Go(func() { n.sweepLoop(watchCtx) })
	return nil
}

// startErrorLog starts the error log, spilling to JetStream, and has it
// follow the fleet's error-log mode.
func (n *Node) startErrorLog(ctx, watchCtx context.Context, stream jetstream.Stream) error {
	elc := n.cfg.ErrorLog
	// Error-log events are identified across redeliveries by their
	// sequence in this stream; its creation time tells a recreated
	// stream (sequences restarting at 1) from the old one.
	elc.Source = orchestrator.Source(stream.CachedInfo())
	elc.Spill = n.JS
	var err error
	n.ErrorLog, err = errorlog.New(n.Pool, elc, n.log, n.Registry)
	if err != nil {
		return err
	}
	if err := n.ErrorLog.Start(ctx); err != nil {
		return err
	}
	// The fleet's error-log mode lives in the control plane; every worker
	// follows it within a second of a change.
	n.watch(func() error { return n.Control.WatchErrorLogMode(watchCtx, n.ErrorLog.SetMode) }, "errorlog mode")
	return nil
}

// suppressionHasher returns the hasher of suppressed addresses, keyed
// with the error log's mask key, or nil without one (addresses kept in
// clear): suppression is then off, and said so.
func (n *Node) suppressionHasher() *suppression.Hasher {
	h, err := suppression.NewHasher(n.cfg.ErrorLog.MaskKey)
	if err != nil {
		n.log.Warn("suppression is off: it hashes addresses with the error log's mask key, and none is configured (SLUICE_ERRORLOG_MASK_KEY)")
		return nil
	}
	return h
}

// startSuppressions loads the suppression lists into memory, follows their
// changes and has the pipeline check them before every send.
func (n *Node) startSuppressions(ctx context.Context) error {
	h := n.suppressionHasher()
	if h == nil {
		return nil
	}
	m := suppression.NewMirror(n.Pool, n.JS, h, 0, n.log)
	if err := m.Start(ctx); err != nil {
		return err
	}
	n.Suppressions = m
	n.Service.SetSuppressions(m)
	if signer := n.unsubscribeSigner(h); signer != nil && n.cfg.PublicURL != "" {
		n.Service.SetUnsubscribe(signer)
	}
	return nil
}

// unsubscribeSigner returns the signer of unsubscribe links, or nil (and
// says so) when it cannot be made.
func (n *Node) unsubscribeSigner(h *suppression.Hasher) *unsubscribe.Signer {
	key := n.cfg.UnsubscribeKey
	if len(key) == 0 {
		key = unsubscribe.DeriveKey(n.cfg.ErrorLog.MaskKey)
	}
	s, err := unsubscribe.New(key, h, n.cfg.PublicURL)
	if err != nil {
		n.log.Error("unsubscribe links are off", "err", err)
		return nil
	}
	return s
}

// newPipeline creates the worker pipeline, its lanes not yet started, with
// automatic quarantine through the control plane.
func (n *Node) newPipeline(watchCtx context.Context) error {
	var err error
	n.Service, err = orchestrator.NewService(n.JS, n.cfg.Providers, n.ErrorLog, n.cfg.Pipeline, n.log, n.Registry)
	if err != nil {
		return err
	}
	// The transactional lane reads and acks over a connection of its own,
	// so its messages never wait behind the bulk lane's batches on one
	// socket (issue 14).
	if n.txNC, err = n.dialNATS(n.cfg.Name + "-transactional"); err != nil {
		return err
	}
	txJS, err := jetstream.New(n.txNC)
	if err != nil {
		return fmt.Errorf("node: jetstream: %w", err)
	}
	n.Service.SetTransactionalConn(txJS)
	// A conversation whose recent messages are mostly invalid is
	// quarantined for the whole fleet: every worker stops fetching it
	// within a second, and an operator resumes or stops it.
	return n.Service.SetQuarantine(n.cfg.Quarantine, func(tenant, conv, reason string, ratio float64) {
		qctx, cancel := context.WithTimeout(watchCtx, 10*time.Second)
		defer cancel()
		changed, err := n.Control.Quarantine(qctx, tenant, conv, reason)
		switch {
		case err != nil:
			n.log.Error("automatic quarantine failed", "tenant", tenant, "conversation", conv, "invalid_ratio", ratio, "err", err)
		case changed:
			n.log.Warn("conversation quarantined", "tenant", tenant, "conversation", conv, "invalid_ratio", ratio, "reason", reason)
		}
	})
}

// followConversationsAndChannels watches conversation states and channel
// switches, which reach the lanes within a second of a change made
// anywhere, and returns once both current sets are loaded (at most 10s).
func (n *Node) followConversationsAndChannels(ctx, watchCtx context.Context) error {
	ctl := n.Service.Controls()
	gauges, err := n.switchGauges()
	if err != nil {
		return err
	}
	convSynced, chanSynced := make(chan struct{}), make(chan struct{})
	n.watch(func() error {
		return n.Control.WatchConversations(watchCtx, func(u control.ConversationUpdate) {
			ctl.SetConversation(u.Tenant, u.Conversation, u.Value.State)
		}, func() { close(convSynced) })
	}, "conversations")
	n.watch(func() error {
		return n.Control.WatchChannels(watchCtx, func(u control.ChannelUpdate) {
			ctl.SetChannel(u.Channel, u.Value.Disabled)
			gauges.SetChannel(u)
		}, func() { close(chanSynced) })
	}, "channels")
	for _, c := range []chan struct{}{convSynced, chanSynced} {
		select {
		case <-c:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Second):
			return errors.New("node: the control plane's conversation and channel states did not load within 10s")
		}
	}
	return nil
}

// startHTTP starts the HTTP server with health, readiness (NATS and
// Postgres checks, the latter with the database fence) and metrics, and the API in the API role.
func (n *Node) startHTTP(ctx, watchCtx context.Context) error {
	var err error
	n.HTTP, err = api.New(api.Config{
		Addr:     n.cfg.HTTPAddr,
		Gatherer: n.Registry,
		Checks: map[string]api.Check{
			"nats": func(ctx context.Context) error {
				if !n.NC.IsConnected() {
					return fmt.Errorf("not connected (%s)", n.NC.Status())
				}
				_, err := n.JS.AccountInfo(ctx)
				return err
			},
			// The cluster behind the pool must still be the one the
			// deployment is bound to (a moved address, a restore).
			"postgres": func(ctx context.Context) error { return n.Control.VerifyDatabase(ctx, n.Pool, n.systemID) },
		},
	}, n.log)
	if err != nil {
		return err
	}
	if n.cfg.API {
		if err := n.mountAPI(ctx, watchCtx); err != nil {
			return err
		}
	}
	return n.HTTP.Start()
}

// mountAPI registers the campaign API and the admin routes (api.Admin: a
// tenant's admin key on its own conversations, an operator key on the fleet;
// the key is the audited actor).
func (n *Node) mountAPI(ctx, watchCtx context.Context) error {
	var intakePaused atomic.Bool
	gauges, err := n.switchGauges()
	if err != nil {
		return err
	}
	n.watch(func() error {
		return n.Control.WatchIntake(watchCtx, func(s control.Setting[control.IntakeStatus]) {
			intakePaused.Store(s.Value.Paused)
			gauges.SetIntake(s)
		})
	}, "intake")
	top, err := errorlog.NewTopExporter(n.Pool, n.cfg.TopErrors, n.log, n.Registry)
	if err != nil {
		return err
	}
	n.watchers.Go(func() { top.Run(watchCtx) })
	sessions, err := n.sessions(ctx)
	if err != nil {
		return err
	}
	camp, err := api.NewCampaigns(ctx, api.CampaignDeps{
		Pool: n.Pool, JS: n.JS, Logger: n.log, Registerer: n.Registry, Env: n.cfg.Env, DevTenant: n.cfg.DevTenant,
		Sessions: sessions,
		ConversationState: func(ctx context.Context, tenant, id string) (string, error) {
			st, err := n.Control.Conversation(ctx, tenant, id)
			return string(st.Value.State), err
		},
		IntakePaused:         intakePaused.Load,
		IdempotencyRetention: n.cfg.IdempotencyRetention,
		Replicas:             n.cfg.Replicas,
		DuplicateWindow:      n.cfg.Stream.DuplicateWindow,
	})
	if err != nil {
		return err
	}
	camp.Register(n.HTTP)
	n.watchers.Go(func() { camp.PruneLoop(watchCtx, time.Hour) })
	admin, err := api.NewAdmin(camp, api.AdminConfig{
		Control: n.Control,
		Stop: control.StopConfig{
			Purge: func(ctx context.Context, tenant, conversation string) (uint64, error) {
				return orchestrator.PurgeConversation(ctx, n.JS, tenant, conversation)
			},
			Settle: n.cfg.StopSettle,
		},
		Status: n.status,
	})
	if err != nil {
		return err
	}
	admin.Register(n.HTTP)
	if err := n.mountSuppressions(ctx, camp); err != nil {
		return err
	}
	return n.mountConsole(watchCtx, camp.Auth())
}

// mountSuppressions registers /v1/suppressions, audited in the control
// plane's audit; without a mask key the routes answer 503.
func (n *Node) mountSuppressions(ctx context.Context, camp *api.Campaigns) error {
	var store *suppression.Store
	if h := n.suppressionHasher(); h != nil {
		if _, err := suppression.EnsureStream(ctx, n.JS, n.cfg.Stream.Replicas); err != nil {
			return err
		}
		store = suppression.NewStore(n.Pool, n.JS, h, n.log)
	}
	sp, err := api.NewSuppressions(camp, api.SuppressionsConfig{Store: store, Audit: n.Control.RecordChange})
	if err != nil {
		return err
	}
	sp.Register(n.HTTP)
	var signer *unsubscribe.Signer
	if h := n.suppressionHasher(); h != nil {
		signer = n.unsubscribeSigner(h)
	}
	u, err := api.NewUnsubscribe(camp, api.UnsubscribeConfig{Store: store, Signer: signer, Audit: n.Control.RecordChange})
	if err != nil {
		return err
	}
	u.Register(n.HTTP)
	fb, err := api.NewFeedback(camp, api.FeedbackConfig{Store: store, Counts: feedback.NewStore(n.Pool), Thresholds: n.cfg.Feedback, Pause: n.Control.Quarantine})
	if err != nil {
		return err
	}
	fb.Register(n.HTTP)
	return n.mountWebhooks(camp)
}

// status gathers the deployment's status (GET /v1/admin/status, the
// console's overview).
func (n *Node) status(ctx context.Context) status.Report {
	return status.Gather(ctx, status.Sources{JS: n.JS, Control: n.Control, Pool: n.Pool})
}

// sessions returns the console's sessions, signed with the deployment's
// key (control.Store.SessionKey), lasting cfg.SessionTTL.
func (n *Node) sessions(ctx context.Context) (*api.Sessions, error) {
	key, err := n.Control.SessionKey(ctx)
	if err != nil {
		return nil, err
	}
	return api.NewSessions(api.SessionConfig{Key: key, TTL: n.cfg.SessionTTL})
}

// mountConsole serves the console at /console/, its charts sampled and its
// live pages ended with watchCtx.
func (n *Node) mountConsole(watchCtx context.Context, auth *api.Auth) error {
	con, err := console.New(console.Config{
		Auth: auth, Control: n.Control, Pool: n.Pool, JS: n.JS, Status: n.status,
		Gatherer: n.Registry, Logger: n.log, Interval: n.cfg.ConsoleInterval,
	})
	if err != nil {
		return err
	}
	con.Register(n.HTTP)
	n.watchers.Go(func() { con.Run(watchCtx) })
	return nil
}

// sweepLoop purges, every sweepInterval, what is still queued for stopped
// conversations (published by a request that was running when the stop
// came), counting it as purged.
func (n *Node) sweepLoop(ctx context.Context) {
	purge := func(ctx context.Context, tenant, conversation string) (uint64, error) {
		return orchestrator.PurgeConversation(ctx, n.JS, tenant, conversation)
	}
	minAge := cmp.Or(n.cfg.SweepMinAge, 30*time.Second)
	t := time.NewTicker(cmp.Or(n.cfg.SweepInterval, 10*time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := n.Service.SweepStopped(ctx, func(ctx context.Context, tenant, conv string) {
			got, err := n.Control.SweepStopped(ctx, tenant, conv, minAge, purge)
			if err != nil {
				n.log.Warn("sweep of a stopped conversation failed", "tenant", tenant, "conversation", conv, "purged", got, "err", err)
			} else if got > 0 {
				n.log.Info("purged messages queued after a stop", "tenant", tenant, "conversation", conv, "purged", got)
			}
		})
		if err != nil && ctx.Err() == nil {
			n.log.Warn("sweep of stopped conversations failed", "err", err)
		}
	}
}

// switchGauges returns the node's control-plane switch gauges, registered
// on first use: the API role feeds the intake, the worker role the channels.
func (n *Node) switchGauges() (*control.SwitchGauges, error) {
	n.gaugesOnce.Do(func() { n.gauges, n.gaugesErr = control.NewSwitchGauges(n.Registry) })
	return n.gauges, n.gaugesErr
}

// watch runs a control-plane watcher until Stop, logging if it ends early.
func (n *Node) watch(run func() error, what string) {
	n.watchers.Go(func() {
		if err := run(); err != nil {
			n.log.Error("control-plane watch ended; this process no longer follows changes", "watch", what, "err", err)
		}
	})
}

// Stop drains and closes everything the node started, in order.
func (n *Node) Stop(ctx context.Context) error {
	var errs []error
	n.retire()
	if n.stopWatch != nil {
		n.stopWatch()
	}
	if n.Service != nil {
		errs = append(errs, n.Service.Stop(ctx))
	}
	if n.Suppressions != nil {
		n.Suppressions.Stop(ctx)
	}
	if n.Webhooks != nil {
		n.Webhooks.Stop(ctx)
	}
	if n.replayer != nil {
		n.replayer.Stop(ctx)
	}
	if n.ErrorLog != nil {
		errs = append(errs, n.ErrorLog.Stop(ctx))
	}
	// After the error log, whose last acks hand their outcomes over.
	if n.WebhookEvents != nil {
		n.WebhookEvents.Stop(ctx)
	}
	for _, nc := range []*nats.Conn{n.txNC, n.NC} {
		if nc != nil {
			if err := nc.FlushTimeout(5 * time.Second); err != nil && nc.IsConnected() {
				errs = append(errs, fmt.Errorf("node: flush nats: %w", err))
			}
		}
	}
	if n.HTTP != nil {
		errs = append(errs, n.HTTP.Stop(ctx))
	}
	if n.txNC != nil {
		n.txNC.Close()
	}
	if n.NC != nil {
		n.NC.Close()
	}
	n.watchers.Wait()
	if n.Pool != nil {
		n.Pool.Close()
	}
	return errors.Join(errs...)
}
