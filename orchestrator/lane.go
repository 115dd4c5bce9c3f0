package orchestrator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/internal/ctxtime"
	"github.com/sluicehq/sluice/wire"
)

// LaneConfig sizes one lane.
type LaneConfig struct {
	// Workers is the number of messages the lane processes at once.
	// Default 16 for transactional, 32 for bulk.
	Workers int
	// FetchBatch is the most messages one pull request asks for; in the bulk
	// lane it is also each conversation's turn in the round-robin. Default 16
	// for transactional, 128 for bulk. Bulk batches may be larger than the
	// lane's workers: a fetched batch is kept in progress on the server as a
	// whole until each message's handler returns (progress), so messages
	// waiting for a worker are never redelivered underneath. Larger turns
	// mean fewer pull requests per message (issue 14's profiles).
	FetchBatch int
	// AckWait is how long the server waits for an ack before redelivering.
	// It must cover the worker queue, the send timeout and the error log's
	// commit. Default 30s.
	AckWait time.Duration
	// MaxDeliver is the number of delivery attempts; the last one that fails
	// transiently is recorded as failed (max_deliveries). Default 20, which
	// with the default backoff spans about half an hour of retries. The
	// pipeline enforces it, not the server (the consumers' MaxDeliver is
	// unlimited), so that deliveries deferred by a provider outage can never
	// strand a message at the server's limit.
	MaxDeliver int
	// MaxAckPending bounds unacknowledged messages per consumer (the whole
	// transactional lane; each bulk conversation). Default 1024 for
	// both.
	MaxAckPending int
}

func (c *LaneConfig) setDefaults(l wire.Lane) {
	def := LaneConfig{Workers: 16, FetchBatch: 16, AckWait: 30 * time.Second, MaxDeliver: 20, MaxAckPending: 1024}
	if l == wire.LaneBulk {
		def.Workers, def.FetchBatch, def.MaxAckPending = 32, 128, 1024
	}
	if c.Workers == 0 {
		c.Workers = def.Workers
	}
	if c.FetchBatch == 0 {
		c.FetchBatch = def.FetchBatch
	}
	if c.AckWait == 0 {
		c.AckWait = def.AckWait
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = def.MaxDeliver
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = def.MaxAckPending
	}
}

func (c *LaneConfig) validate(l wire.Lane) error {
	switch {
	case c.Workers < 1:
		return errors.New("orchestrator: " + string(l) + ".Workers must be at least 1")
	case c.FetchBatch < 1:
		return errors.New("orchestrator: " + string(l) + ".FetchBatch must be at least 1")
	case c.MaxAckPending < c.FetchBatch:
		return errors.New("orchestrator: " + string(l) + ".MaxAckPending must be at least FetchBatch")
	case c.AckWait < time.Second:
		return errors.New("orchestrator: " + string(l) + ".AckWait must be at least 1s")
	}
	return nil
}

// consumerConfig is a lane consumer's configuration. Acks are explicit, one
// per message. A cumulative policy (AckAll) would settle every pending
// message below the one acked, whoever holds it, and the bulk lane's
// conversation consumers are shared by every worker of a fleet: one worker's
// ack would settle another's messages in flight, and a kill -9 of that one
// would leave them with no outcome. One ack per message is the largest cost
// a consumer adds to JetStream's own; what cumulative acks, or purges standing
// for them, would save is measured in BENCHMARKS.md (2026-12-07, eighth
// session).
func consumerConfig(name, filter string, c LaneConfig, inactive time.Duration) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:           name,
		FilterSubject:     filter,
		AckPolicy:         jetstream.AckExplicitPolicy,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckWait:           c.AckWait,
		MaxDeliver:        -1, // enforced by the pipeline: see LaneConfig.MaxDeliver
		MaxAckPending:     c.MaxAckPending,
		MaxWaiting:        512,
		InactiveThreshold: inactive,
	}
}

// pool runs a lane's workers over a channel of fetched messages.
type pool struct {
	lane     wire.Lane
	workers  int
	work     chan jetstream.Msg
	wg       sync.WaitGroup
	handle   func(context.Context, wire.Lane, jetstream.Msg)
	inFlight atomic.Int64 // messages a worker is handling now
	held     *progress
	// gate, when set, bounds how many of the lane's messages are handled
	// at once (the bulk lane's bulkGate).
	gate *bulkGate
	// seen, when set, hears of each message handled (the transactional
	// lane tells the bulk lane's gate it has work).
	seen func()
}

func newPool(lane wire.Lane, workers int, ackWait time.Duration, handle func(context.Context, wire.Lane, jetstream.Msg)) *pool {
	return &pool{lane: lane, workers: workers, work: make(chan jetstream.Msg, workers), handle: handle, held: newProgress(ackWait / 3)}
}

// start runs the workers until the work channel is closed; ctx is the
// handlers' context, cancelled only when a drain runs out of time.
func (p *pool) start(ctx context.Context, workers int) {
	p.held.start()
	for range workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for msg := range p.work {
				if p.seen != nil {
					p.seen()
				}
				if p.gate != nil {
					p.gate.enter()
				}
				p.inFlight.Add(1)
				p.handle(ctx, p.lane, msg)
				p.held.remove(msg)
				p.inFlight.Add(-1)
				if p.gate != nil {
					p.gate.leave()
				}
			}
		}()
	}
}

// submitAll takes every message of a fetched batch, keeps them in progress
// on the server from now until their handlers return (see progress), and
// hands them to the workers one by one, blocking while all are busy; so
// neither a batch larger than the lane's workers nor a slow send causes a
// redelivery underneath. For batches that end at once (FetchNoWait). It
// returns the number of messages and the batch's error.
func (p *pool) submitAll(b jetstream.MessageBatch) (int, error) {
	var msgs []jetstream.Msg
	for msg := range b.Messages() {
		msgs = append(msgs, msg)
	}
	p.held.add(msgs...)
	for _, msg := range msgs {
		p.work <- msg
	}
	return len(msgs), b.Error()
}

// submitEach hands each message of b to a worker as it arrives, for a batch
// that waits for messages (the transactional lane's Fetch): a message never
// waits for the rest of its batch. Keep FetchBatch × SendTimeout / Workers
// under AckWait there: messages not yet taken from b are not kept in
// progress.
func (p *pool) submitEach(b jetstream.MessageBatch) error {
	for msg := range b.Messages() {
		p.held.add(msg)
		p.work <- msg
	}
	return b.Error()
}

// close lets the workers finish what was submitted and waits for them.
func (p *pool) close() {
	close(p.work)
	p.wg.Wait()
	p.held.stop()
}

// progress tells the server that the messages a lane holds are still being
// worked on: every period (a third of AckWait) it sends InProgress for each
// message held longer than a period. One ticker per lane rather than a timer
// per message, which was a visible cost of the bulk lane (issue 14).
type progress struct {
	period time.Duration
	mu     sync.Mutex
	since  map[jetstream.Msg]time.Time
	done   chan struct{}
	wg     sync.WaitGroup
}

func newProgress(period time.Duration) *progress {
	return &progress{period: period, since: make(map[jetstream.Msg]time.Time), done: make(chan struct{})}
}

func (pr *progress) add(msgs ...jetstream.Msg) {
	now := time.Now()
	pr.mu.Lock()
	for _, m := range msgs {
		pr.since[m] = now
	}
	pr.mu.Unlock()
}

func (pr *progress) remove(msg jetstream.Msg) {
	pr.mu.Lock()
	delete(pr.since, msg)
	pr.mu.Unlock()
}

func (pr *progress) start() {
	pr.wg.Add(1)
	go func() {
		defer pr.wg.Done()
		t := time.NewTicker(pr.period / 2)
		defer t.Stop()
		for {
			select {
			case <-pr.done:
				return
			case now := <-t.C:
				pr.tell(now)
			}
		}
	}()
}

// tell sends InProgress for each message held a period or longer. The
// ticker runs at half the period, so no message goes longer than 1.5
// periods (half of AckWait) without one.
func (pr *progress) tell(now time.Time) {
	var due []jetstream.Msg
	pr.mu.Lock()
	for m, t := range pr.since {
		if now.Sub(t) >= pr.period {
			due = append(due, m)
			pr.since[m] = now
		}
	}
	pr.mu.Unlock()
	for _, m := range due {
		// A message finished meanwhile is acked already; the server
		// ignores progress on it.
		_ = m.InProgress()
	}
}

func (pr *progress) stop() {
	close(pr.done)
	pr.wg.Wait()
}

// transactionalSource feeds the transactional lane from its single consumer,
// blocking in Fetch until messages arrive so latency is one round trip.
type transactionalSource struct {
	cons  jetstream.Consumer
	batch int
	log   *slog.Logger
}

func (s *transactionalSource) run(ctx context.Context, p *pool) {
	for ctx.Err() == nil {
		b, err := s.cons.Fetch(s.batch, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			s.log.Warn("transactional fetch failed", "err", err)
			ctxtime.Sleep(ctx, 250*time.Millisecond)
			continue
		}
		if err := p.submitEach(b); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			s.log.Warn("transactional fetch ended with error", "err", err)
			ctxtime.Sleep(ctx, 250*time.Millisecond)
		}
	}
}

// bulkSource feeds the bulk lane round-robin from one consumer per
// conversation that has queued messages.
type bulkSource struct {
	stream   jetstream.Stream
	cfg      LaneConfig
	interval time.Duration
	log      *slog.Logger
	m        *metrics

	mu    sync.Mutex
	convs map[string]jetstream.Consumer // by subject
	wake  chan struct{}

	// waiting maps a conversation's subject to the channel its messages were
	// last deferred for; the conversation is skipped while that channel's
	// provider is open (circuit breaker), so an outage costs its
	// conversations nothing and the others keep the lane.
	waiting  sync.Map // subject -> dispatch.Channel
	isClosed func(ch dispatch.Channel) bool
	// controls, when set, leaves out the conversations that are not
	// active: their queued messages are never fetched.
	controls *Controls
	// inMemory makes the conversation consumers keep their state in the
	// servers' memory (Config.ConversationConsumersInMemory).
	inMemory bool
	// js sends the reclaim pass's purges; reclaimedAt, floorReclaimedAt
	// and subjectsReclaimedAt are when it last ran, purged stream-wide and
	// purged subject by subject; floor is the stream-wide floor it last
	// found, since floorMovedAt (see reclaim).
	js                                                 jetstream.JetStream
	reclaimedAt, floorReclaimedAt, subjectsReclaimedAt time.Time
	floor                                              uint64
	floorMovedAt                                       time.Time
}

// deferred notes that subject's messages wait for ch.
func (s *bulkSource) deferred(subject string, ch dispatch.Channel) {
	if _, _, _, ok := wire.SubjectParts(subject); ok && s.isClosed != nil {
		s.waiting.Store(subject, ch)
	}
}

// skip reports whether subject's conversation is not active, or waits for a
// provider that is still open or a channel that is disabled.
func (s *bulkSource) skip(subject string) bool {
	if s.controls != nil && s.controls.heldSubject(subject) {
		return true
	}
	v, ok := s.waiting.Load(subject)
	if !ok {
		return false
	}
	if s.isClosed(v.(dispatch.Channel)) {
		s.waiting.Delete(subject)
		return false
	}
	return true
}

func newBulkSource(js jetstream.JetStream, stream jetstream.Stream, cfg LaneConfig, interval time.Duration, log *slog.Logger, m *metrics) *bulkSource {
	return &bulkSource{js: js, stream: stream, cfg: cfg, interval: interval, log: log, m: m,
		convs: make(map[string]jetstream.Consumer), wake: make(chan struct{}, 1)}
}

// bulkConsumerName names a conversation's durable consumer: readable, and
// unique through a hash of the subject (tokens may contain '_' and '-').
func bulkConsumerName(subject string) string {
	_, t, c, _ := wire.SubjectParts(subject)
	h := sha256.Sum256([]byte(subject))
	return "sluice_bulk_" + t + "_" + c + "_" + hex.EncodeToString(h[:4])
}

// discover reconciles the set of conversation consumers with the subjects
// that hold bulk messages: a consumer for each new subject, deletion for
// each subject that has emptied; before that, the reclaim pass removes what
// the consumers have acked (which is what empties a drained conversation's
// subject).
func (s *bulkSource) discover(ctx context.Context) error {
	info, err := s.stream.Info(ctx, jetstream.WithSubjectFilter(wire.Subject(wire.LaneBulk, "*", "*")))
	if err != nil {
		return err
	}
	s.reclaim(ctx, info, time.Now())
	add, remove := s.plan(info.State.Subjects)
	for _, subj := range add {
		cons, err := s.createConsumer(ctx, subj)
		if err != nil {
			s.log.Warn("create conversation consumer failed", "subject", subj, "err", err)
			continue
		}
		s.mu.Lock()
		s.convs[subj] = cons
		s.mu.Unlock()
		s.m.consumerChanges.WithLabelValues("created").Inc()
	}
	for _, subj := range remove {
		s.deleteConsumer(ctx, subj)
	}
	s.mu.Lock()
	s.m.bulkConsumers.Set(float64(len(s.convs)))
	s.mu.Unlock()
	if len(add) > 0 {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// plan sorts the bulk subjects (with their message counts) into the
// consumers to create and those to delete because their subject emptied.
//
// A held conversation (paused, quarantined, stopped) keeps its consumer:
// it is not fetched, and with the stream's Limits retention an ack is not
// checked against the other consumers, so it costs the live conversations
// nothing (on the earlier WorkQueue stream 56 held consumers took a third
// off 8 live ones' rate, and held conversations' consumers were deleted).
// A consumer is deleted only once its subject is empty, every message of it
// acked and reclaimed: one created again later starts from the stream's
// first message of the subject, so it must find no acked one there.
func (s *bulkSource) plan(subjects map[string]uint64) (add, remove []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for subj, n := range subjects {
		if _, ok := s.convs[subj]; !ok && n > 0 {
			add = append(add, subj)
		}
	}
	for subj := range s.convs {
		if subjects[subj] == 0 {
			remove = append(remove, subj)
		}
	}
	return add, remove
}

// deleteConsumer forgets subject's consumer and deletes it, counting the
// change.
func (s *bulkSource) deleteConsumer(ctx context.Context, subj string) {
	s.mu.Lock()
	delete(s.convs, subj)
	s.mu.Unlock()
	// Another worker process may still use it; a message published since
	// its subject emptied is delivered by the consumer the next discovery
	// creates.
	err := s.stream.DeleteConsumer(ctx, bulkConsumerName(subj))
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		s.log.Warn("delete conversation consumer failed", "subject", subj, "err", err)
	}
	s.m.consumerChanges.WithLabelValues("deleted").Inc()
}

// createConsumer creates (or finds) subject's conversation consumer, its
// state in a file or, with inMemory, in the servers' memory. A file-stored
// consumer writes its state up to ten times a second, and with one consumer
// per conversation that write was a tenth of the server's work at 64
// conversations (BENCHMARKS.md). A conversation consumer never expires on
// its own (no InactiveThreshold): one created again starts from the
// subject's first message in the stream, so it may only go once the
// subject is empty (see plan). That is also the cost of a memory-stored
// consumer: if it vanishes with a server restart (every replica, in a
// cluster), the one the next discovery creates delivers again, besides what
// was in flight, the acked messages the reclaim pass had not yet removed
// (up to reclaimFloorBatch of them, and those acked above a message waiting for
// a retry); the error log counts each once (by stream sequence), but valid
// ones are sent again. A consumer stored the other way by an earlier
// configuration cannot be changed, so it is deleted and created anew, with
// the same redeliveries.
func (s *bulkSource) createConsumer(ctx context.Context, subj string) (jetstream.Consumer, error) {
	cfg := consumerConfig(bulkConsumerName(subj), subj, s.cfg, 0)
	cfg.MemoryStorage = s.inMemory
	cons, err := s.stream.CreateOrUpdateConsumer(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "storage type can not be updated") {
		return cons, err
	}
	if err := s.stream.DeleteConsumer(ctx, cfg.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, err
	}
	s.log.Info("conversation consumer replaced: its state is now kept in "+map[bool]string{true: "memory", false: "a file"}[s.inMemory], "subject", subj)
	return s.stream.CreateOrUpdateConsumer(ctx, cfg)
}

func (s *bulkSource) discoverLoop(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		if err := s.discover(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("bulk discovery failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// snapshot returns the conversation consumers in a stable order, leaving out
// those of conversations not active and those waiting for an open provider
// or a disabled channel.
func (s *bulkSource) snapshot() []jetstream.Consumer {
	_, cons := s.window("", -1)
	return cons
}

// window returns, in subject order, up to n (every one when n < 0) of the
// conversation consumers whose subjects sort after after, leaving out those
// snapshot leaves out, with their subjects.
func (s *bulkSource) window(after string, n int) ([]string, []jetstream.Consumer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	subjects := make([]string, 0, len(s.convs))
	for subj := range s.convs {
		if subj > after && !s.skip(subj) {
			subjects = append(subjects, subj)
		}
	}
	sort.Strings(subjects)
	if n >= 0 && len(subjects) > n {
		subjects = subjects[:n]
	}
	out := make([]jetstream.Consumer, len(subjects))
	for i, subj := range subjects {
		out[i] = s.convs[subj]
	}
	return subjects, out
}

func (s *bulkSource) drop(cons jetstream.Consumer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for subj, c := range s.convs {
		if c == cons {
			delete(s.convs, subj)
		}
	}
}

// pullWindow is how many conversations' pull requests the bulk lane sends
// at once. A round goes through the conversations a window at a time, in
// subject order, rather than pulling from every one at its start: with 256
// conversations at once, pulling from all of them left every consumer with
// messages delivered and waiting, up to a whole round, so the server kept
// rewriting every consumer's state file (half its CPU, BENCHMARKS.md), and
// the waiting messages needed progress reports. The next window's pulls
// are sent before the current window's messages are handed to the
// workers, so the server gathers them while the workers work.
const pullWindow = 8

// pulled is a window's pull requests in flight.
type pulled struct {
	subjects []string
	cons     []jetstream.Consumer
	batches  []jetstream.MessageBatch
}

// run fetches round-robin: each conversation in turn gets up to FetchBatch
// messages, and submitting them blocks while the lane's workers are busy, so
// a conversation's share of the lane is 1/(active conversations) whatever
// its backlog. The conversations are taken pullWindow at a time; a window's
// pull requests are all sent together, so their round trips overlap, and
// before the previous window's batches are handed over. A round that found
// nothing waits for a new conversation or 50ms.
func (s *bulkSource) run(ctx context.Context, p *pool) {
	got := 0
	w := s.pull("")
	for ctx.Err() == nil {
		var next *pulled
		if len(w.subjects) == pullWindow {
			next = s.pull(w.subjects[len(w.subjects)-1])
		}
		got += s.submit(p, w)
		if ctx.Err() != nil {
			if next != nil {
				s.submit(p, next) // fetched already: handled, not left to AckWait
			}
			return
		}
		if next != nil {
			w = next
			continue
		}
		// The round is over.
		if got == 0 {
			select {
			case <-ctx.Done():
			case <-s.wake:
			case <-time.After(50 * time.Millisecond):
			}
		}
		got, w = 0, s.pull("")
	}
}

// pull sends a pull request to each consumer of the window after after.
func (s *bulkSource) pull(after string) *pulled {
	w := &pulled{}
	w.subjects, w.cons = s.window(after, pullWindow)
	w.batches = make([]jetstream.MessageBatch, len(w.cons))
	for i, c := range w.cons {
		b, err := c.FetchNoWait(s.cfg.FetchBatch)
		if err != nil {
			s.fetchFailed(c, err)
			continue
		}
		w.batches[i] = b
	}
	return w
}

// submit hands each batch of w to the workers and returns how many
// messages they held.
func (s *bulkSource) submit(p *pool, w *pulled) int {
	got := 0
	for i, b := range w.batches {
		if b == nil {
			continue
		}
		n, err := p.submitAll(b)
		got += n
		if err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			s.fetchFailed(w.cons[i], err)
		}
	}
	return got
}

func (s *bulkSource) fetchFailed(cons jetstream.Consumer, err error) {
	// A pull request to a consumer that another worker just deleted finds no
	// responder: the same as not found.
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, nats.ErrNoResponders) {
		s.drop(cons)
		return
	}
	if strings.Contains(err.Error(), "MaxAckPending") {
		return // the conversation's in-flight bound: its turn is skipped
	}
	s.log.Warn("bulk fetch failed", "err", err)
}

// pendingTotals sums the lane's consumers' pending and ack-pending counts.
func (s *bulkSource) pendingTotals(ctx context.Context) (pending, ackPending uint64) {
	for _, cons := range s.snapshot() {
		info, err := cons.Info(ctx)
		if err != nil {
			continue
		}
		pending += info.NumPending
		ackPending += uint64(info.NumAckPending)
	}
	return pending, ackPending
}
