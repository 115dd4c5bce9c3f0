package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/dispatch/sink"
	"github.com/sluicehq/sluice/internal/natstest"
	"github.com/sluicehq/sluice/internal/pgtest"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/wire"
)

// execAsSluice, set in a child's environment, makes the test binary run
// `sluice` with these arguments (separated by \x1f) instead of the tests.
const execAsSluice = "SLUICE_TEST_EXEC_ARGS"

// startWorker runs `sluice serve --worker` as a separate OS process, sending
// email over SMTP to smtpAddr (a sink in the test's process, so that its
// ledger outlives the worker).
func startWorker(t *testing.T, natsURL, dbURL, smtpAddr string) *exec.Cmd {
	t.Helper()
	return startWorkerAt(t, natsURL, dbURL, smtpAddr, "127.0.0.1:0")
}

// startWorkerAt is startWorker serving /metrics on httpAddr.
func startWorkerAt(t *testing.T, natsURL, dbURL, smtpAddr, httpAddr string) *exec.Cmd {
	t.Helper()
	args := []string{"serve", "--worker", "--nats-url", natsURL, "--database-url", dbURL, "--http-addr", httpAddr,
		"--providers", "real", "--smtp-addr", smtpAddr, "--smtp-tls", "none", "--smtp-from", "sluice@example.com",
		"--env", "test", "--quarantine-ratio", "0"}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), execAsSluice+"="+strings.Join(args, "\x1f"),
		"SLUICE_ERRORLOG_MASK_KEY=00112233445566778899aabbccddeeff")
	cmd.Stdout, cmd.Stderr = nil, nil
	if testing.Verbose() {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	return cmd
}

// killBench is what the kill tests share: an embedded NATS with the
// activation stream, a Postgres database and an SMTP sink in the test's
// process (so that its ledger outlives the workers it kills).
type killBench struct {
	natsURL string
	nc      *nats.Conn
	js      jetstream.JetStream
	db      *pgtest.DB
	smtp    *sink.SMTPServer
}

func startKillBench(t *testing.T) *killBench {
	t.Helper()
	k := &killBench{db: pgtest.New(t)}
	k.nc, k.natsURL = natstest.Start(t)
	var err error
	if k.js, err = jetstream.New(k.nc, jetstream.WithPublishAsyncMaxPending(2048)); err != nil {
		t.Fatal(err)
	}
	if _, err := orchestrator.EnsureStreams(context.Background(), k.js, orchestrator.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	if k.smtp, err = sink.StartSMTP(sink.SMTPConfig{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.smtp.Close() })
	return k
}

// publish queues acts in the stream and waits for every acknowledgement.
func (k *killBench) publish(t *testing.T, acts []*wire.Activation) {
	t.Helper()
	pub := orchestrator.NewPublisher(k.js, 0)
	for _, a := range acts {
		if _, err := pub.PublishAsync(a); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pub.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestKill9MidFlood floods a worker process with mostly invalid addresses and
// some valid ones, kills it with SIGKILL mid-flood, starts another, and
// checks that every outcome ends exact: invalid counted once each, delivered
// equal to the distinct activations the SMTP sink's ledger received (a
// resend after the kill is a duplicate send, not a second delivery), and
// delivered + invalid = published.
func TestKill9MidFlood(t *testing.T) {
	n := 60_000
	if testing.Short() {
		n = 20_000
	}
	k := startKillBench(t)
	db, natsURL, js, smtpSink := k.db, k.natsURL, k.js, k.smtp
	ctx := context.Background()
	outcomes := func() (delivered, invalid int64) {
		if err := db.Pool.QueryRow(ctx, `SELECT (SELECT coalesce(sum(count), 0) FROM delivery_counts)::bigint,
			(SELECT coalesce(sum(count), 0) FROM error_counts)::bigint`).Scan(&delivered, &invalid); err != nil {
			t.Fatal(err)
		}
		return delivered, invalid
	}
	counted := func() int64 { d, i := outcomes(); return d + i }
	first := startWorker(t, natsURL, db.URL, smtpSink.Addr())

	to := []string{"", "not-an-email", "a@b", "valid"}
	wantValid := int64(0)
	acts := make([]*wire.Activation, n)
	for i := range n {
		addr := to[i%len(to)]
		if addr == "valid" {
			addr = fmt.Sprintf("user%d@example.com", i)
			wantValid++
		}
		acts[i] = &wire.Activation{ID: fmt.Sprintf("k-%d", i), Tenant: "acme", Conversation: fmt.Sprintf("storm-%d", i%4),
			Lane: wire.LaneBulk, Channel: "email", To: addr, EnqueuedAt: time.Now().UTC()}
	}
	k.publish(t, acts)
	deadline := time.Now().Add(2 * time.Minute)
	for c := counted(); c < int64(n)/4; c = counted() {
		if time.Now().After(deadline) {
			t.Fatalf("the first worker counted only %d of %d", c, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	atKill := counted()

	startWorker(t, natsURL, db.URL, smtpSink.Addr())
	deadline = time.Now().Add(3 * time.Minute)
	for counted() < int64(n) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	// Redeliveries of messages counted before the kill come back after
	// AckWait; give them time to be (not) counted again.
	s, err := js.Stream(ctx, orchestrator.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	for time.Now().Before(deadline) {
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	delivered, invalid := outcomes()
	st := smtpSink.Ledger().Stats()
	if delivered+invalid != int64(n) || invalid != int64(n)-wantValid {
		t.Errorf("after kill -9 at %d counted: delivered %d + invalid %d, want %d + %d = %d", atKill, delivered, invalid, wantValid, int64(n)-wantValid, n)
	}
	if delivered != int64(st.Unique) || int64(st.Unique) != wantValid {
		t.Errorf("delivered %d, the sink's ledger %d distinct (%d duplicate sends); want both %d", delivered, st.Unique, st.Duplicates, wantValid)
	}
	t.Logf("kill -9 after %d of %d were counted; delivered %d = ledger's distinct, %d duplicate sends; identity exact", atKill, n, delivered, st.Duplicates)
}
