package loadtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/natsrv"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/wire"
)

// ceilingStream is the stream of the raw JetStream measurement.
const ceilingStream = "LOADTEST_CEILING"

// runCeiling measures the raw JetStream ceiling on a fresh server: the same
// number of burst messages (the same payloads) published with the same
// bounded window while one pull consumer acks each one, no processing. The
// rate is messages / time from the first publish to the last ack seen.
func runCeiling(ctx context.Context, cfg *Config, rep *Report, st *stack) error {
	dir := filepath.Join(st.dir, "nats-ceiling")
	ns, err := natsrv.Start(natsrv.Config{Port: -1, StoreDir: dir})
	if err != nil {
		return fmt.Errorf("loadtest: ceiling: %w", err)
	}
	defer func() {
		natsrv.Stop(ns)
		_ = os.RemoveAll(dir)
	}()
	nc, err := nats.Connect(ns.ClientURL(), nats.Name("sluice-loadtest-ceiling-pub"))
	if err != nil {
		return err
	}
	defer nc.Close()
	cnc, err := nats.Connect(ns.ClientURL(), nats.Name("sluice-loadtest-ceiling-sub"))
	if err != nil {
		return err
	}
	defer cnc.Close()
	c := &ceiling{cfg: cfg, n: cfg.Messages, done: make(chan struct{})}
	c.js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(cfg.Window), jetstream.WithPublishAsyncTimeout(time.Minute))
	if err != nil {
		return err
	}
	cjs, err := jetstream.New(cnc)
	if err != nil {
		return err
	}
	cc, err := c.consume(ctx, cjs)
	if err != nil {
		return err
	}
	defer cc.Stop()

	sc := newScenario(cfg, "")
	c.start = time.Now()
	if err := c.publish(ctx, sc); err != nil {
		return err
	}
	return c.waitAcked(ctx, rep)
}

// ceiling is one raw JetStream measurement: the publisher, the counts the
// consumer and the progress reports share, and the last progress report.
type ceiling struct {
	cfg   *Config
	n     int                 // messages to publish
	js    jetstream.JetStream // the publishing connection's
	start time.Time           // of the first publish

	published, acked atomic.Int64
	last             atomic.Int64  // when the last message was acked, Unix ns
	done             chan struct{} // closed when the last message is acked

	prevAt             time.Time // of the last progress report
	prevPub, prevAcked int64
}

// consume creates the work-queue stream and its durable consumer, and acks
// every message, closing done with the last one.
func (c *ceiling) consume(ctx context.Context, cjs jetstream.JetStream) (jetstream.ConsumeContext, error) {
	if _, err := c.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: ceilingStream, Subjects: []string{"loadtest.ceiling.>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute,
	}); err != nil {
		return nil, fmt.Errorf("loadtest: ceiling stream: %w", err)
	}
	cs, err := cjs.Stream(ctx, ceilingStream)
	if err != nil {
		return nil, fmt.Errorf("loadtest: ceiling stream: %w", err)
	}
	cons, err := cs.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "ceiling", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 4096, AckWait: 30 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("loadtest: ceiling consumer: %w", err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		if c.acked.Add(1) == int64(c.n) {
			c.last.Store(time.Now().UnixNano())
			close(c.done)
		}
	}, jetstream.PullMaxMessages(512))
	if err != nil {
		return nil, fmt.Errorf("loadtest: ceiling consume: %w", err)
	}
	return cc, nil
}

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
		msg := &nats.Msg{Subject: "loadtest.ceiling." + a.Conversation, Data: data, Header: nats.Header{}}
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

// waitAcked waits, reporting progress each second, for the last ack or the
// configured timeout, and records the ceiling in rep.
func (c *ceiling) waitAcked(ctx context.Context, rep *Report) error {
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	timeout := time.After(c.cfg.Timeout)
	for {
		select {
		case <-c.done:
			secs := time.Duration(c.last.Load() - c.start.UnixNano()).Seconds()
			rep.CeilingMessages, rep.CeilingSeconds, rep.CeilingMsgsPerSec = c.n, secs, float64(c.n)/secs
			c.progress()
			return nil
		case <-ticker.C:
			c.progress()
		case <-timeout:
			return fmt.Errorf("loadtest: ceiling: %d of %d acked after %v", c.acked.Load(), c.n, c.cfg.Timeout)
		case <-ctx.Done():
			return ctx.Err()
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
	p := Progress{Mode: "ceiling", Phase: "ceiling", Elapsed: now.Sub(c.start), Total: c.n, Processed: int(ack), Published: int(pub)}
	if dt := now.Sub(c.prevAt).Seconds(); !c.prevAt.IsZero() && dt > 0 {
		p.PubRate, p.ProcRate = float64(pub-c.prevPub)/dt, float64(ack-c.prevAcked)/dt
	}
	c.prevAt, c.prevPub, c.prevAcked = now, pub, ack
	c.cfg.Progress(p)
}
