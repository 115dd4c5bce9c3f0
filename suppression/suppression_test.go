package suppression_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/natstest"
	"github.com/sluicehq/sluice/internal/pgtest"
	"github.com/sluicehq/sluice/suppression"
	"github.com/sluicehq/sluice/wire"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var testKey = []byte("test-mask-key-0123456789")

type bundle struct {
	db    *pgtest.DB
	js    jetstream.JetStream
	h     *suppression.Hasher
	store *suppression.Store
}

func setup(t *testing.T) *bundle {
	t.Helper()
	nc, _ := natstest.Start(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	h, err := suppression.NewHasher(testKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := suppression.EnsureStream(context.Background(), js, 1); err != nil {
		t.Fatal(err)
	}
	db := pgtest.New(t)
	return &bundle{db: db, js: js, h: h, store: suppression.NewStore(db.Pool, js, h, nil)}
}

func (b *bundle) mirror(t *testing.T) *suppression.Mirror {
	t.Helper()
	m := suppression.NewMirror(b.db.Pool, b.js, b.h, 0, nil)
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop(context.Background()) })
	return m
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string][2]string{
		"  Ann@Example.COM \n": {"ann@example.com", suppression.KindEmail},
		"+447700900123":        {"+447700900123", suppression.KindPhone},
		" +447700900123 ":      {"+447700900123", suppression.KindPhone},
		"AbC:token_Case":       {"AbC:token_Case", suppression.KindToken},
		"":                     {"", suppression.KindToken},
	} {
		n, k := suppression.Normalize(in)
		if n != want[0] || k != want[1] {
			t.Errorf("Normalize(%q) = %q, %q; want %q, %q", in, n, k, want[0], want[1])
		}
	}
}

// TestHasherKeyed: the hash depends on the key and on the normal form only.
func TestHasherKeyed(t *testing.T) {
	t.Parallel()
	h1, _ := suppression.NewHasher(testKey)
	h2, _ := suppression.NewHasher([]byte("another-mask-key-987654321"))
	a, _ := h1.Sum("Ann@Example.com")
	b, _ := h1.Sum(" ann@example.com")
	c, _ := h2.Sum("ann@example.com")
	tok1, _ := h1.Sum("TokenA")
	tok2, _ := h1.Sum("tokena")
	switch {
	case a != b:
		t.Error("two spellings of one email address hash differently")
	case a == c:
		t.Error("the hash does not depend on the key")
	case tok1 == tok2:
		t.Error("push tokens are case-folded; they must be kept as they are")
	}
	if _, err := suppression.NewHasher([]byte("short")); err == nil {
		t.Error("a 5-byte key was accepted")
	}
}

// TestMirrorLoadsAndFollows: a worker's Mirror loads what Postgres holds at
// start and follows what is added and removed after, per tenant; the
// table holds hashes, never the address.
func TestMirrorLoadsAndFollows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	if _, created, err := b.store.Add(ctx, "acme", "Before@Example.com", suppression.ReasonManual, suppression.SourceAPI); err != nil || !created {
		t.Fatalf("add: created %v, %v", created, err)
	}
	if _, created, _ := b.store.Add(ctx, "acme", "before@example.com ", suppression.ReasonManual, suppression.SourceAPI); created {
		t.Fatal("a second spelling of the same address was added again")
	}
	m := b.mirror(t)
	if !m.Suppressed("acme", "before@example.com") {
		t.Fatal("an entry stored before start is not loaded")
	}
	if m.Suppressed("other", "before@example.com") {
		t.Fatal("one tenant's entry suppresses another tenant's recipient")
	}
	if _, _, err := b.store.Add(ctx, "acme", "+15005550009", "unsubscribed", suppression.SourceAPI); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a later add to reach the mirror", func() bool { return m.Suppressed("acme", "+15005550009") })
	if removed, err := b.store.Remove(ctx, "acme", "BEFORE@example.com"); err != nil || !removed {
		t.Fatalf("remove: %v %v", removed, err)
	}
	waitFor(t, "a remove to reach the mirror", func() bool { return !m.Suppressed("acme", "before@example.com") })
	want, _ := b.h.Sum("+15005550009")
	var stored []byte
	var text string
	if err := b.db.Pool.QueryRow(ctx, `SELECT hash, concat_ws(' ', tenant, kind, reason, source) FROM suppressions WHERE tenant = 'acme'`).Scan(&stored, &text); err != nil {
		t.Fatal(err)
	}
	if string(stored) != string(want[:]) || strings.Contains(text, "5550009") {
		t.Fatalf("stored %x (%s), want the keyed hash %x and no address", stored, text, want)
	}
}

// TestSuppressReachesEveryWorker: a refusal reported to one worker's Mirror
// suppresses at once there, is stored with source provider, and reaches a
// second worker's Mirror.
func TestSuppressReachesEveryWorker(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w1, w2 := b.mirror(t), b.mirror(t)
	w1.Suppress("acme", "gone@example.com", wire.ReasonRecipientRejected)
	if !w1.Suppressed("acme", "GONE@example.com") {
		t.Fatal("the reporting worker does not suppress at once")
	}
	waitFor(t, "the second worker to learn the refusal", func() bool { return w2.Suppressed("acme", "gone@example.com") })
	e, ok, err := b.store.Get(context.Background(), "acme", "gone@example.com")
	if err != nil || !ok || e.Source != suppression.SourceProvider || e.Reason != string(wire.ReasonRecipientRejected) || e.Kind != suppression.KindEmail {
		t.Fatalf("stored entry %+v ok %v err %v", e, ok, err)
	}
	list, err := b.store.List(context.Background(), "acme", "", 10)
	if err != nil || len(list) != 1 || list[0].Hash != e.Hash {
		t.Fatalf("list %+v, %v", list, err)
	}
}
