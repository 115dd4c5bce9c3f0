package orchestrator

import (
	"math"
	rtmetrics "runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// bulkGate lets the bulk lane yield when the process is saturated. It bounds
// how many bulk messages are handled at once by an AIMD limit between
// gateMin and the lane's workers, driven by the Go scheduler's latency (how
// long runnable goroutines waited for a CPU, runtime/metrics
// /sched/latencies:seconds): every gateInterval, if the 99th percentile of
// the interval's waits passed the target while transactional messages were
// being handled, the limit halves; otherwise it grows by one (a bulk send
// with no transactional traffic beside it never yields). A transactional message is handled by goroutines that wait
// in that same run queue, so that wait is what the bulk lane gives back.
//
// Why this signal: on two cores the bulk lane's 32 workers handling invalid
// addresses are all CPU. A worker measured alone through a 2M backlog
// drained at the same rate with 4 bulk workers as with 32, and its
// transactional p50/p99 went from 10–12/87–91 ms to 2.4/44 ms (BENCHMARKS.md).
// A fixed small number would starve bulk sends to slow providers, which wait
// on the network and leave the scheduler idle: then the gate stays open. A
// signal taken from the transactional lane's own waits was tried first and
// measured little better: its messages mostly wait elsewhere, and it would
// also close the gate when a slow provider keeps every transactional worker
// busy, which the bulk lane did not cause.
type bulkGate struct {
	target time.Duration
	max    int
	gauge  prometheus.Gauge
	sample []rtmetrics.Sample
	last   []uint64 // the histogram's counts at the previous adjust

	// tx counts transactional messages since the last adjust: the lane
	// yields only to a transactional lane that has work.
	tx atomic.Int64

	mu    sync.Mutex
	cond  *sync.Cond
	limit int
	inUse int
}

const (
	gateMin      = 2
	gateInterval = 100 * time.Millisecond
	schedMetric  = "/sched/latencies:seconds"
)

func newBulkGate(target time.Duration, max int, gauge prometheus.Gauge) *bulkGate {
	g := &bulkGate{target: target, max: max, limit: max, gauge: gauge,
		sample: []rtmetrics.Sample{{Name: schedMetric}}}
	g.cond = sync.NewCond(&g.mu)
	gauge.Set(float64(max))
	g.p99() // the baseline counts
	return g
}

// enter waits until a bulk message may be handled.
func (g *bulkGate) enter() {
	g.mu.Lock()
	for g.inUse >= g.limit {
		g.cond.Wait()
	}
	g.inUse++
	g.mu.Unlock()
}

func (g *bulkGate) leave() {
	g.mu.Lock()
	g.inUse--
	g.mu.Unlock()
	g.cond.Signal()
}

// p99 is the 99th percentile of the scheduler latencies since the last
// call (the upper bound of its bucket), 0 without any.
func (g *bulkGate) p99() time.Duration {
	rtmetrics.Read(g.sample)
	if g.sample[0].Value.Kind() != rtmetrics.KindFloat64Histogram {
		return 0
	}
	h := g.sample[0].Value.Float64Histogram()
	delta := make([]uint64, len(h.Counts))
	var total uint64
	for i, c := range h.Counts {
		if i < len(g.last) {
			delta[i] = c - g.last[i]
		} else {
			delta[i] = c
		}
		total += delta[i]
	}
	g.last = append(g.last[:0], h.Counts...)
	if total == 0 {
		return 0
	}
	rank, seen := total-total/100, uint64(0)
	for i, c := range delta {
		if seen += c; seen >= rank {
			upper := h.Buckets[i+1]
			if math.IsInf(upper, 1) {
				upper = h.Buckets[i]
			}
			return time.Duration(upper * float64(time.Second))
		}
	}
	return 0
}

// transactional notes a transactional message being handled.
func (g *bulkGate) transactional() { g.tx.Add(1) }

// adjust applies one AIMD step for a p99 and returns the new limit: halve
// when the scheduler's p99 passed the target while transactional messages
// were being handled, else grow by one.
func (g *bulkGate) adjust(p99 time.Duration) int {
	busy := g.tx.Swap(0) > 0
	g.mu.Lock()
	if p99 > g.target && busy {
		g.limit = max(gateMin, g.limit/2)
	} else if g.limit < g.max {
		g.limit++
	}
	limit := g.limit
	g.mu.Unlock()
	g.cond.Broadcast()
	g.gauge.Set(float64(limit))
	return limit
}

// run adjusts the limit every gateInterval until done is closed, then opens
// the gate fully so the lane drains at full width.
func (g *bulkGate) run(done <-chan struct{}) {
	t := time.NewTicker(gateInterval)
	defer t.Stop()
	for {
		select {
		case <-done:
			g.mu.Lock()
			g.limit = g.max
			g.mu.Unlock()
			g.cond.Broadcast()
			g.gauge.Set(float64(g.max))
			return
		case <-t.C:
			g.adjust(g.p99())
		}
	}
}
