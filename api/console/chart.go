package console

import (
	"fmt"
	"html/template"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/status"
	"github.com/sluicehq/sluice/wire"
)

// The metrics the overview's charts sample (package orchestrator's).
const (
	metricMessages = "sluice_messages_total"
	metricLatency  = "sluice_orchestrator_delivery_latency_seconds"
)

// Chart geometry, in SVG user units.
const (
	chartW = 300
	chartH = 60
)

// point is one sample of a lane: messages handled per second and the 95th
// percentile of delivery latency over the interval (NaN without
// deliveries).
type point struct {
	at   time.Time
	rate float64
	p95  float64
}

// laneTotals are a lane's cumulative metrics at one gathering.
type laneTotals struct {
	messages float64
	count    uint64
	buckets  []*dto.Bucket
}

// sampler keeps the last History of each lane's throughput and latency,
// from the node's own registry: the workers of this process (an API-only
// node has none; the fleet's totals are Prometheus's job).
type sampler struct {
	g        prometheus.Gatherer
	capacity int

	mu     sync.Mutex
	prev   map[string]laneTotals
	prevAt time.Time
	series map[string][]point
}

func newSampler(g prometheus.Gatherer, history, interval time.Duration) *sampler {
	return &sampler{g: g, capacity: max(2, int(history/interval)), series: map[string][]point{}}
}

// gather reads each lane's totals.
func (s *sampler) gather() map[string]laneTotals {
	out := map[string]laneTotals{}
	mfs, err := s.g.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			lane := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "lane" {
					lane = l.GetValue()
				}
			}
			t := out[lane]
			switch mf.GetName() {
			case metricMessages:
				t.messages += m.GetCounter().GetValue()
			case metricLatency:
				t.count, t.buckets = m.GetHistogram().GetSampleCount(), m.GetHistogram().GetBucket()
			default:
				continue
			}
			out[lane] = t
		}
	}
	return out
}

// sample adds a point per lane: the change since the last sample.
func (s *sampler) sample(now time.Time) {
	if s.g == nil {
		return
	}
	cur := s.gather()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.prev != nil {
		secs := now.Sub(s.prevAt).Seconds()
		for _, lane := range []string{string(wire.LaneTransactional), string(wire.LaneBulk)} {
			c, p := cur[lane], s.prev[lane]
			pt := point{at: now, rate: math.Max(0, c.messages-p.messages) / secs, p95: p95(c, p)}
			ser := append(s.series[lane], pt)
			if len(ser) > s.capacity {
				ser = ser[len(ser)-s.capacity:]
			}
			s.series[lane] = ser
		}
	}
	s.prev, s.prevAt = cur, now
}

// p95 is the 95th percentile of the latencies observed between two
// gatherings, as the upper bound of the bucket that holds it.
func p95(cur, prev laneTotals) float64 {
	n := cur.count - prev.count
	if n == 0 || len(cur.buckets) != len(prev.buckets) && len(prev.buckets) != 0 {
		return math.NaN()
	}
	want := uint64(math.Ceil(0.95 * float64(n)))
	for i, b := range cur.buckets {
		got := b.GetCumulativeCount()
		if len(prev.buckets) > 0 {
			got -= prev.buckets[i].GetCumulativeCount()
		}
		if got >= want {
			return b.GetUpperBound()
		}
	}
	return math.Inf(1)
}

// laneChart is one lane's charts and current figures.
type laneChart struct {
	Lane                  string
	Rate, P95             string
	RateLine, LatencyLine string
	RateMax, LatencyMax   string
	Queued, Pending       uint64
	AckPending, Consumers int
	Samples               int
}

// charts returns each lane's charts, with its consumers' figures.
func (s *sampler) charts(lanes []status.Lane) []laneChart {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []laneChart
	for _, l := range lanes {
		ser := s.series[l.Lane]
		lc := laneChart{Lane: l.Lane, Queued: l.Queued, Pending: l.Pending, AckPending: l.AckPending, Consumers: l.Consumers,
			Samples: len(ser), Rate: "–", P95: "–"}
		rates, lats := make([]float64, len(ser)), make([]float64, len(ser))
		for i, p := range ser {
			rates[i], lats[i] = p.rate, p.p95
		}
		if len(ser) > 0 {
			last := ser[len(ser)-1]
			lc.Rate = strconv.FormatFloat(last.rate, 'f', 0, 64) + "/s"
			if !math.IsNaN(last.p95) {
				lc.P95 = seconds(last.p95)
			}
		}
		var top float64
		lc.RateLine, top = polyline(rates, s.capacity)
		lc.RateMax = strconv.FormatFloat(top, 'f', 0, 64) + "/s"
		lc.LatencyLine, top = polyline(lats, s.capacity)
		lc.LatencyMax = seconds(top)
		out = append(out, lc)
	}
	return out
}

// polyline returns the SVG points of values (NaN skipped, +Inf at the top)
// right-aligned on a chart of capacity samples, and the value of its top.
func polyline(values []float64, capacity int) (string, float64) {
	top := 0.0
	for _, v := range values {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			top = math.Max(top, v)
		}
	}
	if top == 0 {
		top = 1
	}
	var b strings.Builder
	step := float64(chartW) / float64(max(1, capacity-1))
	offset := capacity - len(values)
	for i, v := range values {
		if math.IsNaN(v) {
			continue
		}
		y := chartH - math.Min(v, top)/top*chartH
		fmt.Fprintf(&b, "%.1f,%.1f ", float64(offset+i)*step, y)
	}
	return strings.TrimSpace(b.String()), top
}

// seconds formats a duration in seconds for a person.
func seconds(s float64) string {
	if math.IsInf(s, 1) {
		return "> 1h"
	}
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}

// minuteBar is one minute of a conversation's chart: a stacked bar of
// delivered, invalid and failed (heights in SVG units).
type minuteBar struct {
	Label                       string
	X                           float64
	Delivered, Invalid, Failed  int64
	HDelivered, HInvalid, HFail float64
	YDelivered, YInvalid, YFail float64
}

// minuteBars lays the minutes out as bars on a chart of chartW x chartH.
func minuteBars(ms []errorlog.Minute) []minuteBar {
	var top int64 = 1
	for _, m := range ms {
		top = max(top, m.Count[wire.OutcomeDelivered]+m.Count[wire.OutcomeInvalid]+m.Count[wire.OutcomeFailed])
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Minute.Before(ms[j].Minute) })
	width := float64(chartW) / 60
	out := make([]minuteBar, 0, len(ms))
	now := time.Now().Truncate(time.Minute)
	for _, m := range ms {
		b := minuteBar{Label: m.Minute.UTC().Format("15:04"), Delivered: m.Count[wire.OutcomeDelivered],
			Invalid: m.Count[wire.OutcomeInvalid], Failed: m.Count[wire.OutcomeFailed]}
		b.X = float64(chartW) - (now.Sub(m.Minute).Minutes()+1)*width
		h := func(n int64) float64 { return float64(n) / float64(top) * chartH }
		b.HDelivered, b.HInvalid, b.HFail = h(b.Delivered), h(b.Invalid), h(b.Failed)
		b.YDelivered = chartH - b.HDelivered
		b.YInvalid = b.YDelivered - b.HInvalid
		b.YFail = b.YInvalid - b.HFail
		out = append(out, b)
	}
	return out
}

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"num": func(n any) string {
		var v int64
		switch n := n.(type) {
		case int64:
			v = n
		case uint64:
			v = int64(n)
		case int:
			v = int64(n)
		}
		s := strconv.FormatInt(v, 10)
		for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
			s = s[:i] + "," + s[i:]
		}
		return s
	},
	"pct":  func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) + " %" },
	"time": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
	"clock": func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.UTC().Format("15:04:05Z")
	},
	"dur":   func(d time.Duration) string { return d.String() },
	"json":  func(b []byte) string { return string(b) },
	"sub":   func(a, b float64) float64 { return a - b },
	"chart": func() [2]int { return [2]int{chartW, chartH} },
}
