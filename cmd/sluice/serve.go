package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/dispatch/sink"
	"github.com/sluicehq/sluice/orchestrator/node"
)

// runServe implements `sluice serve --api --worker`.
func runServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	var cfg node.Config
	fs.BoolVar(&cfg.API, "api", false, "serve the HTTP API")
	fs.BoolVar(&cfg.Worker, "worker", false, "consume and dispatch activations")
	fs.StringVar(&cfg.NATSURL, "nats-url", env("SLUICE_NATS_URL", defaultNATSURL), "NATS server URL")
	fs.StringVar(&cfg.DatabaseURL, "database-url", os.Getenv("SLUICE_DATABASE_URL"), "Postgres URL (required)")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", env("SLUICE_HTTP_ADDR", defaultHTTPAddr), "HTTP listen address")
	fs.BoolVar(&cfg.Migrate, "migrate", false, "apply pending migrations at start (otherwise run 'sluice migrate' first)")
	keepAddrs := fs.Bool("errorlog-keep-addresses", false, "store recipient addresses in clear in the error log (default: masked)")
	providers := fs.String("providers", "sink", "provider set; 'sink' (in-process recorders) is the only one until the protocol providers land")
	laneFlags(fs, &cfg.Pipeline)
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
	if cfg.Worker && !*keepAddrs {
		raw := os.Getenv("SLUICE_ERRORLOG_MASK_KEY")
		key, err := hex.DecodeString(raw)
		if err != nil || len(key) < 16 {
			return errors.New("serve: SLUICE_ERRORLOG_MASK_KEY must hold at least 16 bytes as hex (masks addresses in the error log), or pass --errorlog-keep-addresses")
		}
		cfg.ErrorLog.MaskKey = key
	}
	if *providers != "sink" {
		return fmt.Errorf("serve: unknown provider set %q", *providers)
	}
	rec := sink.NewRecorder()
	cfg.Providers = map[dispatch.Channel]dispatch.Provider{
		dispatch.ChannelEmail: rec, dispatch.ChannelSMS: rec, dispatch.ChannelPush: rec,
	}
	logger := newLogger(stderr)
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
