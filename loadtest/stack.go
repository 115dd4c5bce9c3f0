package loadtest

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/dispatch/email"
	"github.com/sluicehq/sluice/dispatch/providerset"
	"github.com/sluicehq/sluice/dispatch/sink"
	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/internal/pglocal"
	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/orchestrator"
)

// stack is the self-contained stack's long-lived part: a data directory and
// one local Postgres cluster whose databases the modes use in turn.
type stack struct {
	dir     string
	removes bool
	pg      *pglocal.Cluster
	log     *slog.Logger
	next    int
	// smtpSink is postfix's smtp-sink with Sinks smtp-sink, shared by the
	// modes and smtp-source.
	smtpSink *postfixSink
}

func startStack(ctx context.Context, dataDir string, durable bool, logger *slog.Logger) (_ *stack, err error) {
	s := &stack{dir: dataDir, log: logger}
	if s.dir == "" {
		// As root pglocal runs Postgres as the postgres user, which must be
		// able to traverse the data directory's parents.
		s.dir, err = os.MkdirTemp(os.TempDir(), "sluice-loadtest-")
		if err != nil {
			return nil, fmt.Errorf("loadtest: data dir: %w", err)
		}
		s.removes = true
		if err := os.Chmod(s.dir, 0o711); err != nil {
			return nil, fmt.Errorf("loadtest: data dir: %w", err)
		}
	} else if err := os.MkdirAll(s.dir, 0o711); err != nil {
		return nil, fmt.Errorf("loadtest: data dir: %w", err)
	}
	s.pg, err = pglocal.Start(ctx, pglocal.Config{Dir: s.pgDir(), Fast: !durable, Ephemeral: true, Logger: logger})
	if err != nil {
		s.close(context.Background())
		return nil, fmt.Errorf("loadtest: postgres: %w", err)
	}
	return s, nil
}

// pgDir is the Postgres cluster's data directory.
func (s *stack) pgDir() string { return filepath.Join(s.dir, "pg") }

func (s *stack) close(ctx context.Context) {
	if s.smtpSink != nil {
		s.smtpSink.stop()
	}
	if s.pg != nil {
		if err := s.pg.Stop(ctx); err != nil {
			s.log.Warn("stop postgres", "err", err)
		}
	}
	if s.removes {
		_ = os.RemoveAll(s.dir)
	}
}

// modeStack is one mode's fresh system: its own NATS server and database, a
// node with the worker and API roles, and sinks.
type modeStack struct {
	ns     *natsServer
	node   *node.Node
	rec    *sink.Recorder
	local  *sink.Local
	provs  *providerset.Set
	email  *email.Provider // Sinks smtp-sink
	pgDir  string
	dbURL  string
	dbName string
	// adminURL reaches the cluster's postgres database, from which stop
	// drops dbName.
	adminURL string
	lat      *latency
}

// startMode starts a fresh NATS server and database and a node in mode m.
func (s *stack) startMode(ctx context.Context, cfg *Config, m errorlog.ModeName, lat *latency) (_ *modeStack, err error) {
	s.next++
	ms := &modeStack{lat: lat, dbName: fmt.Sprintf("loadtest_%d_%s", s.next, m), pgDir: s.pgDir(), adminURL: s.pg.AdminURL("postgres")}
	defer func() {
		if err != nil {
			ms.stop(context.Background(), s.log)
		}
	}()
	storeDir := filepath.Join(s.dir, fmt.Sprintf("nats-%d-%s", s.next, m))
	if ms.ns, err = startNATS(cfg, storeDir); err != nil {
		return nil, err
	}
	if err := createDatabase(ctx, ms.adminURL, ms.dbName); err != nil {
		return nil, err
	}
	ms.dbURL = s.pg.AdminURL(ms.dbName)

	provs, err := ms.startProviders(ctx, cfg, s)
	if err != nil {
		return nil, err
	}
	timed := make(map[dispatch.Channel]dispatch.Provider, len(provs))
	for ch, p := range provs {
		timed[ch] = timedProvider{next: p, lat: lat}
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	ncfg := node.Config{
		NATSURL: ms.ns.url, DatabaseURL: ms.dbURL, HTTPAddr: "127.0.0.1:0",
		Worker: true, API: true, Migrate: true,
		ErrorLog:  errorlog.Config{Mode: errorlog.Mode{Name: m}, MaskKey: key},
		Providers: timed, Name: "sluice-loadtest", Env: "test",
	}
	ncfg.Pipeline.ConversationConsumersInMemory = cfg.BulkConsumersInMemory
	if cfg.Quarantine != nil && !cfg.Compare && cfg.QuarantineRatio > 0 {
		ncfg.Quarantine = orchestrator.QuarantineConfig{Ratio: cfg.QuarantineRatio}
	}
	// The run purges stopped conversations itself (and counts what it
	// purges); the workers' sweep would purge some uncounted.
	ncfg.SweepInterval = 24 * time.Hour
	if ms.provs != nil {
		ncfg.Collectors = append(ncfg.Collectors, ms.provs)
	}
	ms.node, err = node.Start(ctx, ncfg, s.log)
	if err != nil {
		return nil, err
	}
	return ms, nil
}

// startProviders starts the mode's sinks and the providers that send to
// them.
func (ms *modeStack) startProviders(ctx context.Context, cfg *Config, s *stack) (_ map[dispatch.Channel]dispatch.Provider, err error) {
	switch cfg.Sinks {
	case SinksProtocol:
		ms.local, err = sink.StartLocal(ctx, sink.LocalConfig{Logger: s.log})
		if err != nil {
			return nil, fmt.Errorf("loadtest: sinks: %w", err)
		}
		ms.provs, err = providerset.New(ms.local.Config(), s.log, nil)
		if err != nil {
			return nil, fmt.Errorf("loadtest: providers: %w", err)
		}
		return ms.provs.Providers(), nil
	case SinksSMTPSink:
		ms.rec = sink.NewRecorder()
		ms.email, err = email.New(email.Config{
			Addr: s.smtpSink.addr, From: "Sluice <noreply@example.com>", TLS: email.TLSNone, HeloName: "loadtest.example",
			MaxConns: cfg.SMTPConns, MaxMessagesPerConn: cfg.SMTPMessagesPerConn,
		})
		if err != nil {
			return nil, fmt.Errorf("loadtest: email provider: %w", err)
		}
		ep := ledgerProvider{next: ms.email, ledger: ms.rec.Ledger}
		return map[dispatch.Channel]dispatch.Provider{dispatch.ChannelEmail: ep, dispatch.ChannelSMS: ms.rec, dispatch.ChannelPush: ms.rec}, nil
	default:
		ms.rec = sink.NewRecorder()
		return map[dispatch.Channel]dispatch.Provider{dispatch.ChannelEmail: ms.rec, dispatch.ChannelSMS: ms.rec, dispatch.ChannelPush: ms.rec}, nil
	}
}

// cpu samples the stack's CPU time.
func (ms *modeStack) cpu() (cpuSample, bool) {
	return cpuSample{Process: processCPU(), NATS: ms.ns.cpu(), Postgres: postgresCPU(ms.pgDir)}, true
}

// delivered returns how many distinct messages of the conversation the
// sinks accepted.
func (ms *modeStack) delivered(conversation string) int64 {
	if ms.rec != nil {
		return int64(ms.rec.Ledger.Conversation(Tenant, conversation))
	}
	l := ms.local
	return int64(l.SMTP.Ledger().Conversation(Tenant, conversation) + l.Twilio.Ledger().Conversation(Tenant, conversation) +
		l.FCM.Ledger().Conversation(Tenant, conversation) + l.APNs.Ledger().Conversation(Tenant, conversation))
}

// duplicateSends returns how many sends the sinks received again for a key
// they had accepted (a resend after a lost ack or a crash).
func (ms *modeStack) duplicateSends() int64 {
	if ms.rec != nil {
		return int64(ms.rec.Ledger.Stats().Duplicates)
	}
	return int64(ms.local.Stats().Duplicates)
}

func (ms *modeStack) stop(ctx context.Context, logger *slog.Logger) {
	if ms.node != nil {
		if err := ms.node.Stop(ctx); err != nil {
			logger.Warn("stop node", "err", err)
		}
	}
	if ms.provs != nil {
		_ = ms.provs.Close()
	}
	if ms.email != nil {
		_ = ms.email.Close()
	}
	if ms.local != nil {
		_ = ms.local.Close()
	}
	if ms.ns != nil {
		ms.ns.stop()
	}
	if ms.dbURL != "" {
		// The cluster outlives the mode (the next modes use it), and a
		// finished mode's tables would cost the next ones: autovacuum
		// worked through the full mode's 7.6M error_log rows while the
		// following mode ran (BENCHMARKS.md). Its accounting has been read.
		if err := dropDatabase(ctx, ms.adminURL, ms.dbName); err != nil {
			logger.Warn("drop the mode's database", "db", ms.dbName, "err", err)
		}
	}
}

func createDatabase(ctx context.Context, adminURL, name string) error {
	return adminExec(ctx, adminURL, "create database "+name, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
}

// dropDatabase drops name, closing the connections still open to it.
func dropDatabase(ctx context.Context, adminURL, name string) error {
	return adminExec(ctx, adminURL, "drop database "+name, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

// adminExec runs sql on a connection of its own to adminURL.
func adminExec(ctx context.Context, adminURL, what, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("loadtest: postgres: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("loadtest: %s: %w", what, err)
	}
	return nil
}

// timedProvider reports the trickle's deliveries to the latency recorder.
type timedProvider struct {
	next dispatch.Provider
	lat  *latency
}

func (p timedProvider) Send(ctx context.Context, m *dispatch.Message) error {
	err := p.next.Send(ctx, m)
	if err == nil && p.lat != nil && m.Conversation == p.lat.conv {
		p.lat.delivered(m.ID)
	}
	return err
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
