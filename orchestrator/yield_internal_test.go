package orchestrator

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestBulkGate: a scheduler p99 above the target halves the bulk limit
// (never below gateMin) while transactional messages are being handled, and
// never without them; an interval under the target grows it by one up to
// the workers; enter blocks while the limit is in use; stopping opens it.
func TestBulkGate(t *testing.T) {
	t.Parallel()
	g := newBulkGate(time.Millisecond, 32, prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"}))
	var got []int
	for _, step := range []struct {
		p99 time.Duration
		tx  bool
	}{{5, true}, {5, false}, {0, true}, {9, true}, {9, true}, {9, true}, {9, true}, {9, true}, {0, false}, {0, true}} {
		if step.tx {
			g.transactional()
		}
		got = append(got, g.adjust(step.p99*time.Millisecond))
	}
	if want := []int{16, 17, 18, 9, 4, 2, 2, 2, 3, 4}; !slices.Equal(got, want) {
		t.Fatalf("limits %v, want %v", got, want)
	}

	g.enter()
	g.enter()
	g.enter()
	g.enter()
	entered := make(chan struct{})
	go func() { g.enter(); close(entered) }()
	select {
	case <-entered:
		t.Fatal("a fifth bulk message entered at limit 4")
	case <-time.After(50 * time.Millisecond):
	}
	g.leave()
	select {
	case <-entered:
	case <-time.After(time.Second):
		t.Fatal("leave did not let the waiting bulk message in")
	}
	done := make(chan struct{})
	close(done)
	g.run(done)
	if g.limit != 32 {
		t.Fatalf("limit %d after stop, want the 32 workers (the drain runs at full width)", g.limit)
	}
	if p := g.p99(); p < 0 || p > time.Minute {
		t.Fatalf("scheduler p99 %v", p)
	}
}
