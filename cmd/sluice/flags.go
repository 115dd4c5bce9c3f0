package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/feedback"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/webhook"
)

// errUsage is returned after a flag set has already printed its usage.
var errUsage = errors.New("usage")

// Defaults of the contract in DESIGN.md: every client subcommand works
// against `make run` with no flags.
const (
	defaultNATSURL  = "nats://127.0.0.1:4222"
	defaultHTTPAddr = "127.0.0.1:8080"
)

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	return nil
}

// laneFlags registers the sizing flags of the worker pipeline.
func laneFlags(fs *flag.FlagSet, cfg *orchestrator.Config) {
	fs.IntVar(&cfg.Transactional.Workers, "transactional-workers", envInt("SLUICE_TRANSACTIONAL_WORKERS", 0), "concurrent transactional messages (default 16)")
	fs.IntVar(&cfg.Bulk.Workers, "bulk-workers", envInt("SLUICE_BULK_WORKERS", 0), "concurrent bulk messages (default 32)")
	fs.DurationVar(&cfg.BulkYield, "bulk-yield", envDuration("SLUICE_BULK_YIELD", 0), "scheduler latency (p99 over 100ms) above which the bulk lane handles fewer messages at once, so transactional messages get the CPU (default 1ms; negative: never yield)")
	fs.BoolVar(&cfg.ConversationConsumersInMemory, "bulk-consumers-in-memory", envBool("SLUICE_BULK_CONSUMERS_IN_MEMORY", false), "keep the bulk lane's per-conversation consumers' state in the NATS servers' memory: less server work per message, but a restart of a single server (or of all replicas) sends the messages in flight again; for replicated streams")
	fs.DurationVar(&cfg.SendTimeout, "send-timeout", envDuration("SLUICE_SEND_TIMEOUT", 0), "bound on one provider call (default 10s)")
	fs.Func("bulk-release-held", "deprecated, no effect: held conversations keep their bulk consumers, which cost the live ones nothing since the bulk stream's Limits retention (SLUICE_BULK)", func(string) error {
		fmt.Fprintln(os.Stderr, releaseHeldGone)
		return nil
	})
	if os.Getenv("SLUICE_BULK_RELEASE_HELD") != "" {
		fmt.Fprintln(os.Stderr, releaseHeldGone)
	}
}

// releaseHeldGone is the warning for --bulk-release-held of earlier
// releases, still accepted so that their command lines keep working.
const releaseHeldGone = "sluice: --bulk-release-held / SLUICE_BULK_RELEASE_HELD is deprecated and has no effect: held conversations keep their bulk consumers, which cost the live ones nothing since the bulk stream's Limits retention (SLUICE_BULK)"

// streamFlags registers the activation streams' settings that are not
// derived from --replicas.
func streamFlags(fs *flag.FlagSet, cfg *orchestrator.StreamConfig) {
	fs.DurationVar(&cfg.DuplicateWindow, "duplicate-window", envDuration("SLUICE_DUPLICATE_WINDOW", 0), "how long the activation streams remember a Nats-Msg-Id, so a retried publish is stored once; publishes are retried only within it, and an API request resumed after a crash of its API process stores a row twice only if resumed later than this (default 30s, three times the API's 10s lease of a request; the NATS servers keep every id of the window in memory)")
}

// quarantineFlags registers the automatic quarantine's threshold: a
// conversation whose last --quarantine-window messages are more than
// --quarantine-ratio invalid is paused for the fleet, for an operator to
// resume or stop. --quarantine-ratio 0 turns it off.
func quarantineFlags(fs *flag.FlagSet, q *orchestrator.QuarantineConfig) {
	fs.Float64Var(&q.Ratio, "quarantine-ratio", envFloat("SLUICE_QUARANTINE_RATIO", 0.5), "quarantine a conversation whose invalid-address share over its last --quarantine-window messages passes this (0: off)")
	fs.IntVar(&q.Window, "quarantine-window", envInt("SLUICE_QUARANTINE_WINDOW", 1000), "messages per conversation the quarantine ratio is taken over")
}

// webhookFlags registers the delivery of delivery-status webhooks.
func webhookFlags(fs *flag.FlagSet, c *webhook.DispatcherConfig) {
	fs.DurationVar(&c.DisableAfter, "webhook-disable-after", envDuration("SLUICE_WEBHOOK_DISABLE_AFTER", webhook.DisableAfterDefault), "disable a webhook endpoint that has failed continuously for this long")
	fs.DurationVar(&c.Timeout, "webhook-timeout", envDuration("SLUICE_WEBHOOK_TIMEOUT", webhook.TimeoutDefault), "bound on one webhook request")
}

// feedbackFlags registers the thresholds at which POST /v1/feedback
// pauses a conversation for its complaints or hard bounces.
func feedbackFlags(fs *flag.FlagSet, t *feedback.Thresholds) {
	fs.Float64Var(&t.ComplaintRatio, "feedback-complaint-ratio", envFloat("SLUICE_FEEDBACK_COMPLAINT_RATIO", feedback.ComplaintRatioDefault), "pause a conversation whose complaints pass this share of its delivered messages (negative: off)")
	fs.Float64Var(&t.HardBounceRatio, "feedback-hard-bounce-ratio", envFloat("SLUICE_FEEDBACK_HARD_BOUNCE_RATIO", feedback.HardBounceRatioDefault), "pause a conversation whose hard bounces pass this share of its delivered messages (negative: off)")
	fs.DurationVar(&t.Window, "feedback-window", envDuration("SLUICE_FEEDBACK_WINDOW", feedback.WindowDefault), "how far back complaints, hard bounces and deliveries are counted for the pause")
	fs.Int64Var(&t.MinDelivered, "feedback-min-delivered", int64(envInt("SLUICE_FEEDBACK_MIN_DELIVERED", feedback.MinDeliveredDefault)), "delivered messages a conversation needs in the window before its feedback shares are judged")
}

func envFloat(name string, def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil {
		return v
	}
	return def
}

// errorLogModeFlag registers --errorlog-default-mode: the fleet's error-log
// mode when the control plane has none yet (first start); afterwards `sluice
// ctl errorlog set` decides.
func errorLogModeFlag(fs *flag.FlagSet, m *errorlog.Mode) {
	*m = errorlog.Mode{Name: errorlog.ModeName(env("SLUICE_ERRORLOG_DEFAULT_MODE", string(errorlog.ModeFull)))}
	fs.Func("errorlog-default-mode", "error-log mode at first start: full, sample, off or sync (env SLUICE_ERRORLOG_DEFAULT_MODE; default full)", func(v string) error {
		name, err := errorlog.ParseModeName(v)
		if err != nil {
			return err
		}
		*m = errorlog.Mode{Name: name}
		return nil
	})
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func newLogger(w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	if os.Getenv("SLUICE_LOG_LEVEL") == "debug" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func envBool(name string, def bool) bool {
	if v, err := strconv.ParseBool(os.Getenv(name)); err == nil {
		return v
	}
	return def
}
