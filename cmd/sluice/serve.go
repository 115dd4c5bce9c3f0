package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/dispatch/providerset"
	"github.com/sluicehq/sluice/dispatch/push"
	"github.com/sluicehq/sluice/dispatch/sink"
	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/orchestrator/control"
)

// runServe implements `sluice serve --api --worker`.
func runServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	var cfg node.Config
	fs.BoolVar(&cfg.API, "api", false, "serve the HTTP API")
	fs.BoolVar(&cfg.Worker, "worker", false, "consume and dispatch activations")
	fs.StringVar(&cfg.NATSURL, "nats-url", env("SLUICE_NATS_URL", defaultNATSURL), "NATS server URL, or a comma-separated list of seed URLs of a cluster")
	fs.StringVar(&cfg.DatabaseURL, "database-url", os.Getenv("SLUICE_DATABASE_URL"), "Postgres URL (required)")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", env("SLUICE_HTTP_ADDR", defaultHTTPAddr), "HTTP listen address")
	fs.StringVar(&cfg.Env, "env", env("SLUICE_ENV", "dev"), "deployment environment: dev, test, staging or production")
	fs.DurationVar(&cfg.IdempotencyRetention, "idempotency-retention", envDuration("SLUICE_IDEMPOTENCY_RETENTION", 0), "how long the API remembers an Idempotency-Key (default 168h; negative: forever)")
	fs.IntVar(&cfg.Replicas, "replicas", envInt("SLUICE_REPLICAS", 1), "replicas of every JetStream stream and KV bucket: 1 on one server, 3 on a three-node cluster (existing ones are scaled at start)")
	fs.BoolVar(&cfg.Migrate, "migrate", false, "apply pending migrations at start (otherwise run 'sluice migrate' first)")
	keepAddrs := fs.Bool("errorlog-keep-addresses", false, "store recipient addresses in clear in the error log (default: masked)")
	providers := fs.String("providers", env("SLUICE_PROVIDERS", providersReal), "provider set: 'real' sends through the relay and accounts configured below; 'sink' starts local protocol sinks in this process and sends there, nothing leaves the machine (only with --env dev or test, unless --allow-sink-providers)")
	allowSink := fs.Bool("allow-sink-providers", false, "allow --providers=sink outside --env dev and test (logged at WARN: such a process sends nothing to anyone and counts every message delivered)")
	pcfg := providerFlags(fs)
	laneFlags(fs, &cfg.Pipeline)
	streamFlags(fs, &cfg.Stream)
	errorLogModeFlag(fs, &cfg.ErrorLog.Mode)
	quarantineFlags(fs, &cfg.Quarantine)
	webhookFlags(fs, &cfg.Webhooks)
	fs.StringVar(&cfg.PublicURL, "public-url", os.Getenv("SLUICE_PUBLIC_URL"), "base URL recipients reach the API at, e.g. https://mail.example.com; bulk email carries List-Unsubscribe links under it (empty: no List-Unsubscribe headers)")
	feedbackFlags(fs, &cfg.Feedback)
	if err := parse(fs, args); err != nil {
		return err
	}
	if !cfg.API && !cfg.Worker {
		return errors.New("serve: give --api, --worker or both")
	}
	if cfg.DatabaseURL == "" {
		return errors.New("serve: --database-url or SLUICE_DATABASE_URL is required")
	}
	cfg.ErrorLog.KeepAddresses = *keepAddrs
	// The key masks addresses in the error log (workers) and hashes
	// suppressed addresses (workers and API); without it suppression is off.
	raw := os.Getenv("SLUICE_ERRORLOG_MASK_KEY")
	if (cfg.Worker && !*keepAddrs) || raw != "" {
		key, err := hex.DecodeString(raw)
		if err != nil || len(key) < 16 {
			return errors.New("serve: SLUICE_ERRORLOG_MASK_KEY must hold at least 16 bytes as hex (masks addresses in the error log, hashes suppressed addresses), or pass --errorlog-keep-addresses")
		}
		cfg.ErrorLog.MaskKey = key
	}
	if raw := os.Getenv("SLUICE_UNSUBSCRIBE_KEY"); raw != "" {
		key, err := hex.DecodeString(raw)
		if err != nil || len(key) < 16 {
			return errors.New("serve: SLUICE_UNSUBSCRIBE_KEY must hold at least 16 bytes as hex (signs unsubscribe links; unset: derived from SLUICE_ERRORLOG_MASK_KEY)")
		}
		cfg.UnsubscribeKey = key
	}
	logger := newLogger(stderr)
	var provs *providerset.Set
	if cfg.Worker {
		var err error
		if err := checkProviders(*providers, cfg.Env, *allowSink, logger); err != nil {
			return err
		}
		if provs, err = buildProviders(ctx, *providers, pcfg, logger); err != nil {
			return err
		}
		defer provs.Close()
		cfg.Providers = provs.Providers()
		cfg.Collectors = append(cfg.Collectors, provs)
		cfg.Breakers = breakers(provs)
	}
	cfg.Version = buildVersion()
	n, err := node.Start(ctx, cfg, logger)
	if err != nil {
		return err
	}
	logger.Info("serving", "http", n.HTTP.Addr(), "api", cfg.API, "worker", cfg.Worker)
	<-ctx.Done()
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return n.Stop(stopCtx)
}

// breakers returns the set's provider breakers, for the heartbeat.
func breakers(provs *providerset.Set) []node.Breaker {
	var out []node.Breaker
	for _, g := range provs.Guards() {
		out = append(out, g)
	}
	return out
}

// buildVersion is the module version and VCS revision the binary was built
// from, for the heartbeat.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v
}

// The provider sets of --providers.
const (
	providersReal = "real"
	providersSink = "sink"
)

// checkProviders is the fence of --providers=sink: local sinks send nothing
// to anyone and every message they take counts as delivered, so outside the
// dev and test environments they need --allow-sink-providers, and are then
// logged at WARN.
func checkProviders(which, env string, allowSink bool, logger *slog.Logger) error {
	switch which {
	case providersReal:
		return nil
	case providersSink:
	default:
		return fmt.Errorf("serve: --providers: unknown provider set %q (want %s or %s)", which, providersReal, providersSink)
	}
	if env == control.EnvDev || env == control.EnvTest {
		return nil
	}
	if !allowSink {
		return fmt.Errorf("serve: --providers=sink with --env %s would send nothing to anyone and count every message delivered; use --providers=real (the default), or add --allow-sink-providers if this really is a rehearsal", env)
	}
	logger.Warn("PROVIDERS=SINK OUTSIDE DEV AND TEST: --allow-sink-providers given; this process sends NOTHING to anyone and counts every message it takes as delivered", "env", env)
	return nil
}

// buildProviders builds the worker's providers: from the settings with
// --providers=real, or pointing at local sinks started in this process
// (stopped by the returned set's Close) with --providers=sink.
func buildProviders(ctx context.Context, which string, pcfg *providerSettings, logger *slog.Logger) (*providerset.Set, error) {
	if pcfg.ratesErr != nil {
		return nil, fmt.Errorf("serve: SLUICE_PROVIDER_RATES: %w", pcfg.ratesErr)
	}
	var set providerset.Config
	var local *sink.Local
	switch which {
	case providersReal:
		var err error
		if set, err = pcfg.build(); err != nil {
			return nil, err
		}
	case providersSink:
		var err error
		if local, err = sink.StartLocal(ctx, sink.LocalConfig{Logger: logger}); err != nil {
			return nil, err
		}
		logger.Warn("providers=sink: messages go to local sinks in this process, nothing leaves the machine", "sinks", local.String())
		set = local.Config()
	default:
		return nil, fmt.Errorf("serve: unknown provider set %q (want real or sink)", which)
	}
	set.Breaker, set.Rates = pcfg.guard(), pcfg.rates
	provs, err := providerset.New(set, logger, nil)
	if err != nil {
		if local != nil {
			local.Close()
		}
		return nil, err
	}
	if local != nil {
		provs.OnClose(local)
	}
	return provs, nil
}

// providerSettings are the flags of `serve --providers=real`. Each provider
// is enabled by its first setting (the SMTP relay address, the Twilio
// account SID, the FCM credentials file, the APNs key file); secrets come
// from the environment only, never from flags, which ps shows.
type providerSettings struct {
	smtpAddr, smtpFrom, smtpTLS, smtpUser string
	smtpMaxConns, smtpMaxMsgsPerConn      int

	twilioBase, twilioSID, twilioFrom, twilioService string

	fcmBase, fcmCredentials, fcmProject string

	apnsHost, apnsKeyFile, apnsKeyID, apnsTeamID, apnsTopic string

	breakerFailures uint
	breakerOpen     time.Duration
	rates           map[string]float64
	ratesErr        error // a malformed SLUICE_PROVIDER_RATES
}

func providerFlags(fs *flag.FlagSet) *providerSettings {
	p := &providerSettings{}
	fs.StringVar(&p.smtpAddr, "smtp-addr", os.Getenv("SLUICE_SMTP_ADDR"), "SMTP relay host:port; enables email (password in SLUICE_SMTP_PASSWORD). A comma-separated list is a failover chain tried in order (the n-th relay's password in SLUICE_SMTP_PASSWORD_<n> if set)")
	fs.StringVar(&p.smtpFrom, "smtp-from", os.Getenv("SLUICE_SMTP_FROM"), "sender address, e.g. 'Acme <noreply@acme.example>'")
	fs.StringVar(&p.smtpTLS, "smtp-tls", env("SLUICE_SMTP_TLS", "starttls"), "starttls (required), tls (implicit, port 465) or none (trusted local relay only)")
	fs.StringVar(&p.smtpUser, "smtp-username", os.Getenv("SLUICE_SMTP_USERNAME"), "AUTH PLAIN user name (empty: no AUTH); one for every relay, or a comma-separated list, one per relay")
	fs.IntVar(&p.smtpMaxConns, "smtp-max-conns", envInt("SLUICE_SMTP_MAX_CONNS", 0), "connections to the relay at most (default 4)")
	fs.IntVar(&p.smtpMaxMsgsPerConn, "smtp-max-messages-per-conn", envInt("SLUICE_SMTP_MAX_MESSAGES_PER_CONN", 0), "messages one relay connection carries before it is replaced (default 0: no cap, as long as the relay keeps it)")
	fs.StringVar(&p.twilioBase, "twilio-base-url", os.Getenv("SLUICE_TWILIO_BASE_URL"), "Twilio API root (default https://api.twilio.com); one, or one per account")
	fs.StringVar(&p.twilioSID, "twilio-account-sid", os.Getenv("SLUICE_TWILIO_ACCOUNT_SID"), "Twilio account SID; enables SMS (token in SLUICE_TWILIO_AUTH_TOKEN). A comma-separated list is a failover chain of accounts tried in order (the n-th account's token in SLUICE_TWILIO_AUTH_TOKEN_<n>)")
	fs.StringVar(&p.twilioFrom, "twilio-from", os.Getenv("SLUICE_TWILIO_FROM"), "sending number or alphanumeric sender ID; one for every account, or a comma-separated list, one per account")
	fs.StringVar(&p.twilioService, "twilio-messaging-service-sid", os.Getenv("SLUICE_TWILIO_MESSAGING_SERVICE_SID"), "messaging service SID (instead of --twilio-from); one, or one per account")
	fs.StringVar(&p.fcmBase, "fcm-base-url", os.Getenv("SLUICE_FCM_BASE_URL"), "FCM API root (default https://fcm.googleapis.com)")
	fs.StringVar(&p.fcmCredentials, "fcm-credentials-file", os.Getenv("SLUICE_FCM_CREDENTIALS_FILE"), "service account key JSON; enables FCM push")
	fs.StringVar(&p.fcmProject, "fcm-project-id", os.Getenv("SLUICE_FCM_PROJECT_ID"), "Firebase project (default: the credentials' project_id)")
	fs.StringVar(&p.apnsHost, "apns-host", os.Getenv("SLUICE_APNS_HOST"), "APNs endpoint (default https://api.push.apple.com; sandbox https://api.sandbox.push.apple.com)")
	fs.StringVar(&p.apnsKeyFile, "apns-key-file", os.Getenv("SLUICE_APNS_KEY_FILE"), ".p8 token-signing key; enables APNs push")
	fs.StringVar(&p.apnsKeyID, "apns-key-id", os.Getenv("SLUICE_APNS_KEY_ID"), "APNs key ID")
	fs.StringVar(&p.apnsTeamID, "apns-team-id", os.Getenv("SLUICE_APNS_TEAM_ID"), "Apple developer team ID")
	fs.StringVar(&p.apnsTopic, "apns-topic", os.Getenv("SLUICE_APNS_TOPIC"), "app bundle ID (apns-topic)")
	fs.UintVar(&p.breakerFailures, "breaker-failures", uint(max(envInt("SLUICE_BREAKER_FAILURES", 0), 0)), "consecutive failures that open a provider's breaker (default 5)")
	fs.DurationVar(&p.breakerOpen, "breaker-open-timeout", envDuration("SLUICE_BREAKER_OPEN_TIMEOUT", 0), "how long an open breaker waits before probing the provider (default 30s)")
	p.rates, p.ratesErr = parseRates(os.Getenv("SLUICE_PROVIDER_RATES"))
	fs.Func("provider-rates", "per-provider rate limits in messages/s, e.g. smtp=50,twilio=10,fcm=500,apns=500 (env SLUICE_PROVIDER_RATES; default unlimited)", func(v string) (err error) {
		p.rates, err = parseRates(v)
		p.ratesErr = nil
		return err
	})
	return p
}

// guard returns the breaker settings shared by every provider.
func (p *providerSettings) guard() dispatch.GuardConfig {
	return dispatch.GuardConfig{ConsecutiveFailures: uint32(p.breakerFailures), OpenTimeout: p.breakerOpen}
}

// parseRates parses "name=rate,name=rate".
func parseRates(v string) (map[string]float64, error) {
	out := map[string]float64{}
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, val, ok := strings.Cut(item, "=")
		r, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if !ok || err != nil || r < 0 {
			return nil, fmt.Errorf("provider rate %q: want name=messages-per-second", item)
		}
		out[strings.TrimSpace(name)] = r
	}
	return out, nil
}

// build turns the settings into provider configurations, reading secrets
// from the environment and key files from disk.
func (p *providerSettings) build() (providerset.Config, error) {
	var c providerset.Config
	if err := p.buildChains(&c); err != nil {
		return c, err
	}
	if p.fcmCredentials != "" {
		b, err := os.ReadFile(p.fcmCredentials)
		if err != nil {
			return c, fmt.Errorf("serve: --fcm-credentials-file: %w", err)
		}
		c.FCM = &push.FCMConfig{BaseURL: p.fcmBase, CredentialsJSON: b, ProjectID: p.fcmProject}
	}
	if p.apnsKeyFile != "" {
		b, err := os.ReadFile(p.apnsKeyFile)
		if err != nil {
			return c, fmt.Errorf("serve: --apns-key-file: %w", err)
		}
		c.APNs = &push.APNsConfig{Host: p.apnsHost, AuthKey: b, KeyID: p.apnsKeyID, TeamID: p.apnsTeamID, Topic: p.apnsTopic}
	}
	if c.Email == nil && c.SMS == nil && c.FCM == nil && c.APNs == nil {
		return c, errors.New("serve: --providers=real but no provider is configured (set SLUICE_SMTP_ADDR, SLUICE_TWILIO_ACCOUNT_SID, SLUICE_FCM_CREDENTIALS_FILE or SLUICE_APNS_KEY_FILE)")
	}
	return c, nil
}
