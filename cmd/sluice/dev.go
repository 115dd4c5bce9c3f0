package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
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
	fs := newFlagSet("dev", stderr)
	dataDir := fs.String("data-dir", env("SLUICE_DATA_DIR", ".data"), "where NATS and Postgres keep their data (reused across runs)")
	httpAddr := fs.String("http-addr", env("SLUICE_HTTP_ADDR", defaultHTTPAddr), "HTTP listen address")
	natsPort := fs.Int("nats-port", 4222, "NATS client port on 127.0.0.1")
	pgPort := fs.Int("pg-port", 54329, "port of the local Postgres on 127.0.0.1 (unused with --database-url)")
	dbURL := fs.String("database-url", os.Getenv("SLUICE_DATABASE_URL"), "use this Postgres instead of starting a local one")
	var cfg node.Config
	laneFlags(fs, &cfg.Pipeline)
	errorLogModeFlag(fs, &cfg.ErrorLog.Mode)
	quarantineFlags(fs, &cfg.Quarantine)
	if err := parse(fs, args); err != nil {
		return err
	}
	logger := newLogger(stderr)
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}

	ns, err := natsrv.Start(natsrv.Config{Port: *natsPort, StoreDir: filepath.Join(dir, "nats")})
	if err != nil {
		return err
	}
	defer natsrv.Stop(ns)

	pgWhere := "external (SLUICE_DATABASE_URL)"
	if *dbURL == "" {
		cl, err := pglocal.Start(ctx, pglocal.Config{Dir: filepath.Join(dir, "pg"), Port: *pgPort, Logger: logger})
		if err != nil {
			return err
		}
		defer func() {
			stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := cl.Stop(stopCtx); err != nil {
				logger.Warn("stop postgres", "err", err)
			}
		}()
		*dbURL = cl.URL()
		pgWhere = "local, data in " + filepath.Join(dir, "pg")
	}

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
	cfg.DatabaseURL = *dbURL
	cfg.HTTPAddr = *httpAddr
	cfg.Worker, cfg.API, cfg.Migrate = true, true, true
	cfg.ErrorLog.MaskKey = key
	cfg.Providers = provs.Providers()
	cfg.Collectors = append(cfg.Collectors, provs)
	cfg.Name = "sluice-dev"
	cfg.Env = "dev"
	// In dev, API calls and `sluice ctl` need no key: they act as tenant demo.
	cfg.DevTenant = "demo"
	n, err := node.Start(ctx, cfg, logger)
	if err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(n.HTTP.Addr())
	base := "http://" + net.JoinHostPort(host, port)
	fmt.Fprintf(stdout, `
sluice dev is up.
  NATS JetStream  %s  (store %s)
  Postgres        %s  (%s)
  HTTP            %s  (/healthz /readyz /metrics)
  providers       local sinks, real protocols: %s

Send a first activation:
  ./bin/sluice send --channel email --to alice@example.com
then see it counted:
  curl -s %s/metrics | grep '^sluice_messages_total'

Ctrl-C drains in-flight messages and stops everything.
`, ns.ClientURL(), filepath.Join(dir, "nats"), redact.URL(*dbURL), pgWhere, base, local, base)

	<-ctx.Done()
	fmt.Fprintln(stdout, "\nsluice dev: draining…")
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = n.Stop(stopCtx)
	st := local.Stats()
	fmt.Fprintf(stdout, "sluice dev: stopped; sinks accepted %d message(s) this run\n", st.Unique)
	return err
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
