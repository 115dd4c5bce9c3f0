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
	n := cfg.Messages
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
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(cfg.Window), jetstream.WithPublishAsyncTimeout(time.Minute))
	if err != nil {
		return err
	}
	cjs, err := jetstream.New(cnc)
	if err != nil {
		return err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: ceilingStream, Subjects: []string{"loadtest.ceiling.>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute,
	}); err != nil {
		return fmt.Errorf("loadtest: ceiling stream: %w", err)
	}
	cs, err := cjs.Stream(ctx, ceilingStream)
	if err != nil {
		return fmt.Errorf("loadtest: ceiling stream: %w", err)
	}
	cons, err := cs.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "ceiling", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 4096, AckWait: 30 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("loadtest: ceiling consumer: %w", err)
	}
	var acked atomic.Int64
	done := make(chan struct{})
	var last atomic.Int64
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		if acked.Add(1) == int64(n) {
			last.Store(time.Now().UnixNano())
			close(done)
		}
	}, jetstream.PullMaxMessages(512))
	if err != nil {
		return fmt.Errorf("loadtest: ceiling consume: %w", err)
	}
	defer cc.Stop()

	sc := newScenario(cfg, "")
	start := time.Now()
	var published atomic.Int64
	var prevAt time.Time
	var prevPub, prevAcked int64
	progress := func() {
		if cfg.Progress == nil {
			return
		}
		now, pub, ack := time.Now(), published.Load(), acked.Load()
		p := Progress{Mode: "ceiling", Phase: "ceiling", Elapsed: now.Sub(start), Total: n, Processed: int(ack), Published: int(pub)}
		if dt := now.Sub(prevAt).Seconds(); !prevAt.IsZero() && dt > 0 {
			p.PubRate, p.ProcRate = float64(pub-prevPub)/dt, float64(ack-prevAcked)/dt
		}
		prevAt, prevPub, prevAcked = now, pub, ack
		cfg.Progress(p)
	}
	nextProgress := start.Add(time.Second)
	pace := pacer{start: start, rate: cfg.PublishRate}
	for i := range n {
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
		if _, err := js.PublishMsgAsync(msg, jetstream.WithStallWait(orchestrator.StallWait)); err != nil {
			return fmt.Errorf("loadtest: ceiling publish: %w", err)
		}
		published.Add(1)
		if i%1024 == 0 && time.Now().After(nextProgress) {
			progress()
			nextProgress = time.Now().Add(time.Second)
		}
	}
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	timeout := time.After(cfg.Timeout)
	for {
		select {
		case <-done:
			secs := time.Duration(last.Load() - start.UnixNano()).Seconds()
			rep.CeilingMessages, rep.CeilingSeconds, rep.CeilingMsgsPerSec = n, secs, float64(n)/secs
			progress()
			return nil
		case <-ticker.C:
			progress()
		case <-timeout:
			return fmt.Errorf("loadtest: ceiling: %d of %d acked after %v", acked.Load(), n, cfg.Timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
