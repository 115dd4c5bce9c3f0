package control

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/errorlog"
)

// seen is one value a watcher delivered, and when.
type seen[T any] struct {
	v  T
	at time.Time
}

// startWatch runs a watch in the background until the test ends, sending
// what it delivers to ch. The test fails if the watch returns an error.
func startWatch[T any](t *testing.T, run func(ctx context.Context, fn func(T)) error, ch chan<- T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, func(v T) { ch <- v }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watch: %v", err)
		}
	})
}

// watchModes watches the error-log mode and timestamps what it delivers.
func watchModes(t *testing.T, s *Store) <-chan seen[errorlog.Mode] {
	ch := make(chan seen[errorlog.Mode], 64)
	startWatch(t, func(ctx context.Context, fn func(seen[errorlog.Mode])) error {
		return s.WatchErrorLogMode(ctx, func(m errorlog.Mode) { fn(seen[errorlog.Mode]{m, time.Now()}) })
	}, ch)
	return ch
}

// TestWatchTwoWorkers is the fleet-wide switch: two worker processes (each
// with its own NATS connection) watch the mode, an operator changes it
// through a third, and both see each change within a second.
func TestWatchTwoWorkers(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	workers := []<-chan seen[errorlog.Mode]{
		watchModes(t, b.worker(t)),
		watchModes(t, b.worker(t)),
	}
	for i, w := range workers {
		if got := receive(t, w, 5*time.Second, "initial mode").v; got != errorlog.DefaultMode {
			t.Fatalf("worker %d starts with %v, want %v", i, got, errorlog.DefaultMode)
		}
	}
	var worst time.Duration
	for _, m := range []errorlog.Mode{
		{Name: errorlog.ModeSample, First: 100, Then: 1000, Window: time.Minute},
		{Name: errorlog.ModeOff},
		{Name: errorlog.ModeSync},
		{Name: errorlog.ModeFull},
	} {
		start := time.Now()
		if _, err := b.store.SetErrorLogMode(t.Context(), m, "ops"); err != nil {
			t.Fatal(err)
		}
		for i, w := range workers {
			got := receive(t, w, time.Second, "change "+m.String())
			if got.v != m {
				t.Fatalf("worker %d saw %v, want %v", i, got.v, m)
			}
			lag := got.at.Sub(start)
			if lag >= time.Second {
				t.Fatalf("worker %d saw %v after %v, want under 1s", i, m, lag)
			}
			worst = max(worst, lag)
		}
	}
	t.Logf("slowest worker saw a change %v after SetErrorLogMode began", worst)
}

func TestWatchSkipsBadValues(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := t.Context()
	w := watchModes(t, b.worker(t))
	receive(t, w, 5*time.Second, "initial mode")

	// Written by hand: neither JSON nor a valid mode reaches the watcher.
	for _, raw := range []string{`not json`, `{"value":{"mode":"loud"},"by":"hand"}`} {
		if _, err := b.store.kv.PutString(ctx, KeyErrorLogMode, raw); err != nil {
			t.Fatal(err)
		}
	}
	off := errorlog.Mode{Name: errorlog.ModeOff}
	if _, err := b.worker(t).kv.PutString(ctx, KeyErrorLogMode, `{"value":{"mode":"off"},"by":"hand"}`); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, w, time.Second, "valid mode").v; got != off {
		t.Fatalf("watcher got %v, want %v (bad values skipped)", got, off)
	}
	// Reading the bad value fails rather than guessing.
	if _, err := b.store.kv.PutString(ctx, KeyErrorLogMode, `not json`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.ErrorLogMode(ctx); err == nil {
		t.Fatal("ErrorLogMode read an undecodable value without error")
	}
	// A change repairs it, and its audit row keeps what it replaced.
	sync := errorlog.Mode{Name: errorlog.ModeSync}
	if _, err := b.store.SetErrorLogMode(ctx, sync, "ops"); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, w, time.Second, "repaired mode").v; got != sync {
		t.Fatalf("watcher got %v, want %v", got, sync)
	}
	rows := b.audit(t)
	if last := rows[len(rows)-1]; !sameJSON(t, last.Old, `{"unreadable":"not json"}`) {
		t.Fatalf("audit old value over an unreadable one = %s", last.Old)
	}
}

func TestWatchDeletedKeyIsDefault(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{DefaultErrorLogMode: errorlog.Mode{Name: errorlog.ModeOff}})
	ctx := t.Context()
	if _, err := b.store.SetErrorLogMode(ctx, errorlog.Mode{Name: errorlog.ModeSync}, "ops"); err != nil {
		t.Fatal(err)
	}
	w := watchModes(t, b.store)
	if got := receive(t, w, 5*time.Second, "initial mode").v; got.Name != errorlog.ModeSync {
		t.Fatalf("initial %v", got)
	}
	if err := b.store.kv.Delete(ctx, KeyErrorLogMode); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, w, time.Second, "default").v; got.Name != errorlog.ModeOff {
		t.Fatalf("after delete: %v, want the configured default off", got)
	}
	if m, err := b.store.ErrorLogMode(ctx); err != nil || m.Name != errorlog.ModeOff {
		t.Fatalf("ErrorLogMode after delete = %v, %v", m, err)
	}
	// A change over a deleted key works and records no old value.
	if _, err := b.store.SetErrorLogMode(ctx, errorlog.Mode{Name: errorlog.ModeFull}, "ops"); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, w, time.Second, "full").v; got.Name != errorlog.ModeFull {
		t.Fatalf("got %v", got)
	}
	rows := b.audit(t)
	if last := rows[len(rows)-1]; last.Old != "" {
		t.Fatalf("old value over a deleted key = %s, want NULL", last.Old)
	}
}

func TestWatchEnds(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	first := make(chan struct{}, 1)
	go func() {
		done <- b.store.WatchErrorLogMode(ctx, func(errorlog.Mode) { first <- struct{}{} })
	}()
	receive(t, first, 5*time.Second, "initial mode")
	cancel()
	if err := receive(t, done, 5*time.Second, "return after cancel"); err != nil {
		t.Fatalf("watch returned %v after its context ended, want nil", err)
	}

	// A closed connection ends a watch with an error.
	nc, err := nats.Connect(b.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s, err := Open(t.Context(), newJS(t, nc), nil, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		done <- s.WatchErrorLogMode(t.Context(), func(errorlog.Mode) { first <- struct{}{} })
	}()
	receive(t, first, 5*time.Second, "initial mode")
	nc.Close()
	if err := receive(t, done, 5*time.Second, "return after close"); !errors.Is(err, ErrWatchClosed) {
		t.Fatalf("watch returned %v after its connection closed, want ErrWatchClosed", err)
	}
}
