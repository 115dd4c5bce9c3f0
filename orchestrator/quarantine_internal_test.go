package orchestrator

import (
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestQuarantineWindow(t *testing.T) {
	t.Parallel()
	type trip struct {
		conv  string
		ratio float64
	}
	var mu sync.Mutex
	var trips []trip
	done := make(chan struct{}, 10)
	q := &quarantine{
		cfg: QuarantineConfig{Ratio: 0.5, Window: 100, MaxConversations: 10},
		trip: func(_, conv, _ string, ratio float64) {
			mu.Lock()
			trips = append(trips, trip{conv, ratio})
			mu.Unlock()
			done <- struct{}{}
		},
		tripped: prometheus.NewCounter(prometheus.CounterOpts{Name: "x"}),
		wins:    map[string]*window{},
	}
	// 50 % exactly never trips ("passes the threshold" is above it), even
	// over many windows.
	for i := range 1000 {
		q.observe("t", "even", i%2 == 0)
	}
	// 99 messages, all invalid: no decision before a full window.
	for range 99 {
		q.observe("t", "bad", true)
	}
	mu.Lock()
	n := len(trips)
	mu.Unlock()
	if n != 0 {
		t.Fatalf("tripped early: %v", trips)
	}
	q.observe("t", "bad", true) // the 100th
	<-done
	for range 500 {
		q.observe("t", "bad", true) // tripped once only
	}
	// Resumed: the window starts over and trips again once full.
	q.reset("t", "bad")
	for i := range 100 {
		q.observe("t", "bad", i%4 != 0) // 75 % invalid
	}
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(trips) != 2 || trips[0] != (trip{"bad", 1}) || trips[1] != (trip{"bad", 0.75}) {
		t.Fatalf("trips = %v", trips)
	}
	// The ring holds exactly the last Window observations.
	w := q.wins["t.even"]
	if w.invalid != 50 || w.filled != 100 {
		t.Fatalf("even window: %d invalid of %d", w.invalid, w.filled)
	}
}

func TestQuarantineConfigValidate(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cfg QuarantineConfig
		ok  bool
	}{
		{QuarantineConfig{}, true},
		{QuarantineConfig{Ratio: 0.5}, true},
		{QuarantineConfig{Ratio: 1}, false},
		{QuarantineConfig{Ratio: -0.1}, false},
		{QuarantineConfig{Ratio: 0.5, Window: 5}, false},
	} {
		c.cfg.setDefaults()
		if err := c.cfg.validate(); (err == nil) != c.ok {
			t.Errorf("%+v: %v", c.cfg, err)
		}
	}
}
