package orchestrator_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/dispatch/sink"
	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/internal/natstest"
	"github.com/sluicehq/sluice/internal/pgtest"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/wire"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// bundle is one test's running system: a JetStream server, a database, the
// error log and a sink.
type bundle struct {
	url  string
	js   jetstream.JetStream
	db   *pgtest.DB
	elog *errorlog.Log
	rec  *sink.Recorder
	pub  *orchestrator.Publisher
	log  *slog.Logger
}

func setup(tb testing.TB) *bundle {
	tb.Helper()
	nc, url := natstest.Start(tb)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(2048))
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	if _, err := orchestrator.EnsureStreams(ctx, js, orchestrator.StreamConfig{}); err != nil {
		tb.Fatal(err)
	}
	db := pgtest.New(tb)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	b := &bundle{url: url, js: js, db: db, rec: sink.NewRecorder(), pub: orchestrator.NewPublisher(js, 0), log: logger}
	b.elog = b.newErrorLog(tb, js, errorlog.Config{})
	return b
}

// newErrorLog starts an error log over the bundle's database, spilling to js,
// stopped when the test ends.
func (b *bundle) newErrorLog(tb testing.TB, js jetstream.JetStream, cfg errorlog.Config) *errorlog.Log {
	tb.Helper()
	cfg.MaskKey = []byte("test-mask-key-0123456789")
	cfg.Spill = js
	cfg.Source = orchestrator.StreamName
	elog, err := errorlog.New(b.db.Pool, cfg, b.log, prometheus.NewRegistry())
	if err != nil {
		tb.Fatal(err)
	}
	if err := elog.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = elog.Stop(sctx)
	})
	return elog
}

// providers routes every channel to p.
func allChannels(p dispatch.Provider) map[dispatch.Channel]dispatch.Provider {
	return map[dispatch.Channel]dispatch.Provider{dispatch.ChannelEmail: p, dispatch.ChannelSMS: p, dispatch.ChannelPush: p}
}

// start runs a Service over js until the test ends.
func (b *bundle) start(tb testing.TB, js jetstream.JetStream, providers map[dispatch.Channel]dispatch.Provider, cfg orchestrator.Config) *orchestrator.Service {
	tb.Helper()
	return b.startWith(tb, js, b.elog, providers, cfg)
}

// startWith runs a Service with its own error log, as a second worker
// process would.
func (b *bundle) startWith(tb testing.TB, js jetstream.JetStream, elog orchestrator.ErrorLog, providers map[dispatch.Channel]dispatch.Provider, cfg orchestrator.Config) *orchestrator.Service {
	tb.Helper()
	return b.startRegistered(tb, js, elog, providers, cfg, prometheus.NewRegistry())
}

// startRegistered runs a Service whose metrics go to reg until the test
// ends.
func (b *bundle) startRegistered(tb testing.TB, js jetstream.JetStream, elog orchestrator.ErrorLog, providers map[dispatch.Channel]dispatch.Provider, cfg orchestrator.Config, reg *prometheus.Registry) *orchestrator.Service {
	tb.Helper()
	svc, err := orchestrator.NewService(js, providers, elog, cfg, b.log, reg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = svc.Stop(sctx)
	})
	return svc
}

// publish publishes all activations asynchronously and waits for their acks.
func (b *bundle) publish(tb testing.TB, acts []*wire.Activation) {
	tb.Helper()
	for _, a := range acts {
		if _, err := b.pub.PublishAsync(a); err != nil {
			tb.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := b.pub.Wait(ctx); err != nil {
		tb.Fatal(err)
	}
}

// errorCounts sums error_counts by reason.
func (b *bundle) errorCounts(tb testing.TB) map[string]int64 {
	tb.Helper()
	rows, err := b.db.Pool.Query(context.Background(), `SELECT reason, sum(count)::bigint FROM error_counts GROUP BY reason`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var r string
		var n int64
		if err := rows.Scan(&r, &n); err != nil {
			tb.Fatal(err)
		}
		out[r] = n
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// stream looks up one of the lanes' streams.
func (b *bundle) stream(tb testing.TB, name string) jetstream.Stream {
	tb.Helper()
	s, err := b.js.Stream(context.Background(), name)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// streamMsgs is the number of messages still in both lanes' streams.
func (b *bundle) streamMsgs(tb testing.TB) uint64 {
	tb.Helper()
	var n uint64
	for _, name := range []string{orchestrator.StreamName, orchestrator.TransactionalStreamName} {
		info, err := b.stream(tb, name).Info(context.Background())
		if err != nil {
			tb.Fatal(err)
		}
		n += info.State.Msgs
	}
	return n
}

// unhandled is the number of messages no worker has finished with: the
// transactional stream's (a work queue: an ack removes the message) and what
// the bulk stream's consumers have not had acked (that stream keeps acked
// messages until the reclaim pass purges them, so its message count is no
// measure of progress).
func (b *bundle) unhandled(tb testing.TB) uint64 {
	tb.Helper()
	ctx := context.Background()
	info, err := b.stream(tb, orchestrator.TransactionalStreamName).Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	n := info.State.Msgs
	consumers := b.stream(tb, orchestrator.StreamName).ListConsumers(ctx)
	for ci := range consumers.Info() {
		n += ci.NumPending + uint64(ci.NumAckPending)
	}
	if err := consumers.Err(); err != nil {
		tb.Fatal(err)
	}
	return n
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// connect opens an extra NATS connection, closed when the test ends.
func connect(tb testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return nc, js
}

func activation(id string, lane wire.Lane, tenant, conv string, ch dispatch.Channel, to string) *wire.Activation {
	return &wire.Activation{ID: id, Tenant: tenant, Conversation: conv, Lane: lane, Channel: string(ch), To: to, EnqueuedAt: time.Now().UTC()}
}

// funcProvider adapts a function to dispatch.Provider.
type funcProvider func(ctx context.Context, m *dispatch.Message) error

func (f funcProvider) Send(ctx context.Context, m *dispatch.Message) error { return f(ctx, m) }

// countingProvider counts calls per message id before delegating.
type countingProvider struct {
	mu    sync.Mutex
	calls map[string]int
	total atomic.Int64
	next  dispatch.Provider
}

func (c *countingProvider) Send(ctx context.Context, m *dispatch.Message) error {
	c.mu.Lock()
	if c.calls == nil {
		c.calls = map[string]int{}
	}
	c.calls[m.ID]++
	c.mu.Unlock()
	c.total.Add(1)
	return c.next.Send(ctx, m)
}

func (c *countingProvider) count(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[id]
}

// distinct is how many messages were sent at least once; with prefix, only
// those whose id starts with it.
func (c *countingProvider) distinct(prefix string) (n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.calls {
		if strings.HasPrefix(id, prefix) {
			n++
		}
	}
	return n
}

// sentOnce checks that every activation was sent once, or as allowed says
// for the ones that may be sent twice.
func (c *countingProvider) sentOnce(tb testing.TB, acts []*wire.Activation, twiceAllowed func(*wire.Activation) bool) {
	tb.Helper()
	for i, a := range acts {
		n := c.count(a.ID)
		if n != 1 && (twiceAllowed == nil || !twiceAllowed(a) || n != 2) {
			tb.Errorf("message %d (%s of %s) sent %d times", i, a.ID, a.Conversation, n)
		}
	}
}

// waitDrained waits until every activation has been sent, the streams are
// empty and delivery_counts holds one delivery per activation.
func (b *bundle) waitDrained(tb testing.TB, sends *countingProvider, acts []*wire.Activation) {
	tb.Helper()
	waitFor(tb, 30*time.Second, "every message sent", func() bool { return sends.distinct("") == len(acts) })
	waitFor(tb, 10*time.Second, "the stream emptied", func() bool { return b.streamMsgs(tb) == 0 })
	waitFor(tb, 10*time.Second, "each message counted once", func() bool {
		var n int64
		err := b.db.Pool.QueryRow(context.Background(), `SELECT coalesce(sum(count), 0)::bigint FROM delivery_counts`).Scan(&n)
		return err == nil && n == int64(len(acts))
	})
}

var _ = fmt.Sprintf
