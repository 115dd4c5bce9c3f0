package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"

	"github.com/sluicehq/sluice/loadtest"
)

const loadtestUsage = `usage: sluice loadtest [flags]

Replay the incident (8 conversations, 8M messages, 95%% with empty or malformed
addresses, on the bulk lane, with a transactional trickle) and measure it.
By default the command starts its own stack (embedded NATS, a local Postgres
in a temporary directory, a node with worker and API, sinks); --nats-url
targets a running sluice instead. --compare runs the same burst under several
error-log modes with the raw JetStream ceiling. --messages 200000 is a short run.

Writes report.json and report.html into --report and a summary on stdout.

flags:
`

// loadtestRun is a parsed loadtest command line: the run's Config and what
// the command does around it.
type loadtestRun struct {
	cfg        loadtest.Config
	cpuProfile string
	maxP99     time.Duration
	reportDir  string
	logger     *slog.Logger
}

func runLoadtest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	lr, err := parseLoadtest(args, stderr)
	if err != nil {
		return err
	}
	return lr.run(ctx, stdout)
}

// parseLoadtest parses the loadtest command line.
func parseLoadtest(args []string, stderr io.Writer) (*loadtestRun, error) {
	fs := newFlagSet("loadtest", stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, loadtestUsage)
		fs.PrintDefaults()
	}
	var cfg loadtest.Config
	fs.StringVar(&cfg.Scenario, "scenario", loadtest.ScenarioIncident, "scenario: incident, valid or mixed")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "seed of the scenario; the same seed publishes the same messages")
	fs.IntVar(&cfg.Messages, "messages", 8_000_000, "burst size, over all conversations")
	fs.IntVar(&cfg.Conversations, "conversations", 8, "bulk conversations activated at once")
	fs.Float64Var(&cfg.InvalidRatio, "invalid-ratio", -1, "share of empty or malformed addresses, 0 to 1 (default: incident 0.95, valid 0, mixed 0.5)")
	channels := fs.String("channels", "", "channels of the burst, comma-separated (default email; mixed: email,sms,push)")
	fs.Float64Var(&cfg.TrickleRate, "trickle-rate", 200, "valid transactional messages per second during the run; 0: none")
	fs.DurationVar(&cfg.Baseline, "baseline", 5*time.Second, "trickle alone before the burst, for the no-burst latency; 0: none")
	fs.DurationVar(&cfg.AfterDrain, "after-drain", 3*time.Second, "trickle after the burst has drained, for the after-drain latency; 0: none")
	fs.IntVar(&cfg.Window, "window", 4096, "bound on unacknowledged asynchronous publishes")
	fs.Float64Var(&cfg.PublishRate, "publish-rate", 0, "cap on the burst's publish rate in messages/s, to replay it at the rate it arrived (the ceiling is paced alike); 0: full speed")
	fs.BoolVar(&cfg.Compare, "compare", false, "run the burst under each of --modes, with quarantine off, and measure the raw JetStream ceiling")
	modes := fs.String("modes", "", "error-log modes, comma-separated (default with --compare: full,sample,off,sync; without: full)")
	fs.IntVar(&cfg.SyncMessages, "sync-messages", 0, "burst size of the sync mode under --compare (default the smaller of --messages and 100000)")
	fs.BoolVar(&cfg.Ceiling, "ceiling", false, "measure the raw JetStream ceiling without --compare")
	bracket := fs.Bool("bracket", true, "with --compare or --ceiling: measure the ceiling again after each mode (sync aside) and give each mode its ratio to the ceilings just before and after it (ratio_adj), as the machine's speed drifts over a long run")
	fs.StringVar(&cfg.Sinks, "sinks", loadtest.SinksRecorder, "providers of the self-contained stack: recorder (in process), protocol (SMTP, Twilio, FCM and APNs sinks on loopback) or smtp-sink (postfix's smtp-sink behind the real SMTP provider, then smtp-source into the same sink for comparison)")
	fs.IntVar(&cfg.SMTPConns, "smtp-conns", loadtest.SMTPConnsDefault, "with --sinks smtp-sink: the SMTP provider's connections and smtp-source's sessions")
	fs.IntVar(&cfg.SMTPMessagesPerConn, "smtp-messages-per-conn", 0, "with --sinks smtp-sink: messages per SMTP connection before it is replaced (0: the provider's default)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process (the whole self-contained stack but Postgres) to this file")
	fs.BoolVar(&cfg.DurablePostgres, "durable-postgres", false, "run the self-contained stack's Postgres with fsync and synchronous_commit on, as in production (every commit waits for the disk)")
	fs.StringVar(&cfg.NATSServer, "nats-server", "", "run the self-contained stack's NATS servers as processes of this nats-server binary, as deployments do, instead of embedded (their CPU added to the figures)")
	fs.BoolVar(&cfg.BulkConsumersInMemory, "bulk-consumers-in-memory", false, "run the self-contained node with serve's --bulk-consumers-in-memory (and the per-conversation reference alike)")
	fs.StringVar(&cfg.PhaseProfiles, "phase-profiles", "", "write a CPU profile of each measured phase (ceiling-<shape>.prof, mode-<mode>.prof: publish to drain) and heap profiles at its start and end (.heap0, .heap: diff them for its allocations) into this directory (created if missing); not with --cpuprofile")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "directory for the stack's NATS store and Postgres (default a temporary directory, removed at the end)")
	fs.StringVar(&cfg.NATSURL, "nats-url", "", "target a running sluice at this NATS URL instead of starting a stack (SLUICE_NATS_URL is deliberately not read)")
	metricsURLs := fs.String("metrics-url", "", "the running sluice's workers' /metrics URLs, comma-separated (with --nats-url): transactional latency, error-log writes, RSS and goroutines are read from them")
	fs.StringVar(&cfg.DatabaseURL, "database-url", "", "the running sluice's database, for accounting (with --nats-url)")
	fs.StringVar(&cfg.Env, "env", env("SLUICE_ENV", ""), "the target's environment; production is refused without --allow-production")
	fs.BoolVar(&cfg.AllowProduction, "allow-production", false, "allow a target whose environment is production")
	fs.DurationVar(&cfg.Timeout, "timeout", 6*time.Hour, "bound on the drain of one mode")
	quarantine := fs.String("quarantine", "auto", "quarantine step of a run without --compare: auto (the workers quarantine a conversation whose invalid share passes --quarantine-ratio; the run stops and purges it; against --nats-url the target's workers decide and the run purges without stopping) or none (against --nats-url the run then fails as soon as the target holds one of its conversations)")
	fs.Float64Var(&cfg.QuarantineRatio, "quarantine-ratio", 0.5, "invalid share over a conversation's last 1000 messages that quarantines it, with --quarantine auto (the run's own stack; a running target uses its own setting)")
	maxP99 := fs.Duration("max-tx-p99", 0, "fail (exit 1) if a mode's transactional p99 during the burst exceeds this, for smoke tests; 0: no bound")
	reportDir := fs.String("report", "loadtest-report", "directory for report.json and report.html")
	verbose := fs.Bool("v", false, "log the stack's warnings on stderr")
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loadtest: unexpected argument %q\n", fs.Arg(0))
		return nil, errUsage
	}
	var err error
	if cfg.Channels, err = loadtest.ParseChannels(*channels); err != nil {
		return nil, fmt.Errorf("loadtest: --channels: %w", err)
	}
	cfg.MetricsURLs = loadtest.ParseList(*metricsURLs)
	if cfg.Modes, err = loadtest.ParseModes(*modes); err != nil {
		return nil, fmt.Errorf("loadtest: --modes: %w", err)
	}
	cfg.NoBracket = !*bracket
	if cfg.Baseline == 0 {
		cfg.Baseline = -1
	}
	if cfg.AfterDrain == 0 {
		cfg.AfterDrain = -1
	}
	switch *quarantine {
	case "none":
	case "auto":
		cfg.Quarantine = loadtest.ControlQuarantine(0)
	default:
		return nil, fmt.Errorf("loadtest: --quarantine %q: want auto or none", *quarantine)
	}
	if *cpuProfile != "" && cfg.PhaseProfiles != "" {
		return nil, errors.New("loadtest: --cpuprofile and --phase-profiles cannot be combined (one CPU profile at a time)")
	}
	lr := &loadtestRun{cfg: cfg, cpuProfile: *cpuProfile, maxP99: *maxP99, reportDir: *reportDir}
	if *verbose {
		lr.logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return lr, nil
}

// run runs the load test, writes the report and the summary, and fails
// when the accounting is not exact or a bound is passed.
func (lr *loadtestRun) run(ctx context.Context, stdout io.Writer) error {
	cfg := lr.cfg
	cfg.Progress = newProgress(stdout, isTerminal(stdout))

	if lr.cpuProfile != "" {
		stop, err := startCPUProfile(lr.cpuProfile)
		if err != nil {
			return fmt.Errorf("loadtest: --cpuprofile: %w", err)
		}
		defer stop()
	}
	rep, runErr := loadtest.Run(ctx, cfg, lr.logger)
	if errors.Is(runErr, loadtest.ErrProduction) {
		return runErr
	}
	if rep != nil && len(rep.Modes) > 0 || rep != nil && rep.CeilingMsgsPerSec > 0 {
		if err := loadtest.WriteReport(lr.reportDir, rep); err != nil {
			return errors.Join(runErr, err)
		}
		fmt.Fprintln(stdout)
		loadtest.Summary(stdout, rep)
		abs, _ := filepath.Abs(lr.reportDir)
		fmt.Fprintf(stdout, "report: %s, %s\n", filepath.Join(abs, loadtest.ReportJSON), filepath.Join(abs, loadtest.ReportHTML))
	}
	if runErr != nil {
		return runErr
	}
	if !rep.AccountingExact {
		return errors.New("loadtest: accounting is not exact (see the report)")
	}
	return checkTxP99(rep, lr.maxP99)
}

// checkTxP99 fails when a mode's transactional p99 during the burst exceeds
// maxP99 (0: no bound).
func checkTxP99(rep *loadtest.Report, maxP99 time.Duration) error {
	if maxP99 <= 0 {
		return nil
	}
	bound := float64(maxP99) / float64(time.Millisecond)
	for _, m := range rep.Modes {
		if m.TransactionalP99Ms == nil {
			return fmt.Errorf("loadtest: --max-tx-p99: mode %s has no transactional latency measured", m.Mode)
		}
		if *m.TransactionalP99Ms > bound {
			return fmt.Errorf("loadtest: mode %s: transactional p99 %.1fms during the burst exceeds --max-tx-p99 %v", m.Mode, *m.TransactionalP99Ms, maxP99)
		}
	}
	return nil
}

// startCPUProfile profiles the process's CPU into path until stop.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// newProgress returns the progress printer: one rewritten line with a bar on
// a terminal, a plain line every 5 seconds (and at each phase change)
// otherwise.
func newProgress(w io.Writer, tty bool) func(loadtest.Progress) {
	var lastPrint time.Time
	var lastKey string
	return func(p loadtest.Progress) {
		key := p.Mode + "/" + p.Phase
		frac := 0.0
		if p.Total > 0 {
			frac = float64(p.Processed) / float64(p.Total)
		}
		line := fmt.Sprintf("%-7s %-8s %6.0fs processed %d/%d (%.0f/s) published %d (%.0f/s) error rows %d trickle %d p99 %.1fms",
			p.Mode, p.Phase, p.Elapsed.Seconds(), p.Processed, p.Total, p.ProcRate, p.Published, p.PubRate, p.ErrorRows, p.Trickle, p.LatencyP99)
		if tty {
			const width = 24
			n := int(frac * width)
			bar := "[" + repeat('#', n) + repeat('.', width-n) + "]"
			if key != lastKey && lastKey != "" {
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "\r\033[K%s %s", bar, line)
			lastKey = key
			return
		}
		if key != lastKey || time.Since(lastPrint) >= 5*time.Second {
			fmt.Fprintln(w, line)
			lastPrint, lastKey = time.Now(), key
		}
	}
}

func repeat(c byte, n int) string {
	if n <= 0 {
		return ""
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = c
	}
	return string(b)
}
