package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluicehq/sluice/internal/ctxtime"
)

// latencySource measures the transactional lane during a mode: the
// trickle's own messages (latency, on the self-contained stack) or a
// running target's histogram (histLatency).
type latencySource interface {
	// begin marks the beginning of the mode (the baseline phase).
	begin(origin time.Time)
	setPhase(p string)
	// published records a trickle message's publish.
	published(id string, t time.Time)
	// tick is called once a second.
	tick(now time.Time)
	// pending is the number of trickle messages known to be on their way.
	pending() int
	p99So() float64
	// summary returns the percentiles of the baseline, of the burst, and of
	// what was delivered after the burst drained, and the per-second series.
	summary() (baseline, burst, after Percentiles, series []LatencyPoint)
}

// latency records the transactional trickle's end-to-end latency: from the
// publish call to the provider's acceptance.
type latency struct {
	conv   string
	origin time.Time

	mu      sync.Mutex
	phase   string
	start   map[string]time.Time
	samples []latencySample
}

type latencySample struct {
	at    time.Duration // since origin
	ms    float64
	phase string
}

func newLatency(conv string, origin time.Time) *latency {
	return &latency{conv: conv, origin: origin, start: make(map[string]time.Time), phase: "baseline"}
}

func (l *latency) begin(origin time.Time) {
	l.mu.Lock()
	l.origin = origin
	l.mu.Unlock()
}

func (l *latency) tick(time.Time) {}

func (l *latency) setPhase(p string) {
	l.mu.Lock()
	l.phase = p
	l.mu.Unlock()
}

func (l *latency) published(id string, t time.Time) {
	l.mu.Lock()
	l.start[id] = t
	l.mu.Unlock()
}

func (l *latency) delivered(id string) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.start[id]
	if !ok {
		return // a redelivery already counted
	}
	delete(l.start, id)
	l.samples = append(l.samples, latencySample{at: now.Sub(l.origin), ms: float64(now.Sub(t).Microseconds()) / 1000, phase: l.phase})
}

// pending is the number of trickle messages published and not yet delivered.
func (l *latency) pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.start)
}

// Percentiles summarise latencies in milliseconds.
type Percentiles struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P95   float64 `json:"p95_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

func percentiles(ms []float64) Percentiles {
	if len(ms) == 0 {
		return Percentiles{}
	}
	s := slices.Clone(ms)
	slices.Sort(s)
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return Percentiles{Count: len(s), P50: q(0.50), P95: q(0.95), P99: q(0.99), Max: s[len(s)-1]}
}

// summary returns the percentiles of the baseline, burst and settle phases
// and the per-second series of the whole mode.
func (l *latency) summary() (baseline, burst, after Percentiles, series []LatencyPoint) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b, u, a []float64
	perSec := map[int][]float64{}
	for _, s := range l.samples {
		switch s.phase {
		case "baseline":
			b = append(b, s.ms)
		case "burst":
			u = append(u, s.ms)
		case "settle":
			a = append(a, s.ms)
		}
		sec := int(s.at / time.Second)
		perSec[sec] = append(perSec[sec], s.ms)
	}
	keys := make([]int, 0, len(perSec))
	for k := range perSec {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p := percentiles(perSec[k])
		series = append(series, LatencyPoint{T: float64(k), P50: p.P50, P99: p.P99, Max: p.Max, N: p.Count})
	}
	return percentiles(b), percentiles(u), percentiles(a), series
}

// p99So returns the p99 of the current phase so far (for progress lines).
func (l *latency) p99So() float64 {
	l.mu.Lock()
	var ms []float64
	for i := len(l.samples) - 1; i >= 0 && len(ms) < 2000; i-- {
		if l.samples[i].phase == l.phase {
			ms = append(ms, l.samples[i].ms)
		}
	}
	l.mu.Unlock()
	return percentiles(ms).P99
}

// peakRSS reads the process's VmHWM in bytes, 0 if unknown.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) >= 2 && string(f[0]) == "VmHWM:" {
			kb, err := strconv.ParseInt(string(f[1]), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// resetPeakRSS resets VmHWM to the current RSS (Linux 4.0+). It reports
// whether it could.
func resetPeakRSS() bool {
	runtime.GC()
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// matching returns the series of the metric name whose labels include want;
// none without a gatherer (a running target without --metrics-url).
func matching(g prometheus.Gatherer, name string, want map[string]string) ([]*dto.Metric, error) {
	if g == nil {
		return nil, nil
	}
	mfs, err := g.Gather()
	if err != nil {
		return nil, err
	}
	var out []*dto.Metric
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelsMatch(m, want) {
				out = append(out, m)
			}
		}
	}
	return out, nil
}

// metricValue sums the counter, gauge or histogram sum named name over the
// series whose labels include want; 0 if they cannot be gathered.
func metricValue(g prometheus.Gatherer, name string, want map[string]string) float64 {
	ms, _ := matching(g, name, want)
	var sum float64
	for _, m := range ms {
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Histogram != nil:
			sum += m.Histogram.GetSampleSum()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		}
	}
	return sum
}

// histCount sums the sample counts of the histogram name; 0 if it cannot be
// gathered.
func histCount(g prometheus.Gatherer, name string) uint64 {
	ms, _ := matching(g, name, nil)
	var n uint64
	for _, m := range ms {
		if m.Histogram != nil {
			n += m.Histogram.GetSampleCount()
		}
	}
	return n
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k && lp.GetValue() == v {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// pacer spaces a burst's publishes to rate per second (0: no pacing),
// looking at the clock every pacerChunk publishes so that pacing costs
// nothing per message.
type pacer struct {
	start time.Time
	rate  float64
}

const pacerChunk = 256

// wait returns once publish i is due, or ctx's error.
func (p pacer) wait(ctx context.Context, i int) error {
	if p.rate <= 0 || i%pacerChunk != 0 {
		return nil
	}
	due := p.start.Add(time.Duration(float64(i) / p.rate * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		return ctxtime.Sleep(ctx, d)
	}
	return nil
}
