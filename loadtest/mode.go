package loadtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/internal/ctxtime"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/wire"
)

// runMode publishes one burst with the trickle and measures it.
func runMode(ctx context.Context, cfg *Config, mode string, n int, sc *Scenario, lat latencySource, natsURL string, sys system, q Quarantiner, reg prometheus.Gatherer) (*ModeReport, error) {
	mr := &ModeReport{Mode: mode, Messages: n}
	mr.PeakRSSReset = resetPeakRSS()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	m := &modeRun{cfg: cfg, mode: mode, n: n, sc: sc, lat: lat, sys: sys, q: q, reg: reg, mr: mr, purged: map[string]int64{}}
	defer m.closeConns()
	if err := m.connect(ctx, natsURL); err != nil {
		return nil, err
	}
	m.countAccepted()
	m.phase.Store("baseline")

	m.startTrickle(ctx)
	defer m.endTrickle()
	m.beginSampling()
	m.startSampler(ctx)
	defer m.endSampler()

	// Baseline: the trickle alone.
	if cfg.TrickleRate > 0 && cfg.Baseline > 0 {
		if err := ctxtime.Sleep(ctx, cfg.Baseline); err != nil {
			return mr, err
		}
	}
	if err := m.burst(ctx); err != nil {
		return mr, err
	}
	if err := m.settle(ctx); err != nil {
		return mr, err
	}
	m.endSampler()
	m.sample(ctx, time.Now())
	m.summarize()
	if err := m.awaitAccounting(ctx); err != nil {
		return mr, err
	}
	if mr.DrainSeconds > 0 {
		mr.ErrorRowsPerSec = float64(mr.ErrorRowsWritten) / mr.DrainSeconds
	}
	if m.cpuOK {
		var handled, delivered int64
		for _, a := range mr.Accounting {
			if a.Conversation != sc.trickle {
				handled += a.Accepted - a.Purged
				delivered += a.Delivered
			}
		}
		mr.CPU = cpuReport(m.cpu0, m.cpu1, handled, delivered)
	}
	return mr, nil
}

// modeRun is one mode of the load test in flight: what it runs against,
// its report, and the state that its trickle, sampler, burst publisher and
// drain watcher share.
type modeRun struct {
	cfg  *Config
	mode string
	n    int // burst messages
	sc   *Scenario
	lat  latencySource // nil when latency is not measured
	sys  system
	q    Quarantiner // nil when quarantine is off
	reg  prometheus.Gatherer
	mr   *ModeReport

	pubNC, trNC *nats.Conn          // burst and trickle connections
	pubJS, trJS jetstream.JetStream // burst (async, windowed) and trickle
	stream      jetstream.Stream    // the bulk lane's, where the burst goes
	txStream    jetstream.Stream    // the transactional lane's, where the trickle goes

	// accepted is the per-conversation count of accepted messages: the
	// burst's, known before publishing, and the trickle's after it stops.
	accepted  map[string]int64
	published atomic.Int64 // burst publish calls
	phase     atomic.Value // baseline, burst or settle

	trickleSent atomic.Int64
	stopTrickle context.CancelFunc
	trickleWG   sync.WaitGroup
	trickleErr  error

	modeStart     time.Time
	rows0, write0 float64 // the error log's counters at modeStart
	flushes0      uint64
	stopSampler   context.CancelFunc
	samplerWG     sync.WaitGroup
	sampleMu      sync.Mutex // guards the last* fields and mr's series
	lastProcessed int64
	lastPublished int64
	lastRows      float64

	burstStart time.Time
	cpu0, cpu1 cpuSample // at the burst's start and at its drain
	cpuOK      bool
	qevents    []QuarantineEvent
	purged     map[string]int64 // by conversation
}

// connect opens the burst's connection (async publishes within the
// configured window), the trickle's, and the activations stream.
func (m *modeRun) connect(ctx context.Context, natsURL string) error {
	var err error
	m.pubNC, err = nats.Connect(natsURL, nats.Name("sluice-loadtest-burst"))
	if err != nil {
		return err
	}
	m.pubJS, err = jetstream.New(m.pubNC, jetstream.WithPublishAsyncMaxPending(m.cfg.Window), jetstream.WithPublishAsyncTimeout(time.Minute))
	if err != nil {
		return err
	}
	m.stream, err = m.pubJS.Stream(ctx, orchestrator.StreamName)
	if err != nil {
		return fmt.Errorf("stream %s: %w", orchestrator.StreamName, err)
	}
	m.txStream, err = m.pubJS.Stream(ctx, orchestrator.TransactionalStreamName)
	if err != nil {
		return fmt.Errorf("stream %s: %w", orchestrator.TransactionalStreamName, err)
	}
	m.trNC, err = nats.Connect(natsURL, nats.Name("sluice-loadtest-trickle"))
	if err != nil {
		return err
	}
	m.trJS, err = jetstream.New(m.trNC)
	return err
}

// closeConns closes the connections that connect opened.
func (m *modeRun) closeConns() {
	if m.trNC != nil {
		m.trNC.Close()
	}
	if m.pubNC != nil {
		m.pubNC.Close()
	}
}

// countAccepted counts the burst's messages per conversation, and its
// invalid ones, before they are published.
func (m *modeRun) countAccepted() {
	m.accepted = make(map[string]int64, len(m.sc.convs)+1)
	var invalid int
	for i := range m.n {
		if _, bad := m.sc.Burst(i); bad {
			invalid++
		}
		m.accepted[m.sc.convs[i%len(m.sc.convs)]]++
	}
	m.mr.InvalidMessages = invalid
}

// setPhase names the phase in the progress reports and the latency.
func (m *modeRun) setPhase(p string) {
	m.phase.Store(p)
	if m.lat != nil {
		m.lat.setPhase(p)
	}
}

// startTrickle starts the trickle, valid transactional messages at a
// steady rate, if it has one; endTrickle stops it.
func (m *modeRun) startTrickle(ctx context.Context) {
	var trickleCtx context.Context
	trickleCtx, m.stopTrickle = context.WithCancel(ctx)
	if m.cfg.TrickleRate > 0 {
		m.trickleWG.Go(func() {
			m.trickleErr = runTrickle(trickleCtx, m.trJS, m.sc, m.cfg.TrickleRate, m.lat, &m.trickleSent)
		})
	}
}

// endTrickle stops the trickle and waits for it to return.
func (m *modeRun) endTrickle() {
	m.stopTrickle()
	m.trickleWG.Wait()
}

// remaining returns how many of this run's burst messages wait to be
// handled, in all and by conversation: for each conversation the stream
// holds messages of, what its consumer has yet to deliver or to have acked
// (orchestrator.BulkQueued; the stream's count of a subject also holds acked
// messages the workers' reclaim pass has not yet removed).
func (m *modeRun) remaining(ctx context.Context) (int64, map[string]uint64, error) {
	info, err := m.stream.Info(ctx, jetstream.WithSubjectFilter(wire.Subject(wire.LaneBulk, Tenant, "*")))
	if err != nil {
		return 0, nil, err
	}
	var sum int64
	per := make(map[string]uint64, len(info.State.Subjects))
	mine := make(map[string]bool, len(m.sc.convs))
	for _, c := range m.sc.convs {
		mine[c] = true
	}
	for subj, c := range info.State.Subjects {
		_, _, conv, ok := wire.SubjectParts(subj)
		if !ok || !mine[conv] || c == 0 {
			continue
		}
		q, err := orchestrator.BulkQueued(ctx, m.pubJS, Tenant, conv)
		if err != nil {
			return 0, nil, err
		}
		sum += int64(q)
		per[conv] = q
	}
	return sum, per, nil
}

// errorRows is the error log's count of written rows.
func (m *modeRun) errorRows() float64 {
	return metricValue(m.reg, "sluice_errorlog_events_total", map[string]string{"outcome": "written"})
}

// ackedPublished is how many burst messages the stream has acknowledged:
// published counts publish calls, and those still unacknowledged may not
// be in the stream yet. It reads the count before the pending: an
// undercount, never an overcount.
func (m *modeRun) ackedPublished() (published, acked int64) {
	pub := m.published.Load()
	return pub, pub - int64(m.pubJS.PublishAsyncPending())
}

// beginSampling marks the mode's start and reads the error log's counters,
// which a running target started before this mode.
func (m *modeRun) beginSampling() {
	m.modeStart = time.Now()
	if m.lat != nil {
		m.lat.begin(m.modeStart)
	}
	m.rows0 = m.errorRows()
	m.write0 = metricValue(m.reg, "sluice_errorlog_flush_duration_seconds", nil)
	m.flushes0 = histCount(m.reg, "sluice_errorlog_flush_duration_seconds")
	m.lastRows = m.rows0
}

// startSampler samples every second until endSampler.
func (m *modeRun) startSampler(ctx context.Context) {
	var samplerCtx context.Context
	samplerCtx, m.stopSampler = context.WithCancel(ctx)
	m.samplerWG.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-samplerCtx.Done():
				return
			case now := <-t.C:
				m.sample(ctx, now)
			}
		}
	})
}

// endSampler stops the sampler and waits for it to return.
func (m *modeRun) endSampler() {
	m.stopSampler()
	m.samplerWG.Wait()
}

// sample records one second: processed burst messages, error rows,
// resident memory and goroutines, and reports progress.
func (m *modeRun) sample(ctx context.Context, now time.Time) {
	rem, _, err := m.remaining(ctx)
	if err != nil {
		return
	}
	pub, acked := m.ackedPublished()
	processed := max(acked-rem, 0)
	rows := m.errorRows()
	rss, g, haveUsage := m.sys.usage()
	if m.lat != nil {
		m.lat.tick(now)
	}
	mr := m.mr
	m.sampleMu.Lock()
	processed = max(processed, m.lastProcessed)
	t := now.Sub(m.modeStart).Seconds()
	procRate := float64(processed - m.lastProcessed)
	pubRate := float64(pub - m.lastPublished)
	mr.Throughput = append(mr.Throughput, Point{T: t, V: procRate})
	if m.reg != nil {
		mr.ErrorRowRate = append(mr.ErrorRowRate, Point{T: t, V: rows - m.lastRows})
	}
	m.lastProcessed, m.lastPublished, m.lastRows = processed, pub, rows
	if haveUsage {
		mr.PeakRSSBytes = max(mr.PeakRSSBytes, rss)
		mr.PeakGoroutines = max(mr.PeakGoroutines, g)
	}
	m.sampleMu.Unlock()
	if m.cfg.Progress != nil {
		p := Progress{Mode: m.mode, Phase: m.phase.Load().(string), Elapsed: now.Sub(m.modeStart), Published: int(pub), Processed: int(processed),
			Total: m.n, PubRate: pubRate, ProcRate: procRate, ErrorRows: int64(rows - m.rows0), Trickle: int(m.trickleSent.Load())}
		if m.lat != nil {
			p.LatencyP99 = m.lat.p99So()
		}
		m.cfg.Progress(p)
	}
}

// burst publishes the burst while watching it drain, stopping the
// conversations that get quarantined, and records its rates.
func (m *modeRun) burst(ctx context.Context) error {
	m.setPhase("burst")
	m.burstStart = time.Now()
	m.cpu0, m.cpuOK = m.sys.cpu()
	stopProfile, err := startPhaseProfile(m.cfg, "mode-"+m.mr.Mode)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return m.publishBurst(gctx) })
	g.Go(func() error { return m.watchDrain(gctx) })
	err = g.Wait()
	stopProfile()
	if err != nil {
		return fmt.Errorf("burst: %w", err)
	}
	m.cpu1, _ = m.sys.cpu()
	m.mr.Quarantine = m.qevents
	if m.mr.DrainSeconds > 0 {
		m.mr.MsgsPerSec = float64(m.n) / m.mr.DrainSeconds
	}
	return nil
}

// publishBurst publishes the burst's messages at the configured rate and
// waits for their acknowledgements.
func (m *modeRun) publishBurst(ctx context.Context) error {
	pub := orchestrator.NewPublisher(m.pubJS, 0)
	pace := pacer{start: m.burstStart, rate: m.cfg.PublishRate}
	for i := range m.n {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := pace.wait(ctx, i); err != nil {
			return err
		}
		a, _ := m.sc.Burst(i)
		a.EnqueuedAt = time.Now().UTC()
		if _, err := pub.PublishAsync(a); err != nil {
			return err
		}
		m.published.Add(1)
	}
	if err := pub.Wait(ctx); err != nil {
		return err
	}
	m.mr.PublishSeconds = time.Since(m.burstStart).Seconds()
	m.mr.PublishMsgsPerSec = float64(m.n) / m.mr.PublishSeconds
	return nil
}

// watchDrain polls the stream until the whole burst is published and
// processed, stopping each conversation that gets quarantined (once a
// second). A stopped conversation's messages stay queued until purged:
// they are not waited for, and once the whole burst is published a last
// stop purges what came after the first.
func (m *modeRun) watchDrain(ctx context.Context) error {
	quarantined := map[string]bool{}
	lastQ := time.Time{}
	for {
		// Every 250 ms while the burst is being published, then every 10
		// ms, so the drain's end is known to about the same precision as
		// the ceiling's (its last ack).
		every := 250 * time.Millisecond
		if m.published.Load() == int64(m.n) {
			every = 10 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
		at := time.Now() // the stream held rem at the latest when asked
		rem, per, err := m.remaining(ctx)
		if err != nil {
			continue
		}
		if m.q != nil && time.Since(lastQ) >= time.Second {
			lastQ = time.Now()
			if err := m.stopNewlyQuarantined(ctx, quarantined, per); err != nil {
				return err
			}
		}
		for c := range quarantined {
			rem -= int64(per[c])
		}
		if m.published.Load() == int64(m.n) && m.pubJS.PublishAsyncPending() == 0 && rem == 0 {
			if err := m.purgeQuarantined(ctx, quarantined); err != nil {
				return err
			}
			m.mr.DrainSeconds = at.Sub(m.burstStart).Seconds()
			return nil
		}
	}
}

// stopNewlyQuarantined finds every conversation quarantined since the last
// look, records a QuarantineEvent for it, then stops them together (each
// stop waits a settle) and counts what each stop purged. per is what the
// stream still holds by conversation.
func (m *modeRun) stopNewlyQuarantined(ctx context.Context, quarantined map[string]bool, per map[string]uint64) error {
	var fresh []int
	for k, c := range m.sc.convs {
		if quarantined[c] {
			continue
		}
		at, ok, err := m.q.Quarantined(ctx, Tenant, c)
		if err != nil || !ok {
			continue
		}
		quarantined[c] = true
		if at.IsZero() || at.Before(m.burstStart) {
			at = time.Now()
		}
		_, acked := m.ackedPublished()
		m.qevents = append(m.qevents, QuarantineEvent{Conversation: c, AfterSeconds: at.Sub(m.burstStart).Seconds(),
			ProcessedBefore: max(0, publishedTo(k, len(m.sc.convs), acked)-int64(per[c]))})
		fresh = append(fresh, len(m.qevents)-1)
	}
	var sg errgroup.Group
	for _, i := range fresh {
		sg.Go(func() error {
			p, err := m.q.Stop(ctx, Tenant, m.qevents[i].Conversation)
			if err != nil {
				return fmt.Errorf("stop quarantined conversation %s: %w", m.qevents[i].Conversation, err)
			}
			m.qevents[i].Purged = p
			return nil
		})
	}
	if err := sg.Wait(); err != nil {
		return err
	}
	for _, i := range fresh {
		m.purged[m.qevents[i].Conversation] = m.qevents[i].Purged
	}
	return nil
}

// purgeQuarantined stops every quarantined conversation once more, once
// the whole burst is published, and counts what that purged.
func (m *modeRun) purgeQuarantined(ctx context.Context, quarantined map[string]bool) error {
	for c := range quarantined {
		p, err := m.q.Stop(ctx, Tenant, c)
		if err != nil {
			return fmt.Errorf("purge quarantined conversation %s: %w", c, err)
		}
		m.purged[c] += p
		for i := range m.qevents {
			if m.qevents[i].Conversation == c {
				m.qevents[i].Purged += p
			}
		}
	}
	return nil
}

// settle stops the trickle, counts what it sent as accepted, and waits
// for its last messages: their latency, then the stream to hold none of
// them.
func (m *modeRun) settle(ctx context.Context) error {
	m.setPhase("settle")
	if m.cfg.TrickleRate > 0 && m.cfg.AfterDrain > 0 {
		if err := ctxtime.Sleep(ctx, m.cfg.AfterDrain); err != nil {
			return err
		}
	}
	m.endTrickle()
	if m.trickleErr != nil && !errors.Is(m.trickleErr, context.Canceled) {
		return fmt.Errorf("trickle: %w", m.trickleErr)
	}
	m.mr.TransactionalSent = int(m.trickleSent.Load())
	m.accepted[m.sc.trickle] = m.trickleSent.Load()
	if m.lat != nil {
		deadline := time.Now().Add(time.Minute)
		for m.lat.pending() > 0 && time.Now().Before(deadline) {
			if err := ctxtime.Sleep(ctx, 20*time.Millisecond); err != nil {
				return err
			}
		}
	}
	return m.awaitTrickleDrained(ctx)
}

// awaitTrickleDrained waits, up to a minute, for its stream to hold none of
// this run's trickle messages: every message acked is counted. State.Msgs
// counts the whole stream, whatever the filter, and a running target may
// hold other messages; the filtered subject's count is ours.
func (m *modeRun) awaitTrickleDrained(ctx context.Context) error {
	trickleSubject := wire.Subject(wire.LaneTransactional, Tenant, m.sc.trickle)
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		info, err := m.txStream.Info(ctx, jetstream.WithSubjectFilter(trickleSubject))
		if err == nil && info.State.Subjects[trickleSubject] == 0 {
			break
		}
		if err := ctxtime.Sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// summarize records the trickle's latency and the error log's write time
// and flushes during the mode.
func (m *modeRun) summarize() {
	mr := m.mr
	if m.lat != nil {
		base, burst, after, series := m.lat.summary()
		mr.TransactionalBase, mr.TransactionalBurst, mr.TransactionalAfter, mr.Latency = &base, &burst, &after, series
		mr.TransactionalP50Ms, mr.TransactionalP95Ms, mr.TransactionalP99Ms, mr.TransactionalMaxMs = &burst.P50, &burst.P95, &burst.P99, &burst.Max
	}
	if m.reg != nil {
		w := metricValue(m.reg, "sluice_errorlog_flush_duration_seconds", nil) - m.write0
		mr.ErrorLogWriteSeconds = &w
		mr.ErrorLogFlushes = int64(histCount(m.reg, "sluice_errorlog_flush_duration_seconds")) - int64(m.flushes0)
	}
}

// awaitAccounting fills the accounting until it is exact or accountWait
// has passed. Every count is durable before its message's ack; a running
// target's last acks and stop sweeps may still need a moment.
func (m *modeRun) awaitAccounting(ctx context.Context) error {
	mr := m.mr
	for deadline := time.Now().Add(accountWait(m.sys)); ; {
		mr.Accounting = nil
		if err := account(ctx, m.sys, m.sc, m.accepted, m.purged, mr); err != nil {
			return err
		}
		if mr.AccountingExact || time.Now().After(deadline) {
			return nil
		}
		if err := ctxtime.Sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}
