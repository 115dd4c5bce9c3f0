package control

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/natstest"
	"github.com/sluicehq/sluice/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// bundle is one test's NATS server, database and Store.
type bundle struct {
	natsURL string
	js      jetstream.JetStream
	db      *pgtest.DB
	store   *Store
}

// setup starts NATS and a database, and opens a Store with a pool.
func setup(t *testing.T, opts Options) *bundle {
	t.Helper()
	nc, url := natstest.Start(t)
	b := &bundle{natsURL: url, js: newJS(t, nc), db: pgtest.New(t)}
	b.store = b.open(t, b.js, opts)
	return b
}

func newJS(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// open opens another Store on js with the bundle's database.
func (b *bundle) open(t *testing.T, js jetstream.JetStream, opts Options) *Store {
	t.Helper()
	s, err := Open(t.Context(), js, b.db.Pool, testLogger(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// conn connects to the bundle's NATS server anew, as another process does.
func (b *bundle) conn(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(b.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return newJS(t, nc)
}

// worker opens a Store without a database on a connection of its own, as a
// worker process does.
func (b *bundle) worker(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.Context(), b.conn(t), nil, testLogger(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// auditRow is one row of control_audit, values as JSON text ("" for NULL).
type auditRow struct {
	At       time.Time
	Actor    string
	Key      string
	Old, New string
}

func (b *bundle) audit(t *testing.T) []auditRow {
	t.Helper()
	rows, err := b.db.Pool.Query(context.Background(),
		`SELECT at, actor, key, coalesce(old_value::text, ''), coalesce(new_value::text, '') FROM control_audit ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []auditRow
	for rows.Next() {
		var r auditRow
		if err := rows.Scan(&r.At, &r.Actor, &r.Key, &r.Old, &r.New); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameJSON reports whether two JSON texts hold the same value.
func sameJSON(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Fatalf("%q: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	return string(mustJSON(t, x)) == string(mustJSON(t, y))
}

// receive waits up to d for a value on ch.
func receive[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("no %s within %v", what, d)
		var zero T
		return zero
	}
}

// setupNATS starts NATS only.
func setupNATS(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc, _ := natstest.Start(t)
	return newJS(t, nc)
}

// canonical re-encodes a JSON text, so that equal values compare equal.
func canonical(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return string(mustJSON(t, v))
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
