package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/internal/natstest"
	"github.com/sluicehq/sluice/internal/pgtest"
	"github.com/sluicehq/sluice/internal/webhooktest"
	"github.com/sluicehq/sluice/webhook"
	"github.com/sluicehq/sluice/wire"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

type bundle struct {
	db    *pgtest.DB
	nc    *nats.Conn
	js    jetstream.JetStream
	store *webhook.Store
	pub   *webhook.Publisher
}

// fast is a dispatcher configuration that retries and takes over quickly.
func fast() webhook.DispatcherConfig {
	return webhook.DispatcherConfig{BatchMax: 20, BatchWait: 100 * time.Millisecond, Timeout: 500 * time.Millisecond,
		RetryBase: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond, LeaseTTL: 600 * time.Millisecond,
		AckWait: 2 * time.Second, AllowInternal: true}
}

func setup(t *testing.T) *bundle {
	t.Helper()
	nc, _ := natstest.Start(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := webhook.EnsureStream(t.Context(), js, 1); err != nil {
		t.Fatal(err)
	}
	db := pgtest.New(t)
	b := &bundle{db: db, nc: nc, js: js, store: webhook.NewStore(db.Pool, nc, true, nil)}
	b.pub, err = webhook.NewPublisher(js, b.store, 0, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.pub.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.pub.Stop(context.Background()) })
	return b
}

// endpoint registers rec for tenant's events.
func (b *bundle) endpoint(t *testing.T, tenant string, rec *webhooktest.Receiver, events ...string) webhook.Endpoint {
	t.Helper()
	ep, err := b.store.Create(t.Context(), tenant, rec.URL, events)
	if err != nil {
		t.Fatal(err)
	}
	rec.SetSecret(ep.Secret)
	waitFor(t, "the publisher to learn the endpoint", func() bool { return b.pub.Wants(tenant, events[0]) })
	return ep
}

func (b *bundle) dispatcher(t *testing.T, cfg webhook.DispatcherConfig) *webhook.Dispatcher {
	t.Helper()
	d, err := webhook.NewDispatcher(b.js, b.store, cfg, nil, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop(context.Background()) })
	return d
}

// outcomes notifies n outcomes of tenant's conversation, each twice (a
// redelivered message's outcome is recorded again).
func (b *bundle) outcomes(tenant string, from, n int) {
	for i := from; i < from+n; i++ {
		out := wire.OutcomeDelivered
		if i%5 == 0 {
			out = wire.OutcomeInvalid
		}
		ev := errorlog.Event{Outcome: out, ID: fmt.Sprintf("act-%d", i), Tenant: tenant, Conversation: "spring", Channel: "email", Time: time.Now()}
		b.pub.Notify(ev, nil)
		b.pub.Notify(ev, nil)
	}
}

func (b *bundle) stored(t *testing.T) uint64 {
	t.Helper()
	st, err := b.js.Stream(t.Context(), webhook.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// drained reports whether ep's consumer has nothing pending or
// unacknowledged.
func (b *bundle) drained(t *testing.T, ep webhook.Endpoint) bool {
	t.Helper()
	c, err := b.js.Consumer(t.Context(), webhook.StreamName, webhook.ConsumerName(ep.ID))
	if err != nil {
		return false
	}
	info, err := c.Info(t.Context())
	return err == nil && info.NumPending == 0 && info.NumAckPending == 0
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestExactlyOnceAcrossTakeover: every event of a tenant reaches its
// endpoint signed and, deduplicated by webhook-id, exactly once, although
// each outcome is notified twice, the endpoint fails some requests
// (retried under the same webhook-id), and the dispatcher delivering is
// stopped without drain while a batch is in flight, another process taking
// the endpoint over: either the receiver took the batch and its answer was
// lost (the batch comes again under its webhook-id, and is dropped), or it
// never got it (the batch comes again, nothing is lost). A tenant without
// endpoints stores nothing.
func TestExactlyOnceAcrossTakeover(t *testing.T) {
	t.Parallel()
	for name, inFlight := range map[string]func(*webhooktest.Receiver, bool){
		"answer lost":   (*webhooktest.Receiver).HoldAfterAccept,
		"never arrived": (*webhooktest.Receiver).Hang,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			takeover(t, inFlight)
		})
	}
}

func takeover(t *testing.T, inFlight func(*webhooktest.Receiver, bool)) {
	b := setup(t)
	rec := webhooktest.New(t)
	ep := b.endpoint(t, "acme", rec, webhook.EventDelivered, webhook.EventInvalid)
	rec.FailNext(3)
	const n = 400
	b.outcomes("acme", 0, n/2)
	b.outcomes("nobody", 0, 50)
	first := b.dispatcher(t, fast())
	waitFor(t, "the first batches", func() bool { return rec.Stats().Distinct >= 40 })
	inFlight(rec, true)
	b.outcomes("acme", n/2, n/4)
	waitFor(t, "a batch in flight", func() bool { return rec.InFlight() > 0 })
	stopCtx, cancel := context.WithCancel(context.Background())
	cancel() // no drain: the batch in flight is abandoned unacked
	first.Stop(stopCtx)
	inFlight(rec, false)
	b.outcomes("acme", 3*n/4, n/4)
	second := b.dispatcher(t, fast())
	waitFor(t, "every event", func() bool { return rec.Stats().Distinct == n })
	waitFor(t, "every event acknowledged", func() bool { return b.drained(t, ep) })
	st := rec.Stats()
	switch {
	case len(st.Bad) > 0:
		t.Fatalf("requests failed verification: %v", st.Bad)
	case st.Duplicates > 0:
		t.Fatalf("%d events arrived under two webhook-ids", st.Duplicates)
	case st.Retried == 0:
		t.Fatal("no webhook-id was sent twice: neither the failures nor the takeover were retried under the same id")
	case st.Types[webhook.EventInvalid] != n/5 || st.Types[webhook.EventDelivered] != n-n/5:
		t.Fatalf("types %v", st.Types)
	case len(second.Owned()) != 1:
		t.Fatalf("the second dispatcher owns %v", second.Owned())
	}
	if got := b.stored(t); got != n {
		t.Fatalf("the stream holds %d events, want %d (each once, none for a tenant without endpoints)", got, n)
	}
}

// TestOnlySubscribedEvents: an endpoint receives the events it asked for
// only; a second endpoint of the tenant receives its own.
func TestOnlySubscribedEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	inv, all := webhooktest.New(t), webhooktest.New(t)
	b.endpoint(t, "acme", inv, webhook.EventInvalid)
	b.endpoint(t, "acme", all, webhook.EventDelivered, webhook.EventInvalid, webhook.EventPurged)
	b.dispatcher(t, fast())
	b.outcomes("acme", 0, 50)
	b.pub.Purged("acme", "spring", 7)
	waitFor(t, "both endpoints", func() bool { return inv.Stats().Distinct == 10 && all.Stats().Distinct == 51 })
	if s := inv.Stats(); s.Types[webhook.EventInvalid] != 10 || len(s.Types) != 1 {
		t.Fatalf("the invalid-only endpoint got %v", s.Types)
	}
	if s := all.Stats(); s.Types[webhook.EventPurged] != 1 {
		t.Fatalf("the purge event did not arrive: %v", s.Types)
	}
}

// TestDisableAfter: an endpoint that fails continuously for DisableAfter
// is disabled, with its last error, and no longer owned; the events stay
// in the stream.
func TestDisableAfter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rec := webhooktest.New(t)
	ep := b.endpoint(t, "acme", rec, webhook.EventDelivered)
	rec.FailNext(1 << 30)
	cfg := fast()
	cfg.DisableAfter = time.Second
	d := b.dispatcher(t, cfg)
	b.outcomes("acme", 1, 4)
	waitFor(t, "the endpoint disabled", func() bool {
		got, err := b.store.Get(t.Context(), "acme", ep.ID)
		return err == nil && got.DisabledAt != nil
	})
	got, _ := b.store.Get(t.Context(), "acme", ep.ID)
	if got.FailingSince == nil || !strings.Contains(got.LastError, "500") {
		t.Fatalf("disabled endpoint %+v", got)
	}
	waitFor(t, "the lease given up", func() bool { return len(d.Owned()) == 0 })
	if rec.Stats().Distinct != 0 {
		t.Fatal("a failing endpoint's events were counted received")
	}
}

// TestReplay: a replay re-delivers the range's retained events under new
// webhook-ids, marked replay; a range outside the retention is refused.
func TestReplay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rec := webhooktest.New(t)
	ep := b.endpoint(t, "acme", rec, webhook.EventDelivered, webhook.EventInvalid)
	b.dispatcher(t, fast())
	from := time.Now()
	b.outcomes("acme", 0, 30)
	waitFor(t, "the events", func() bool { return rec.Stats().Distinct == 30 })
	r, err := webhook.NewReplayer(b.js, b.store, fast(), nil, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop(context.Background()) })
	if _, err := r.Replay(t.Context(), "acme", ep.ID, from.Add(-time.Second), time.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replay", func() bool { return rec.Stats().Replayed == 30 })
	if _, err := r.Replay(t.Context(), "other", ep.ID, from, time.Now()); err == nil {
		t.Fatal("another tenant replayed the endpoint")
	}
	if _, err := r.Replay(t.Context(), "acme", ep.ID, time.Now().Add(-10*24*time.Hour), time.Now().Add(-9*24*time.Hour)); err == nil {
		t.Fatal("a range past the retention was accepted")
	}
}

// TestDialRefusesInternal: outside dev the dispatcher refuses, at connect
// time, an endpoint that resolves to a loopback address (here registered
// while allowed, as a name that later resolves so would be).
func TestDialRefusesInternal(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rec := webhooktest.New(t)
	ep := b.endpoint(t, "acme", rec, webhook.EventDelivered)
	cfg := fast()
	cfg.AllowInternal = false
	b.dispatcher(t, cfg)
	b.outcomes("acme", 1, 1)
	waitFor(t, "the refusal recorded", func() bool {
		got, err := b.store.Get(t.Context(), "acme", ep.ID)
		return err == nil && strings.Contains(got.LastError, "refusing to connect")
	})
	if s := rec.Stats(); s.Distinct != 0 || len(s.Bad) != 0 {
		t.Fatalf("a request reached the loopback receiver: %+v", s)
	}
}

// logger logs warnings to stderr under -v, nothing otherwise.
func logger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.DiscardHandler)
}

// TestCreateRefusesInternal: outside dev and test, registering a URL that
// resolves to a loopback or private address is refused and stores nothing.
func TestCreateRefusesInternal(t *testing.T) {
	t.Parallel()
	b := setup(t)
	prod := webhook.NewStore(b.db.Pool, b.nc, false, nil)
	for _, url := range []string{"http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.0.0.7/hook"} {
		if _, err := prod.Create(t.Context(), "acme", url, []string{webhook.EventDelivered}); !errors.Is(err, webhook.ErrInvalid) {
			t.Errorf("Create(%s) = %v, want ErrInvalid", url, err)
		}
	}
	if list, err := prod.List(t.Context(), "acme"); err != nil || len(list) != 0 {
		t.Fatalf("stored %v, %v", list, err)
	}
}
