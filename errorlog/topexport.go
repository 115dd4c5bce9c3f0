package errorlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults and limits of TopExportConfig.
const (
	// TopExportNDefault is how many conversations are exported by default.
	TopExportNDefault = 10
	// TopExportNMax bounds TopExportConfig.N, and so the number of series
	// the export can hold at once.
	TopExportNMax = 50
	// TopExportWindowDefault is the span ranked by default: "now".
	TopExportWindowDefault = 5 * time.Minute
	// TopExportIntervalDefault is how often the ranking is refreshed.
	TopExportIntervalDefault = 15 * time.Second
	// TopExportTimeoutDefault bounds one refresh's query.
	TopExportTimeoutDefault = 10 * time.Second
)

// TopExportConfig configures a TopExporter. Zero values take the defaults.
type TopExportConfig struct {
	// N is how many conversations are exported, 1 to TopExportNMax.
	// Default TopExportNDefault (10).
	N int
	// Window is the span ranked, as TopErrors' window. Default
	// TopExportWindowDefault (5m).
	Window time.Duration
	// Interval is how often Run refreshes. Default TopExportIntervalDefault
	// (15s).
	Interval time.Duration
	// Timeout bounds one refresh. Default TopExportTimeoutDefault (10s).
	Timeout time.Duration
}

func (c *TopExportConfig) setDefaults() {
	if c.N == 0 {
		c.N = TopExportNDefault
	}
	if c.Window == 0 {
		c.Window = TopExportWindowDefault
	}
	if c.Interval == 0 {
		c.Interval = TopExportIntervalDefault
	}
	if c.Timeout == 0 {
		c.Timeout = TopExportTimeoutDefault
	}
}

func (c *TopExportConfig) validate() error {
	switch {
	case c.N < 1 || c.N > TopExportNMax:
		return fmt.Errorf("errorlog: TopExportConfig.N %d: want 1 to %d", c.N, TopExportNMax)
	case c.Window <= 0 || c.Window > MaxTopWindow:
		return fmt.Errorf("errorlog: TopExportConfig.Window %v: want more than 0 and at most %v", c.Window, MaxTopWindow)
	case c.Interval <= 0:
		return fmt.Errorf("errorlog: TopExportConfig.Interval %v: want more than 0", c.Interval)
	case c.Timeout <= 0:
		return fmt.Errorf("errorlog: TopExportConfig.Timeout %v: want more than 0", c.Timeout)
	}
	return nil
}

// topKey is one exported series' labels.
type topKey struct{ tenant, conversation string }

// TopExporter exports the conversations writing the most errors now, from
// TopErrors, as at most N gauge series (see "The top-N export" in the
// package documentation for why this is a bounded label set).
type TopExporter struct {
	q   Querier
	cfg TopExportConfig
	log *slog.Logger

	errorsGauge *prometheus.GaugeVec
	refreshed   prometheus.Gauge
	failures    prometheus.Counter

	mu      sync.Mutex
	current map[topKey]bool
}

// NewTopExporter registers the export's metrics on reg:
// sluice_errorlog_top_conversation_errors{tenant,conversation} (undeliverable
// messages of one of the N conversations with the most over the window),
// sluice_errorlog_top_refresh_timestamp_seconds (the last successful refresh)
// and sluice_errorlog_top_refresh_errors_total. logger may be nil.
func NewTopExporter(q Querier, cfg TopExportConfig, logger *slog.Logger, reg prometheus.Registerer) (*TopExporter, error) {
	if q == nil {
		return nil, errors.New("errorlog: NewTopExporter: nil Querier")
	}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	const ns, sub = "sluice", "errorlog"
	e := &TopExporter{
		q: q, cfg: cfg, log: logger, current: map[topKey]bool{},
		errorsGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "top_conversation_errors",
			Help: fmt.Sprintf("Undeliverable messages over the last %v of each of the (at most %d) conversations with the most, from the exact counters; a conversation that leaves the ranking loses its series.", cfg.Window, cfg.N),
		}, []string{"tenant", "conversation"}),
		refreshed: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "top_refresh_timestamp_seconds",
			Help: "Unix time of the last successful refresh of sluice_errorlog_top_conversation_errors.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "top_refresh_errors_total",
			Help: "Refreshes of sluice_errorlog_top_conversation_errors that failed (Postgres unreachable or slow); the ranking is then withdrawn until the next success.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{e.errorsGauge, e.refreshed, e.failures} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("errorlog: register top export metrics: %w", err)
			}
		}
	}
	return e, nil
}

// Refresh ranks the conversations once and replaces the exported series
// with the new top N: series of conversations no longer ranked are
// deleted. On failure every series is withdrawn (a stale ranking would look
// current) and the error is returned.
func (e *TopExporter) Refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()
	top, err := TopErrors(ctx, e.q, e.cfg.Window, e.cfg.N)
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		e.failures.Inc()
		e.errorsGauge.Reset()
		clear(e.current)
		return err
	}
	next := make(map[topKey]bool, len(top))
	for _, t := range top {
		k := topKey{t.Tenant, t.Conversation}
		next[k] = true
		e.errorsGauge.WithLabelValues(k.tenant, k.conversation).Set(float64(t.Total))
	}
	for k := range e.current {
		if !next[k] {
			e.errorsGauge.DeleteLabelValues(k.tenant, k.conversation)
		}
	}
	e.current = next
	e.refreshed.SetToCurrentTime()
	return nil
}

// Run refreshes at once and then every Interval until ctx ends, logging
// failures.
func (e *TopExporter) Run(ctx context.Context) {
	t := time.NewTicker(e.cfg.Interval)
	defer t.Stop()
	for {
		if err := e.Refresh(ctx); err != nil && ctx.Err() == nil {
			e.log.Warn("top conversations export: refresh failed; series withdrawn until the next success", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
