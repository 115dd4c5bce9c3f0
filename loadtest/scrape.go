package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sluicehq/sluice/internal/redact"
)

// scrapeGatherer gathers a running target's metrics from its workers'
// /metrics endpoints (Prometheus text format). The families of several
// workers are returned side by side, so sums over series (metricValue,
// histCount, histogram snapshots) are sums over the fleet. A gather is
// reused for scrapeTTL, so the several figures of one sample come from one
// scrape of each worker.
type scrapeGatherer struct {
	urls   []string
	client *http.Client

	mu   sync.Mutex
	at   time.Time
	last []*dto.MetricFamily
}

// scrapeTTL is how long a gather is reused.
const scrapeTTL = 200 * time.Millisecond

var _ prometheus.Gatherer = (*scrapeGatherer)(nil)

func newScrapeGatherer(urls []string) *scrapeGatherer {
	return &scrapeGatherer{urls: urls, client: &http.Client{Timeout: 5 * time.Second}}
}

// Gather scrapes every endpoint; one failing endpoint fails the gather, so a
// partial fleet is never mistaken for the whole.
func (s *scrapeGatherer) Gather() ([]*dto.MetricFamily, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last != nil && time.Since(s.at) < scrapeTTL {
		return s.last, nil
	}
	var out []*dto.MetricFamily
	for _, u := range s.urls {
		mfs, err := s.scrape(u)
		if err != nil {
			return nil, err
		}
		for _, name := range slices.Sorted(maps.Keys(mfs)) {
			out = append(out, mfs[name])
		}
	}
	s.last, s.at = out, time.Now()
	return out, nil
}

func (s *scrapeGatherer) scrape(u string) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.client.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("metrics %s: %w", redact.URL(u), err)
	}
	// Ask for the text format: the parser reads nothing else.
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics %s: %w", redact.URL(u), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("metrics %s: %s", redact.URL(u), resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("metrics %s: %w", redact.URL(u), err)
	}
	return mfs, nil
}

// histSnap is a cumulative histogram summed over the series that match:
// cum[i] observations at or below bounds[i]; count includes +Inf.
type histSnap struct {
	bounds []float64
	cum    []float64
	count  float64
}

// snapHistogram sums the histogram name over the series whose labels include
// want. Series with other bucket layouts than the first are an error: they
// cannot be summed.
func snapHistogram(g prometheus.Gatherer, name string, want map[string]string) (histSnap, error) {
	ms, err := matching(g, name, want)
	if err != nil {
		return histSnap{}, err
	}
	var h histSnap
	for _, m := range ms {
		if m.Histogram == nil {
			continue
		}
		var bounds, cum []float64
		for _, b := range m.Histogram.GetBucket() {
			if math.IsInf(b.GetUpperBound(), 1) {
				continue
			}
			bounds = append(bounds, b.GetUpperBound())
			cum = append(cum, float64(b.GetCumulativeCount()))
		}
		if h.bounds == nil {
			h.bounds, h.cum = bounds, make([]float64, len(cum))
		} else if !slices.Equal(h.bounds, bounds) {
			return histSnap{}, fmt.Errorf("histogram %s: series with different buckets", name)
		}
		for i := range cum {
			h.cum[i] += cum[i]
		}
		h.count += float64(m.Histogram.GetSampleCount())
	}
	return h, nil
}

// sub returns h - o, the observations made between two snapshots. A counter
// reset (a restarted worker) makes a negative count: the difference is then
// h itself, an undercount of the interval.
func (h histSnap) sub(o histSnap) histSnap {
	if o.bounds == nil || !slices.Equal(h.bounds, o.bounds) || h.count < o.count {
		return h
	}
	d := histSnap{bounds: h.bounds, cum: make([]float64, len(h.cum)), count: h.count - o.count}
	for i := range h.cum {
		d.cum[i] = h.cum[i] - o.cum[i]
	}
	return d
}

// quantile estimates the q-quantile like Prometheus's histogram_quantile:
// linear interpolation inside the bucket that holds the rank. Ranks in the
// +Inf bucket return the highest finite bound. Seconds.
func (h histSnap) quantile(q float64) float64 {
	if h.count == 0 || len(h.bounds) == 0 {
		return 0
	}
	rank := q * h.count
	i := sort.Search(len(h.cum), func(i int) bool { return h.cum[i] >= rank })
	if i == len(h.cum) {
		return h.bounds[len(h.bounds)-1]
	}
	lo, below := 0.0, 0.0
	if i > 0 {
		lo, below = h.bounds[i-1], h.cum[i-1]
	}
	in := h.cum[i] - below
	if in <= 0 {
		return h.bounds[i]
	}
	return lo + (h.bounds[i]-lo)*(rank-below)/in
}

// maxBound is the upper bound of the highest bucket holding an observation:
// the maximum is at most this (or above the highest finite bound, which is
// returned then). Seconds.
func (h histSnap) maxBound() float64 {
	if h.count == 0 || len(h.bounds) == 0 {
		return 0
	}
	if h.count > h.cum[len(h.cum)-1] {
		return h.bounds[len(h.bounds)-1]
	}
	for i := range h.cum {
		if h.cum[i] == h.count {
			return h.bounds[i]
		}
	}
	return h.bounds[len(h.bounds)-1]
}

func (h histSnap) percentiles() Percentiles {
	ms := func(s float64) float64 { return s * 1000 }
	return Percentiles{Count: int(h.count), P50: ms(h.quantile(.50)), P95: ms(h.quantile(.95)), P99: ms(h.quantile(.99)), Max: ms(h.maxBound())}
}

// deliveryLatencyMetric is the workers' enqueue-to-provider histogram.
const deliveryLatencyMetric = "sluice_orchestrator_delivery_latency_seconds"

// histLatency is the latency source of a running target: the workers'
// transactional delivery-latency histogram, scraped at each phase change
// and once a second. It sees every transactional delivery of the target,
// not only the trickle's, and its percentiles are interpolated within
// buckets (1, 2.5, 5, 10, 25, 50, 100, 250, 500 ms, 1 s...); its max is
// the upper bound of the highest bucket used.
type histLatency struct {
	g    prometheus.Gatherer
	want map[string]string

	mu     sync.Mutex
	origin time.Time
	phase  string
	marks  map[string]histSnap // the snapshot at the start of each phase
	last   histSnap
	series []LatencyPoint
	err    error
}

func newHistLatency(g prometheus.Gatherer) *histLatency {
	return &histLatency{g: g, want: map[string]string{"lane": "transactional"}, marks: map[string]histSnap{}, phase: "baseline"}
}

func (l *histLatency) snap() (histSnap, bool) {
	h, err := snapHistogram(l.g, deliveryLatencyMetric, l.want)
	if err != nil {
		l.mu.Lock()
		l.err = errors.Join(l.err, err)
		l.mu.Unlock()
		return histSnap{}, false
	}
	return h, true
}

func (l *histLatency) begin(origin time.Time) {
	h, ok := l.snap()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.origin = origin
	if ok {
		l.marks[l.phase], l.last = h, h
	}
}

func (l *histLatency) setPhase(p string) {
	h, ok := l.snap()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.phase = p
	if ok {
		l.marks[p] = h
	}
}

func (l *histLatency) published(string, time.Time) {}

// pending is unknown from a histogram; the run waits for the trickle's
// subject to empty instead.
func (l *histLatency) pending() int { return 0 }

func (l *histLatency) tick(now time.Time) {
	h, ok := l.snap()
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if d := h.sub(l.last); d.count > 0 {
		p := d.percentiles()
		l.series = append(l.series, LatencyPoint{T: math.Round(now.Sub(l.origin).Seconds()), P50: p.P50, P99: p.P99, Max: p.Max, N: p.Count})
	}
	l.last = h
}

func (l *histLatency) p99So() float64 {
	h, ok := l.snap()
	if !ok {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return h.sub(l.marks[l.phase]).percentiles().P99
}

// summary is the baseline (baseline start to burst start), the burst (burst
// start to settle start) and after (settle start to now), like the
// trickle's own phases.
func (l *histLatency) summary() (baseline, burst, after Percentiles, series []LatencyPoint) {
	now, okN := l.snap()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, okB := l.marks["baseline"]
	u, okU := l.marks["burst"]
	s, okS := l.marks["settle"]
	if okB && okU {
		baseline = u.sub(b).percentiles()
	}
	if okU && okS {
		burst = s.sub(u).percentiles()
	}
	if okS && okN {
		after = now.sub(s).percentiles()
	}
	return baseline, burst, after, slices.Clone(l.series)
}

// scrapeErr is what went wrong while scraping, if anything.
func (l *histLatency) scrapeErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}
