package control

import (
	"testing"
	"time"
)

// TestHeartbeatLiveness: a heartbeat is live until HeartbeatGoneAfter, then
// reported gone (not hidden); a retired one disappears; ForgetGone purges
// only the ones older than HeartbeatForgetAfter; the key decides the id.
func TestHeartbeatLiveness(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	s, ctx := b.store, t.Context()
	clock := time.Now()
	s.now = func() time.Time { return clock }
	for id, age := range map[string]time.Duration{
		"fresh": 0, "late": HeartbeatGoneAfter - time.Second, "gone": HeartbeatGoneAfter + time.Second,
		"old": HeartbeatForgetAfter + time.Minute, "retired": 0,
	} {
		clock = time.Now().Add(-age)
		if err := s.Announce(ctx, Heartbeat{ID: id, Roles: []string{"worker"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Retire(ctx, "retired"); err != nil {
		t.Fatal(err)
	}
	clock = time.Now()
	ws, err := s.Workers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	live := map[string]bool{}
	for _, w := range ws {
		live[w.ID] = w.Live
	}
	want := map[string]bool{"fresh": true, "late": true, "gone": false, "old": false}
	if len(live) != len(want) {
		t.Fatalf("workers %v, want %v", live, want)
	}
	for id, l := range want {
		if live[id] != l {
			t.Errorf("%s: live %v, want %v", id, live[id], l)
		}
	}
	gone, err := s.ForgetGone(ctx)
	if err != nil || len(gone) != 1 || gone[0] != "old" {
		t.Fatalf("forgot %v (%v), want [old]", gone, err)
	}
	if ws, _ := s.Workers(ctx); len(ws) != 3 {
		t.Fatalf("after ForgetGone: %+v", ws)
	}
}
