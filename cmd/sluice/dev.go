package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dispatch/providerset"
	"github.com/sluicehq/sluice/dispatch/sink"
	"github.com/sluicehq/sluice/internal/natsrv"
	"github.com/sluicehq/sluice/internal/pglocal"
	"github.com/sluicehq/sluice/internal/redact"
	"github.com/sluicehq/sluice/node"
)

// runDev implements `sluice dev`: the whole system on one machine.
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, cfg, err := parseDevFlags(args, stderr)
	if err != nil {
		return err
	}
	logger := newLogger(stderr)
	dir, err := filepath.Abs(f.dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}

	ns, err := natsrv.Start(natsrv.Config{Port: f.natsPort, StoreDir: filepath.Join(dir, "nats")})
	if err != nil {
		return err
	}
	defer natsrv.Stop(ns)

	dbURL, pgWhere, stopPostgres, err := startDevPostgres(ctx, f, dir, logger)
	if err != nil {
		return err
	}
	defer stopPostgres()

	key, err := loadOrCreateKey(filepath.Join(dir, "errorlog-mask.key"))
	if err != nil {
		return err
	}
	// Providers speak the real protocols (SMTP with STARTTLS and AUTH,
	// Twilio-shaped HTTP, FCM v1 with OAuth2, APNs over HTTP/2) to local
	// sinks on 127.0.0.1, each behind its own breaker.
	local, err := sink.StartLocal(ctx, sink.LocalConfig{Logger: logger})
	if err != nil {
		return err
	}
	defer local.Close()
	provs, err := providerset.New(local.Config(), logger, nil)
	if err != nil {
		return err
	}
	defer provs.Close()
	cfg.NATSURL = ns.ClientURL()
	cfg.DatabaseURL = dbURL
	cfg.HTTPAddr = f.httpAddr
	cfg.PublicURL = env("SLUICE_PUBLIC_URL", "http://"+f.httpAddr) // unsubscribe links point at this process
	cfg.Worker, cfg.API, cfg.Migrate = true, true, true
	cfg.ErrorLog.MaskKey = key
	cfg.Providers = provs.Providers()
	cfg.Collectors = append(cfg.Collectors, provs)
	cfg.Breakers = breakers(provs)
	cfg.Version = buildVersion()
	cfg.Name = "sluice-dev"
	cfg.Env = "dev"
	// In dev, API calls and `sluice ctl` need no key: they act as tenant demo.
	cfg.DevTenant = "demo"
	n, err := node.Start(ctx, cfg, logger)
	if err != nil {
		return err
	}
	printDevBanner(stdout, ns.ClientURL(), filepath.Join(dir, "nats"), dbURL, pgWhere, n.HTTP.Addr(), local)

	<-ctx.Done()
	fmt.Fprintln(stdout, "\nsluice dev: draining…")
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = n.Stop(stopCtx)
	st := local.Stats()
	fmt.Fprintf(stdout, "sluice dev: stopped; sinks accepted %d message(s) this run\n", st.Unique)
	return err
}

// devFlags are the flags of `sluice dev` that are not node settings.
type devFlags struct {
	dataDir, httpAddr, dbURL string
	natsPort, pgPort         int
}

// parseDevFlags parses the arguments of `sluice dev` into its own flags and
// the node's lane, error-log and quarantine settings.
func parseDevFlags(args []string, stderr io.Writer) (devFlags, node.Config, error) {
	var f devFlags
	var cfg node.Config
	fs := newFlagSet("dev", stderr)
	fs.StringVar(&f.dataDir, "data-dir", env("SLUICE_DATA_DIR", ".data"), "where NATS and Postgres keep their data (reused across runs)")
	fs.StringVar(&f.httpAddr, "http-addr", env("SLUICE_HTTP_ADDR", defaultHTTPAddr), "HTTP listen address")
	fs.IntVar(&f.natsPort, "nats-port", 4222, "NATS client port on 127.0.0.1")
	fs.IntVar(&f.pgPort, "pg-port", 54329, "port of the local Postgres on 127.0.0.1 (unused with --database-url)")
	fs.StringVar(&f.dbURL, "database-url", os.Getenv("SLUICE_DATABASE_URL"), "use this Postgres instead of starting a local one")
	laneFlags(fs, &cfg.Pipeline)
	streamFlags(fs, &cfg.Stream)
	errorLogModeFlag(fs, &cfg.ErrorLog.Mode)
	quarantineFlags(fs, &cfg.Quarantine)
	webhookFlags(fs, &cfg.Webhooks)
	err := parse(fs, args)
	return f, cfg, err
}

// startDevPostgres starts a local Postgres with its data in dir/pg, unless
// --database-url names one. It returns the database URL, where the
// database is (for the banner) and how to stop what it started.
func startDevPostgres(ctx context.Context, f devFlags, dir string, logger *slog.Logger) (dbURL, where string, stop func(), err error) {
	if f.dbURL != "" {
		return f.dbURL, "external (SLUICE_DATABASE_URL)", func() {}, nil
	}
	cl, err := pglocal.Start(ctx, pglocal.Config{Dir: filepath.Join(dir, "pg"), Port: f.pgPort, Logger: logger})
	if err != nil {
		return "", "", nil, err
	}
	stop = func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cl.Stop(stopCtx); err != nil {
			logger.Warn("stop postgres", "err", err)
		}
	}
	return cl.URL(), "local, data in " + filepath.Join(dir, "pg"), stop, nil
}

// printDevBanner tells where everything of `sluice dev` runs and how to send
// a first message; the database URL is printed without its password.
func printDevBanner(stdout io.Writer, natsURL, natsDir, dbURL, pgWhere, httpAddr string, local *sink.Local) {
	host, port, _ := net.SplitHostPort(httpAddr)
	base := "http://" + net.JoinHostPort(host, port)
	fmt.Fprintf(stdout, `
sluice dev is up.
  NATS JetStream  %s  (store %s)
  Postgres        %s  (%s)
  HTTP            %s  (/healthz /readyz /metrics)
  console         %s/console/  (no key needed under sluice dev)
  providers       local sinks, real protocols: %s

Send a first activation:
  ./bin/sluice send --create --channel email --to alice@example.com
then see it counted:
  curl -s %s/metrics | grep '^sluice_messages_total'

Ctrl-C drains in-flight messages and stops everything.
`, natsURL, natsDir, redact.URL(dbURL), pgWhere, base, base, local, base)
}

// loadOrCreateKey returns the HMAC key that masks addresses in the error log,
// creating it on first use so masked values stay comparable across runs.
func loadOrCreateKey(path string) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil {
		return hex.DecodeString(strings.TrimSpace(string(b)))
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write mask key: %w", err)
	}
	return key, nil
}
