package loadtest

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/wire"
)

// ceilingStream is the stream of the raw JetStream measurements.
const ceilingStream = "LOADTEST_CEILING"

// The per-conversation reference's consumers are sized like the bulk lane's
// conversation consumers (orchestrator.LaneConfig's bulk defaults).
const (
	perConversationMaxAckPending = 1024
	perConversationPull          = 128
)

// A ceilingShape is one way of measuring JetStream alone with the burst's
// messages: the same payloads, the same publish window, each message acked,
// no processing.
type ceilingShape string

const (
	// ceilingOne is one consumer over the whole burst, consuming while the
	// burst is published, on a WorkQueue stream (each ack removes its
	// message): the reference of every ratio since the load test began
	// ("the raw JetStream ceiling"), kept as it was so that ratios stay
	// comparable with BENCHMARKS.md's history.
	ceilingOne ceilingShape = "one-consumer"
	// ceilingOneLimits is the same on a stream with the bulk stream's
	// Limits retention (acks remove nothing; the bulk lane's reclaim pass
	// is not run): the ceiling of the retention the bulk lane has used since
	// SLUICE_BULK, against which a mode's ratio compares like with like.
	ceilingOneLimits ceilingShape = "one-consumer-limits"
	// ceilingPerConversation is one consumer per conversation, filtered on
	// its subject, on a Limits stream: the bulk lane's topology (what makes
	// one conversation's backlog unable to delay another's), their state
	// stored as the node's are (Config.BulkConsumersInMemory): what that
	// fairness costs the server itself. A mode's ratio to it is the
	// pipeline's own cost.
	ceilingPerConversation ceilingShape = "per-conversation"
	// ceilingBacklog is one consumer started once the whole burst is
	// queued, the incident's situation, on a WorkQueue stream; its time is
	// the consuming alone.
	ceilingBacklog ceilingShape = "backlog"
)

// retention is the shape's stream retention.
func (s ceilingShape) retention() jetstream.RetentionPolicy {
	if s == ceilingOneLimits || s == ceilingPerConversation {
		return jetstream.LimitsPolicy
	}
	return jetstream.WorkQueuePolicy
}

// runCeilings measures the references, then the ceiling (last, so that it
// runs just before the first mode, which brackets compare it with), on
// fresh servers, and records them in rep.
func runCeilings(ctx context.Context, cfg *Config, rep *Report, st *stack) error {
	for _, shape := range []ceilingShape{ceilingOneLimits, ceilingPerConversation, ceilingBacklog, ceilingOne} {
		r, err := runCeilingPhase(ctx, cfg, st, shape, "ceiling-"+string(shape))
		if err != nil {
			return err
		}
		if shape == ceilingOne {
			rep.CeilingMessages, rep.CeilingSeconds, rep.CeilingMsgsPerSec = r.Messages, r.Seconds, r.MsgsPerSec
			rep.CeilingCPUSeconds, rep.CeilingNATSSeconds = r.CPUSeconds, r.NATSSeconds
			continue
		}
		rep.References = append(rep.References, *r)
	}
	return nil
}

// runCeilingPhase is runCeiling profiled as the phase named name.
func runCeilingPhase(ctx context.Context, cfg *Config, st *stack, shape ceilingShape, name string) (*CeilingReport, error) {
	stop, err := startPhaseProfile(cfg, name)
	if err != nil {
		return nil, err
	}
	defer stop()
	return runCeiling(ctx, cfg, st, shape)
}

// runCeiling measures one shape on a fresh server. The rate is messages /
// time from the first publish (the backlog: from the consumer's start) to
// the last ack seen.
func runCeiling(ctx context.Context, cfg *Config, st *stack, shape ceilingShape) (*CeilingReport, error) {
	ns, err := startNATS(cfg, filepath.Join(st.dir, "nats-ceiling"))
	if err != nil {
		return nil, fmt.Errorf("loadtest: ceiling: %w", err)
	}
	defer ns.stop()
	nc, err := nats.Connect(ns.url, nats.Name("sluice-loadtest-ceiling-pub"))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	cnc, err := nats.Connect(ns.url, nats.Name("sluice-loadtest-ceiling-sub"))
	if err != nil {
		return nil, err
	}
	defer cnc.Close()
	sc := newScenario(cfg, "")
	c := &ceiling{cfg: cfg, n: cfg.Messages, shape: shape, ns: ns, done: make(chan struct{})}
	c.js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(cfg.Window), jetstream.WithPublishAsyncTimeout(time.Minute))
	if err != nil {
		return nil, err
	}
	if c.cjs, err = jetstream.New(cnc); err != nil {
		return nil, err
	}
	if _, err := c.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: ceilingStream, Subjects: []string{"loadtest.ceiling.>"},
		Retention: shape.retention(), Storage: jetstream.FileStorage,
		// The activation streams' window: the ceiling keeps the same ids in memory.
		Duplicates: orchestrator.DefaultDuplicateWindow,
	}); err != nil {
		return nil, fmt.Errorf("loadtest: ceiling stream: %w", err)
	}
	defer c.stopConsuming()
	c.cpu0, c.ncpu0 = c.cpuNow(), ns.cpu()
	c.start = time.Now()
	if shape != ceilingBacklog {
		if err := c.consume(ctx, sc); err != nil {
			return nil, err
		}
	}
	if err := c.publish(ctx, sc); err != nil {
		return nil, err
	}
	if shape == ceilingBacklog {
		if err := c.awaitStored(ctx); err != nil {
			return nil, err
		}
		c.cpu0, c.ncpu0 = c.cpuNow(), ns.cpu()
		c.start = time.Now()
		if err := c.consume(ctx, sc); err != nil {
			return nil, err
		}
	}
	return c.waitAcked(ctx)
}

// ceiling is one raw JetStream measurement: the publisher, the counts the
// consumers and the progress reports share, and the last progress report.
type ceiling struct {
	cfg   *Config
	n     int // messages to publish
	shape ceilingShape
	js    jetstream.JetStream // the publishing connection's
	cjs   jetstream.JetStream // the consuming connection's
	start time.Time           // of the first publish (the backlog: of consuming)
	cpu0  float64             // CPU seconds at start, this process's and ns's
	ncpu0 float64             // the separate server's CPU seconds at start
	ns    *natsServer

	consumers []jetstream.ConsumeContext

	published, acked atomic.Int64
	last             atomic.Int64  // when the last message was acked, Unix ns
	done             chan struct{} // closed when the last message is acked

	prevAt             time.Time // of the last progress report
	prevPub, prevAcked int64
}

// consume creates the shape's durable consumers and acks every message,
// closing done with the last one.
func (c *ceiling) consume(ctx context.Context, sc *Scenario) error {
	cs, err := c.cjs.Stream(ctx, ceilingStream)
	if err != nil {
		return fmt.Errorf("loadtest: ceiling stream: %w", err)
	}
	type spec struct {
		cfg  jetstream.ConsumerConfig
		pull int
	}
	specs := []spec{{jetstream.ConsumerConfig{Durable: "ceiling", MaxAckPending: 4096}, 512}}
	if c.shape == ceilingPerConversation {
		specs = specs[:0]
		for i, conv := range sc.Conversations() {
			specs = append(specs, spec{jetstream.ConsumerConfig{Durable: "ceiling" + strconv.Itoa(i),
				FilterSubject: ceilingSubject(conv), MaxAckPending: perConversationMaxAckPending,
				MemoryStorage: c.cfg.BulkConsumersInMemory}, perConversationPull})
		}
	}
	for _, s := range specs {
		s.cfg.AckPolicy, s.cfg.AckWait = jetstream.AckExplicitPolicy, 30*time.Second
		cons, err := cs.CreateOrUpdateConsumer(ctx, s.cfg)
		if err != nil {
			return fmt.Errorf("loadtest: ceiling consumer: %w", err)
		}
		cc, err := cons.Consume(c.ack, jetstream.PullMaxMessages(s.pull))
		if err != nil {
			return fmt.Errorf("loadtest: ceiling consume: %w", err)
		}
		c.consumers = append(c.consumers, cc)
	}
	return nil
}

// cpuNow is this process's CPU seconds and the separate server's, if any.
func (c *ceiling) cpuNow() float64 { return processCPU() + c.ns.cpu() }

func (c *ceiling) ack(m jetstream.Msg) {
	_ = m.Ack()
	if c.acked.Add(1) == int64(c.n) {
		c.last.Store(time.Now().UnixNano())
		close(c.done)
	}
}

func (c *ceiling) stopConsuming() {
	for _, cc := range c.consumers {
		cc.Stop()
	}
}

func ceilingSubject(conv string) string { return "loadtest.ceiling." + conv }

// publish publishes the burst's messages at the configured rate within the
// window, reporting progress about once a second.
func (c *ceiling) publish(ctx context.Context, sc *Scenario) error {
	nextProgress := c.start.Add(time.Second)
	pace := pacer{start: c.start, rate: c.cfg.PublishRate}
	for i := range c.n {
		if err := pace.wait(ctx, i); err != nil {
			return err
		}
		a, _ := sc.Burst(i)
		a.EnqueuedAt = time.Now().UTC()
		data, err := wire.Encode(a)
		if err != nil {
			return err
		}
		msg := &nats.Msg{Subject: ceilingSubject(a.Conversation), Data: data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, a.ID)
		if _, err := c.js.PublishMsgAsync(msg, jetstream.WithStallWait(orchestrator.StallWait)); err != nil {
			return fmt.Errorf("loadtest: ceiling publish: %w", err)
		}
		c.published.Add(1)
		if i%1024 == 0 && time.Now().After(nextProgress) {
			c.progress()
			nextProgress = time.Now().Add(time.Second)
		}
	}
	return nil
}

// awaitStored waits until every publish is acknowledged by the server.
func (c *ceiling) awaitStored(ctx context.Context) error {
	select {
	case <-c.js.PublishAsyncComplete():
		return nil
	case <-time.After(c.cfg.Timeout):
		return fmt.Errorf("loadtest: ceiling: %d publishes unacknowledged after %v", c.js.PublishAsyncPending(), c.cfg.Timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitAcked waits, reporting progress each second, for the last ack or the
// configured timeout.
func (c *ceiling) waitAcked(ctx context.Context) (*CeilingReport, error) {
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	timeout := time.After(c.cfg.Timeout)
	for {
		select {
		case <-c.done:
			secs := time.Duration(c.last.Load() - c.start.UnixNano()).Seconds()
			c.progress()
			return &CeilingReport{Shape: string(c.shape), Consumers: len(c.consumers), Messages: c.n,
				Seconds: secs, MsgsPerSec: float64(c.n) / secs, CPUSeconds: c.cpuNow() - c.cpu0,
				NATSSeconds: c.ns.cpu() - c.ncpu0}, nil
		case <-ticker.C:
			c.progress()
		case <-timeout:
			return nil, fmt.Errorf("loadtest: ceiling (%s): %d of %d acked after %v", c.shape, c.acked.Load(), c.n, c.cfg.Timeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// progress reports the counts and the rates since the last report to
// cfg.Progress, if set.
func (c *ceiling) progress() {
	if c.cfg.Progress == nil {
		return
	}
	now, pub, ack := time.Now(), c.published.Load(), c.acked.Load()
	p := Progress{Mode: "ceiling", Phase: string(c.shape), Elapsed: now.Sub(c.start), Total: c.n, Processed: int(ack), Published: int(pub)}
	if dt := now.Sub(c.prevAt).Seconds(); !c.prevAt.IsZero() && dt > 0 {
		p.PubRate, p.ProcRate = float64(pub-c.prevPub)/dt, float64(ack-c.prevAcked)/dt
	}
	c.prevAt, c.prevPub, c.prevAcked = now, pub, ack
	c.cfg.Progress(p)
}
