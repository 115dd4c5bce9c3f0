package control

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/errorlog"
)

func TestOpenWritesDefaultOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := t.Context()

	m, err := b.store.ErrorLogMode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m != errorlog.DefaultMode {
		t.Fatalf("mode at first start = %v, want %v", m, errorlog.DefaultMode)
	}
	rows := b.audit(t)
	if len(rows) != 1 {
		t.Fatalf("audit rows = %+v, want the default's", rows)
	}
	if r := rows[0]; r.Actor != "default" || r.Key != KeyErrorLogMode || r.Old != "" || !sameJSON(t, r.New, `{"mode":"full"}`) {
		t.Fatalf("audit row = %+v", r)
	}

	// A later start with another default keeps what is stored.
	later := b.open(t, b.js, Options{DefaultErrorLogMode: errorlog.Mode{Name: errorlog.ModeOff}})
	if m, err := later.ErrorLogMode(ctx); err != nil || m != errorlog.DefaultMode {
		t.Fatalf("after a second Open: %v, %v; want the first default kept", m, err)
	}
	if rows := b.audit(t); len(rows) != 1 {
		t.Fatalf("audit rows after a second Open = %+v", rows)
	}
	st, err := b.store.ErrorLogStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.UpdatedBy != "default" || st.Revision == 0 || st.Previous != nil || st.UpdatedAt.IsZero() {
		t.Fatalf("status = %+v", st)
	}
}

func TestOpenConfiguredDefault(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{DefaultErrorLogMode: errorlog.Mode{Name: errorlog.ModeSample, First: 5}})
	m, err := b.store.ErrorLogMode(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// Stored with the parameters it runs with.
	want := errorlog.Mode{Name: errorlog.ModeSample, First: 5, Then: 1000, Window: time.Minute}
	if m != want {
		t.Fatalf("mode = %#v, want %#v", m, want)
	}
	// A worker without a default of its own sees the same.
	if m, err := b.worker(t).ErrorLogMode(t.Context()); err != nil || m != want {
		t.Fatalf("worker sees %v, %v", m, err)
	}
}

func TestOpenRejectsBadOptions(t *testing.T) {
	t.Parallel()
	nc := setupNATS(t)
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{DefaultErrorLogMode: errorlog.Mode{Name: "loud"}}, "DefaultErrorLogMode"},
		{Options{DefaultErrorLogMode: errorlog.Mode{Name: errorlog.ModeSample, Then: -1}}, "DefaultErrorLogMode"},
		{Options{Replicas: -1}, "Replicas"},
	} {
		_, err := Open(t.Context(), nc, nil, nil, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%+v) = %v, want an error naming %s", tc.opts, err, tc.want)
		}
	}
}

func TestSetErrorLogModeRoundTrip(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := t.Context()
	sample := errorlog.Mode{Name: errorlog.ModeSample, First: 100, Then: 1000, Window: time.Minute}

	old, err := b.store.SetErrorLogMode(ctx, sample, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if old != errorlog.DefaultMode {
		t.Fatalf("old = %v, want full", old)
	}
	// Another process reads what was set.
	if m, err := b.worker(t).ErrorLogMode(ctx); err != nil || m != sample {
		t.Fatalf("ErrorLogMode = %v, %v; want %v", m, err, sample)
	}
	st, err := b.store.ErrorLogStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode != sample || st.UpdatedBy != "alice" || st.Previous == nil || *st.Previous != errorlog.DefaultMode {
		t.Fatalf("status = %+v", st)
	}

	rows := b.audit(t)
	if len(rows) != 2 {
		t.Fatalf("audit rows = %+v", rows)
	}
	r := rows[1]
	if r.Actor != "alice" || r.Key != KeyErrorLogMode ||
		!sameJSON(t, r.Old, `{"mode":"full"}`) ||
		!sameJSON(t, r.New, `{"mode":"sample","first":100,"then":1000,"window":"1m0s"}`) {
		t.Fatalf("audit row = %+v", r)
	}
	if !r.At.Equal(st.UpdatedAt) {
		t.Fatalf("audit at %v, KV at %v: want the same time", r.At, st.UpdatedAt)
	}

	// The bucket's history holds both revisions too.
	hist, err := b.store.kv.History(ctx, KeyErrorLogMode)
	if err != nil || len(hist) != 2 {
		t.Fatalf("history = %d entries, %v", len(hist), err)
	}

	// Parameters of other modes are dropped; sample's defaults made explicit.
	if _, err := b.store.SetErrorLogMode(ctx, errorlog.Mode{Name: errorlog.ModeOff, First: 3}, "bob"); err != nil {
		t.Fatal(err)
	}
	if m, _ := b.store.ErrorLogMode(ctx); m != (errorlog.Mode{Name: errorlog.ModeOff}) {
		t.Fatalf("off stored as %#v", m)
	}
	if _, err := b.store.SetErrorLogMode(ctx, errorlog.Mode{Name: errorlog.ModeSample}, ""); err != nil {
		t.Fatal(err)
	}
	if m, _ := b.store.ErrorLogMode(ctx); m != (errorlog.Mode{Name: errorlog.ModeSample}).WithDefaults() {
		t.Fatalf("sample stored as %#v", m)
	}
	if rows := b.audit(t); rows[len(rows)-1].Actor != "anonymous" {
		t.Fatalf("empty actor recorded as %q", rows[len(rows)-1].Actor)
	}
}

func TestSetErrorLogModeInvalid(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	for _, m := range []errorlog.Mode{
		{Name: "loud"},
		{},
		{Name: errorlog.ModeSample, First: -1},
		{Name: errorlog.ModeSample, Window: -time.Second},
	} {
		if _, err := b.store.SetErrorLogMode(t.Context(), m, "alice"); !errors.Is(err, ErrInvalid) {
			t.Errorf("SetErrorLogMode(%#v) = %v, want ErrInvalid", m, err)
		}
	}
	if m, _ := b.store.ErrorLogMode(t.Context()); m != errorlog.DefaultMode {
		t.Fatalf("mode = %v after invalid changes", m)
	}
	if rows := b.audit(t); len(rows) != 1 {
		t.Fatalf("audit rows = %+v, want the default's only", rows)
	}
}

// TestSetErrorLogModeConflictRetry makes another writer change the mode
// between the read and the write of a change: the change must be retried
// from the newer value, and record that value as the one it replaced.
func TestSetErrorLogModeConflictRetry(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := t.Context()
	intruder := errorlog.Mode{Name: errorlog.ModeOff}
	other := b.worker(t) // another process, without a database
	writes := 0
	b.store.beforeWrite = func(key string) {
		writes++
		if writes == 1 {
			if _, err := other.SetErrorLogMode(ctx, intruder, "intruder"); err != nil {
				t.Error(err)
			}
		}
	}
	sync := errorlog.Mode{Name: errorlog.ModeSync}
	old, err := b.store.SetErrorLogMode(ctx, sync, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if writes != 2 {
		t.Fatalf("%d write attempts, want 2", writes)
	}
	if old != intruder {
		t.Fatalf("old = %v, want the intruder's %v", old, intruder)
	}
	if m, _ := b.store.ErrorLogMode(ctx); m != sync {
		t.Fatalf("mode = %v, want %v", m, sync)
	}
	rows := b.audit(t)
	if last := rows[len(rows)-1]; last.Actor != "alice" || !sameJSON(t, last.Old, `{"mode":"off"}`) || !sameJSON(t, last.New, `{"mode":"sync"}`) {
		t.Fatalf("audit row = %+v", last)
	}
}

func TestSetErrorLogModeGivesUp(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := t.Context()
	other := b.worker(t)
	writes := 0
	b.store.beforeWrite = func(string) {
		writes++
		if _, err := other.SetErrorLogMode(ctx, errorlog.Mode{Name: errorlog.ModeSample, First: writes}, "busy"); err != nil {
			t.Error(err)
		}
	}
	_, err := b.store.SetErrorLogMode(ctx, errorlog.Mode{Name: errorlog.ModeOff}, "alice")
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("err = %v, want ErrConflict", err)
	}
	if writes != maxAttempts {
		t.Fatalf("%d attempts, want %d", writes, maxAttempts)
	}
	if m, _ := b.store.ErrorLogMode(ctx); m.Name != errorlog.ModeSample {
		t.Fatalf("mode = %v: the losing change was applied", m)
	}
	for _, r := range b.audit(t) {
		if r.Actor == "alice" {
			t.Fatalf("the losing change was audited: %+v", r)
		}
	}
}

// TestConcurrentSetsFormAChain changes the mode from several processes at
// once: every change must replace exactly the value before it, so the audit
// rows form one chain from the default to the final mode.
func TestConcurrentSetsFormAChain(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := t.Context()
	const writers, each = 4, 5
	stores := make([]*Store, writers)
	for i := range stores {
		stores[i] = b.open(t, b.conn(t), Options{})
	}
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() {
			for j := range each {
				m := errorlog.Mode{Name: errorlog.ModeSample, First: 1 + i*each + j}
				if _, err := s.SetErrorLogMode(ctx, m, fmt.Sprint("writer", i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()

	rows := b.audit(t)[1:] // after the default's
	if len(rows) != writers*each {
		t.Fatalf("%d audit rows, want %d", len(rows), writers*each)
	}
	next := map[string]string{} // old → new
	for _, r := range rows {
		o := canonical(t, r.Old)
		if _, dup := next[o]; dup {
			t.Fatalf("two changes replaced %s", o)
		}
		next[o] = canonical(t, r.New)
	}
	v, n := canonical(t, `{"mode":"full"}`), 0
	for {
		nv, ok := next[v]
		if !ok {
			break
		}
		v, n = nv, n+1
	}
	if n != len(rows) {
		t.Fatalf("the chain from the default covers %d of %d changes", n, len(rows))
	}
	final, _ := b.store.ErrorLogMode(ctx)
	if want := canonical(t, string(mustJSON(t, final))); v != want {
		t.Fatalf("chain ends at %s, mode is %s", v, want)
	}
}

func TestAuditFailureKeepsChange(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := t.Context()
	if _, err := b.db.Pool.Exec(ctx, "DROP TABLE control_audit"); err != nil {
		t.Fatal(err)
	}
	off := errorlog.Mode{Name: errorlog.ModeOff}
	_, err := b.store.SetErrorLogMode(ctx, off, "alice")
	if !errors.Is(err, ErrAudit) {
		t.Fatalf("err = %v, want ErrAudit", err)
	}
	if !strings.Contains(err.Error(), "control_audit") {
		t.Errorf("err %q does not say what failed", err)
	}
	if m, _ := b.worker(t).ErrorLogMode(ctx); m != off {
		t.Fatalf("mode = %v, want the change applied", m)
	}
}

func TestWithoutPool(t *testing.T) {
	t.Parallel()
	s, err := Open(t.Context(), setupNATS(t), nil, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	off := errorlog.Mode{Name: errorlog.ModeOff}
	if _, err := s.SetErrorLogMode(t.Context(), off, "alice"); err != nil {
		t.Fatal(err)
	}
	st, err := s.ErrorLogStatus(t.Context())
	if err != nil || st.Mode != off || st.UpdatedBy != "alice" {
		t.Fatalf("status = %+v, %v", st, err)
	}
}
