package loadtest

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/internal/ctxtime"
	"github.com/sluicehq/sluice/internal/redact"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/control"
	"github.com/sluicehq/sluice/wire"
)

// Run runs the configured scenario and returns its report. logger may be
// nil.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) (*Report, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = discardLogger()
	}
	qstate := quarantineState(&cfg)
	rep := &Report{
		Scenario: cfg.Scenario, Seed: cfg.Seed, Messages: cfg.Messages, Conversations: cfg.Conversations,
		InvalidRatio: cfg.InvalidRatio, TrickleRate: cfg.TrickleRate, BaselineSecs: cfg.Baseline.Seconds(),
		Window: cfg.Window, PublishRate: cfg.PublishRate, Sinks: cfg.Sinks, BulkConsumersInMemory: cfg.BulkConsumersInMemory, NATSServer: cfg.NATSServer, Env: cfg.Env, Quarantine: qstate,
		Machine: machine(), StartedAt: time.Now().UTC(),
	}
	for _, ch := range cfg.Channels {
		rep.Channels = append(rep.Channels, string(ch))
	}
	switch {
	case qstate == QuarantineOff && cfg.NATSURL != "":
		rep.Notes = append(rep.Notes, "quarantine off: the run fails if the target holds one of its conversations (quarantined, paused or stopped), since it would never drain")
	case qstate == QuarantineOff:
		rep.Notes = append(rep.Notes, "quarantine off: every invalid message went through the error log")
	case cfg.NATSURL != "":
		rep.Notes = append(rep.Notes, "quarantine on: the target's workers quarantine by their own settings; the run purges the queued messages of each quarantined conversation (counted as purged) and leaves its state as the target set it")
	default:
		rep.Notes = append(rep.Notes, fmt.Sprintf("quarantine on: the workers quarantine a conversation whose invalid share over its last 1000 messages passes %.2f; the run then stops it and purges its queued messages (counted as purged); drain_seconds and msgs_per_sec count purged messages as cleared, so compare throughput with --compare (quarantine off)", cfg.QuarantineRatio))
	}
	start := time.Now()
	var err error
	if cfg.NATSURL != "" {
		err = runTarget(ctx, &cfg, rep, logger)
	} else {
		err = runStack(ctx, &cfg, rep, logger)
	}
	rep.Seconds = time.Since(start).Seconds()
	rep.AccountingExact = len(rep.Modes) > 0
	for i := range rep.Modes {
		m := &rep.Modes[i]
		rep.AccountingExact = rep.AccountingExact && m.AccountingExact
		if rep.CeilingMsgsPerSec > 0 {
			m.RatioToCeiling = m.MsgsPerSec / rep.CeilingMsgsPerSec
		}
		if m.CeilingBeforeMsgsPerSec > 0 && m.CeilingAfterMsgsPerSec > 0 {
			m.RatioToAdjacent = m.MsgsPerSec / ((m.CeilingBeforeMsgsPerSec + m.CeilingAfterMsgsPerSec) / 2)
		}
		for _, r := range rep.References {
			if r.Shape == string(ceilingPerConversation) && r.MsgsPerSec > 0 {
				m.RatioToPerConversation = m.MsgsPerSec / r.MsgsPerSec
			}
		}
	}
	return rep, err
}

// runStack runs every mode on the self-contained stack.
func runStack(ctx context.Context, cfg *Config, rep *Report, logger *slog.Logger) error {
	nats := "embedded NATS"
	if cfg.NATSServer != "" {
		nats = "nats-server processes"
	}
	rep.Target = "self-contained (" + nats + ", local Postgres, node with worker and API, " + cfg.Sinks + " sinks)"
	rep.DuplicateWindowSeconds = orchestrator.DefaultDuplicateWindow.Seconds() // the stack's node keeps the default
	env, err := checkFence(ctx, cfg.Env, nil, nil, cfg.AllowProduction)
	rep.Env = env
	if err != nil {
		return err
	}
	st, err := startStack(ctx, cfg.DataDir, cfg.DurablePostgres, logger)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		st.close(sctx)
	}()
	rep.Machine.Postgres = postgresSettings(ctx, st.pg.AdminURL("postgres"))
	if cfg.Sinks == SinksSMTPSink {
		if st.smtpSink, err = startPostfixSink(ctx, cfg.SMTPSinkPath); err != nil {
			return err
		}
		rep.SMTPConns = cfg.SMTPConns
	}
	if cfg.Compare || cfg.Ceiling {
		if err := runCeilings(ctx, cfg, rep, st); err != nil {
			return err
		}
	}
	before := rep.CeilingMsgsPerSec
	for _, m := range cfg.Modes {
		mr, err := runStackMode(ctx, cfg, rep, st, m, logger)
		if mr != nil && before > 0 && !cfg.NoBracket && m != errorlog.ModeSync {
			// The ceiling again, right after the mode: the next mode's
			// "before".
			after, cerr := runCeilingPhase(ctx, cfg, st, ceilingOne, "ceiling-after-"+string(m))
			if cerr != nil && err == nil {
				err = cerr
			}
			if cerr == nil {
				mr.CeilingBeforeMsgsPerSec, mr.CeilingAfterMsgsPerSec = before, after.MsgsPerSec
				before = after.MsgsPerSec
			}
		}
		if mr != nil {
			rep.Modes = append(rep.Modes, *mr)
		}
		if err != nil {
			return fmt.Errorf("loadtest: mode %s: %w", m, err)
		}
	}
	if st.smtpSink != nil {
		return compareSMTPSource(ctx, cfg, rep, st.smtpSink.addr)
	}
	return nil
}

// runStackMode runs mode m on a fresh system of the stack.
func runStackMode(ctx context.Context, cfg *Config, rep *Report, st *stack, m errorlog.ModeName, logger *slog.Logger) (*ModeReport, error) {
	n := cfg.Messages
	if m == errorlog.ModeSync && cfg.Compare {
		n = cfg.SyncMessages
		if n < cfg.Messages {
			rep.Notes = append(rep.Notes, fmt.Sprintf("mode sync ran %d messages instead of %d (one INSERT per event; --sync-messages)", n, cfg.Messages))
		}
	}
	// A tag per mode keeps ids distinct; each mode has fresh streams and
	// a fresh database anyway.
	sc := newScenario(cfg, "")
	lat := newLatency(sc.TrickleConversation(), time.Now())
	ms, err := st.startMode(ctx, cfg, m, lat)
	if err != nil {
		return nil, err
	}
	var q Quarantiner
	if cfg.Quarantine != nil && !cfg.Compare {
		q = cfg.Quarantine(QuarantineTarget{JS: ms.node.JS, Control: ms.node.Control})
	}
	mr, err := runMode(ctx, cfg, string(m), n, sc, lat, ms.ns.url, ms, q, ms.node.Registry)
	sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	ms.stop(sctx, logger)
	cancel()
	return mr, err
}

// compareSMTPSource runs smtp-source into the sink the modes sent to, with
// as many sessions as the provider had connections, first one connection
// per message (the reference), then with connections kept, and
// sets each mode's ratios to them.
func compareSMTPSource(ctx context.Context, cfg *Config, rep *Report, addr string) error {
	var err error
	if rep.SMTPSource, err = runSMTPSource(ctx, cfg.SMTPSourcePath, addr, cfg.Messages, cfg.SMTPConns, false); err != nil {
		return err
	}
	if rep.SMTPSourceKeep, err = runSMTPSource(ctx, cfg.SMTPSourcePath, addr, cfg.Messages, cfg.SMTPConns, true); err != nil {
		return err
	}
	for i := range rep.Modes {
		m := &rep.Modes[i]
		m.RatioToSMTPSource = m.MsgsPerSec / rep.SMTPSource.MsgsPerSec
		m.RatioToSMTPSourceKeep = m.MsgsPerSec / rep.SMTPSourceKeep.MsgsPerSec
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("smtp-sink: the email provider sent over %d connections to postfix's smtp-sink; then smtp-source pushed the same number of messages (-l %d) with %d sessions into the same sink, once with a new connection per message and once with connections kept (-d); cpu is this process's (node, embedded NATS, load generator) plus the Postgres cluster's, from the burst's first publish to its drain, per 1,000 delivered burst messages; the sink's and smtp-source's CPU are not included", cfg.SMTPConns, SMTPSourceMessageLength, cfg.SMTPConns))
	return nil
}

// runTarget runs one mode against a running sluice.
func runTarget(ctx context.Context, cfg *Config, rep *Report, logger *slog.Logger) error {
	rep.Target = redact.URL(cfg.NATSURL)
	nc, err := nats.Connect(cfg.NATSURL, nats.Name("sluice-loadtest"))
	if err != nil {
		return fmt.Errorf("loadtest: connect %s: %w", rep.Target, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if st, err := js.Stream(ctx, orchestrator.StreamName); err == nil {
		rep.DuplicateWindowSeconds = st.CachedInfo().Config.Duplicates.Seconds()
	}
	var pool *pgxpool.Pool
	if cfg.DatabaseURL != "" {
		pool, err = pgxpool.New(ctx, cfg.DatabaseURL)
		if err != nil {
			return fmt.Errorf("loadtest: postgres: %w", err)
		}
		defer pool.Close()
	} else {
		rep.Notes = append(rep.Notes, "no DatabaseURL: accounting and error-log rows not read")
	}
	env, err := checkFence(ctx, cfg.Env, js, pool, cfg.AllowProduction)
	rep.Env = env
	if err != nil {
		return err
	}
	ctl, err := control.Attach(ctx, js, pool, logger)
	if err != nil {
		return fmt.Errorf("loadtest: %s is not a running sluice: %w", rep.Target, err)
	}
	qt := QuarantineTarget{JS: js, Control: ctl, Running: true}
	q := Quarantiner(refuseHeld{qt})
	if cfg.Quarantine != nil {
		q = cfg.Quarantine(qt)
	}
	rep.Notes = append(rep.Notes,
		"running target: the sinks' ledgers are not available; delivered is the stored, exactly-once count, not checked against the providers")
	tgt := &targetDB{pool: pool}
	var lat latencySource
	if len(cfg.MetricsURLs) > 0 {
		g := newScrapeGatherer(cfg.MetricsURLs)
		if _, err := snapHistogram(g, deliveryLatencyMetric, nil); err != nil {
			return fmt.Errorf("loadtest: --metrics-url: %w", err)
		}
		tgt.metrics = g
		lat = newHistLatency(g)
		rep.Notes = append(rep.Notes, fmt.Sprintf("running target: transactional latency, error-log writes, RSS and goroutines are read from %d workers' /metrics: latency is the transactional delivery-latency histogram (every transactional delivery of the target, percentiles interpolated within buckets, max the highest bucket's bound); RSS and goroutines are sums over the workers", len(cfg.MetricsURLs)))
	} else {
		rep.Notes = append(rep.Notes, "running target without --metrics-url: transactional latency, error-log write time, RSS and goroutines are not measured; error-log rows are counted from the database at the end")
	}
	// A random tag: two runs in the same second must not share conversations.
	run := "-" + strconv.FormatUint(uint64(rand.Uint32()), 36)
	sc := newScenario(cfg, run)
	mode := "target"
	if len(cfg.Modes) == 1 && cfg.Modes[0] != errorlog.ModeFull {
		rep.Notes = append(rep.Notes, "Modes is not applied to a running target; set its mode with sluice ctl errorlog set")
	}
	mr, err := runMode(ctx, cfg, mode, cfg.Messages, sc, lat, cfg.NATSURL, tgt, q, tgt.metrics)
	if mr != nil {
		rep.Modes = append(rep.Modes, *mr)
	}
	if hl, ok := lat.(*histLatency); ok && hl.scrapeErr() != nil {
		rep.Notes = append(rep.Notes, "some scrapes of the workers' metrics failed, figures may miss intervals: "+hl.scrapeErr().Error())
	}
	return err
}

// system is what runMode needs from a target: where the database is and who
// counts deliveries.
type system interface {
	db() *pgxpool.Pool
	// delivered returns the sinks' count for a conversation, or -1 when the
	// target has no ledgers.
	deliveredCount(conversation string) int64
	// duplicateSends returns how many sends the sinks received for a key
	// they had already accepted, or -1 when the target has no ledgers.
	duplicateSends() int64
	// usage samples the workers' resident memory (bytes, the peak so far
	// where the system knows it) and goroutines; ok is false when unknown.
	usage() (rss int64, goroutines int, ok bool)
	// cpu samples the system's CPU time; ok is false when unknown.
	cpu() (cpuSample, bool)
}

func (ms *modeStack) db() *pgxpool.Pool                { return ms.node.Pool }
func (ms *modeStack) deliveredCount(conv string) int64 { return ms.delivered(conv) }

// usage is the whole process's: the workers share it with the embedded
// NATS server, Postgres's client pool and the load generator.
func (ms *modeStack) usage() (int64, int, bool) { return peakRSS(), runtime.NumGoroutine(), true }

// targetDB is a running target: its database, and its workers' metrics
// when their /metrics endpoints are given.
type targetDB struct {
	pool    *pgxpool.Pool
	metrics prometheus.Gatherer
}

// usage sums process_resident_memory_bytes and go_goroutines over the
// scraped workers.
func (t *targetDB) usage() (int64, int, bool) {
	if t.metrics == nil {
		return 0, 0, false
	}
	if _, err := t.metrics.Gather(); err != nil {
		return 0, 0, false
	}
	return int64(metricValue(t.metrics, "process_resident_memory_bytes", nil)), int(metricValue(t.metrics, "go_goroutines", nil)), true
}

// accountWait is how long accounting may take to settle: a running
// target's workers may still be acking and sweeping.
func accountWait(sys system) time.Duration {
	if _, ok := sys.(*targetDB); ok {
		return 15 * time.Second
	}
	return 3 * time.Second
}

func (t *targetDB) db() *pgxpool.Pool           { return t.pool }
func (t *targetDB) cpu() (cpuSample, bool)      { return cpuSample{}, false }
func (t *targetDB) deliveredCount(string) int64 { return -1 }
func (t *targetDB) duplicateSends() int64       { return -1 }

// publishedTo is how many of the first p burst messages went to
// conversation k of convs (message i goes to conversation i mod convs).
func publishedTo(k, convs int, p int64) int64 {
	return max(0, (p-int64(k)+int64(convs)-1)/int64(convs))
}

// runTrickle publishes transactional messages at rate per second until ctx
// ends, each with a synchronous publish.
func runTrickle(ctx context.Context, js jetstream.JetStream, sc *Scenario, rate float64, lat latencySource, sent *atomic.Int64) error {
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	for i := 0; ; i++ {
		next := start.Add(time.Duration(i) * interval)
		if d := time.Until(next); d > 0 {
			if err := ctxtime.Sleep(ctx, d); err != nil {
				return err
			}
		} else if ctx.Err() != nil {
			return ctx.Err()
		}
		a := sc.Trickle(i)
		data, err := wire.Encode(a)
		if err != nil {
			return err
		}
		t := time.Now()
		if lat != nil {
			lat.published(a.ID, t)
		}
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		_, err = js.Publish(pctx, a.Subject(), data, jetstream.WithMsgID(a.ID))
		cancel()
		if err != nil {
			return fmt.Errorf("publish %s: %w", a.ID, err)
		}
		sent.Add(1)
	}
}

// account fills the accounting and error rows of mr from the stored,
// exactly-once outcome counts (errorlog.CountsOf), checked against the
// sinks' ledgers where the load test runs them.
func account(ctx context.Context, sys system, sc *Scenario, accepted, purged map[string]int64, mr *ModeReport) error {
	pool := sys.db()
	convs := append(append([]string(nil), sc.convs...), sc.trickle)
	var counts map[string]errorlog.Outcomes
	if pool != nil {
		var err error
		if counts, err = errorlog.CountsOf(ctx, pool, Tenant, convs); err != nil {
			return err
		}
		if mr.ErrorRowsWritten, err = errorlog.Rows(ctx, pool, Tenant, convs); err != nil {
			return err
		}
	}
	mr.AccountingExact = pool != nil
	mr.DuplicateSends = sys.duplicateSends()
	for _, c := range convs {
		o := counts[c]
		a := Account{Conversation: c, Accepted: accepted[c], Purged: purged[c],
			Delivered: o.Count[wire.OutcomeDelivered], Invalid: o.Count[wire.OutcomeInvalid], Failed: o.Count[wire.OutcomeFailed],
			Suppressed: o.Count[wire.OutcomeSuppressed], Expired: o.Count[wire.OutcomeExpired],
			SinkDistinct: sys.deliveredCount(c)}
		a.Exact = pool != nil && a.Accepted == a.Delivered+a.Invalid+a.Failed+a.Suppressed+a.Expired+a.Purged &&
			(a.SinkDistinct < 0 || a.SinkDistinct == a.Delivered)
		mr.AccountingExact = mr.AccountingExact && a.Exact
		mr.Accounting = append(mr.Accounting, a)
	}
	return nil
}

func machine() Machine {
	m := Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
		GOGC: os.Getenv("GOGC"), GOMEMLIMIT: os.Getenv("GOMEMLIMIT")}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
					m.MemBytes = kb << 10
				}
			}
		}
	}
	return m
}

// postgresSettings is the server's version and how it commits: the
// settings that decide what a commit costs.
func postgresSettings(ctx context.Context, url string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return ""
	}
	defer pool.Close()
	var v, fsync, syncCommit string
	if err := pool.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('fsync'), current_setting('synchronous_commit')`).Scan(&v, &fsync, &syncCommit); err != nil {
		return ""
	}
	return v + " (fsync " + fsync + ", synchronous_commit " + syncCommit + ")"
}
