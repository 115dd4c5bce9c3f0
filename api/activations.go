package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/sluicehq/sluice/conversation"
	"github.com/sluicehq/sluice/wire"
)

// ActivationsAccepted is the 202 answer to POST
// /v1/conversations/{id}/activations.
type ActivationsAccepted struct {
	Conversation string `json:"conversation"`
	// Accepted is the number of rows of the body, all now stored in the
	// stream and counted in the conversation's accepted.
	Accepted int64 `json:"accepted"`
	// Skipped is how many of them an earlier attempt with the same
	// Idempotency-Key had stored, so this one did not publish them.
	Skipped        int64  `json:"skipped"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// pending is one row published (or skipped) and awaiting its turn in the
// window.
type pending struct {
	row    int64
	digest [32]byte
	fut    jetstream.PubAckFuture // nil: stored by an earlier attempt, not published again
	sent   time.Time              // when fut's publish was sent
}

// ingest is one activation request being published.
type ingest struct {
	c        *Campaigns
	tenant   string
	conv     string
	lane     wire.Lane
	channel  string
	key      string // Idempotency-Key, "" without
	owner    string
	prefix   string
	enqueued time.Time
	// ttl is the conversation's default time-to-live (0: none).
	ttl time.Duration

	// From an earlier attempt with the same key.
	skipThrough int64
	skipHash    [32]byte
	extras0     map[int64]bool

	// The window, oldest first: a ring of capacity PublishWindow.
	ring       []pending
	head, size int

	// Progress, shared with the checkpointer.
	mu          sync.Mutex
	rowsDone    int64    // rows 1..rowsDone stored
	chain       [32]byte // hash chain at rowsDone
	unrecorded  int64    // stored, not yet in conversations.accepted
	extras      []int64  // stored after the first publish failure
	skipped     int64
	pubFailed   error // first publish that could not be stored
	abort       error // set by the checkpointer: stop reading
	lastWritten time.Time
}

// failure is how a request ended early.
type failure struct {
	status int
	typ    string
	title  string
	detail string
	row    int64
	line   int64
	cause  string // metric label
	retry  bool   // Retry-After
}

func (c *Campaigns) postActivations(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	p, _ := PrincipalFrom(r.Context())
	id := r.PathValue("id")
	ndjson, key, ok := c.checkActivationRequest(w, r, id)
	if !ok {
		return
	}
	in, ok := c.openIngest(w, r, p.Tenant, id, key)
	if !ok {
		return
	}
	if key != "" && !c.claimKey(w, r, in, ndjson) {
		return
	}
	// Progress is recorded whether or not the client stays: a disconnect
	// must not leave stored activations uncounted.
	ctx := context.WithoutCancel(r.Context())
	in.lastWritten = time.Now()
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		in.checkpointLoop(ctx, stop)
	}()
	f := in.run(ctx, c.rowReader(r, ndjson))
	close(stop)
	<-stopped
	if f != nil {
		drainBody(w, r)
	}
	c.finish(w, ctx, in, f, start)
}

// checkActivationRequest checks what can be checked before the body is read:
// the conversation id, the body's format, the Idempotency-Key and whether
// intake is paused. It answers and returns ok false when the request ends
// there.
func (c *Campaigns) checkActivationRequest(w http.ResponseWriter, r *http.Request, id string) (ndjson bool, key string, ok bool) {
	if !wire.ValidToken(id) {
		notFound(w, id)
		return false, "", false
	}
	if ndjson, ok = activationFormat(w, r); !ok {
		return false, "", false
	}
	if h := r.Header.Get("Idempotency-Key"); h != "" {
		var err error
		if key, err = parseIdempotencyKey(h); err != nil {
			problem(w, http.StatusBadRequest, ProblemInvalidRequest, "Invalid Idempotency-Key", err.Error())
			return false, "", false
		}
	}
	if c.deps.IntakePaused != nil && c.deps.IntakePaused() {
		w.Header().Set("Retry-After", "30")
		problem(w, http.StatusServiceUnavailable, ProblemIntakePaused, "Intake paused",
			"operators paused the intake of new activations; queued ones are still delivered. Retry later")
		return false, "", false
	}
	return ndjson, key, true
}

// openIngest reads the conversation (404 if the tenant has none by this id,
// 409 if it is stopped) and returns the request's ingest.
func (c *Campaigns) openIngest(w http.ResponseWriter, r *http.Request, tenant, id, key string) (*ingest, bool) {
	unavailable := func(what string, err error) (*ingest, bool) {
		c.log.Error("read "+what+" failed", "tenant", tenant, "conversation", id, "err", err)
		w.Header().Set("Retry-After", "2")
		problem(w, http.StatusServiceUnavailable, ProblemUnavailable, "", "the "+what+" could not be read; retry")
		return nil, false
	}
	row, err := conversation.Load(r.Context(), c.pool, tenant, id)
	lane, channel, state := row.Lane, row.Channel, row.State
	switch {
	case errors.Is(err, conversation.ErrNotFound):
		notFound(w, id)
		return nil, false
	case err != nil:
		return unavailable("conversation", err)
	}
	if c.deps.ConversationState != nil {
		if state, err = c.deps.ConversationState(r.Context(), tenant, id); err != nil {
			return unavailable("conversation's state", err)
		}
	}
	if state == StateStopped {
		problem(w, http.StatusConflict, ProblemConversationStopped, "Conversation stopped",
			"conversation "+id+" is stopped and takes no more activations")
		return nil, false
	}
	in := &ingest{
		c: c, tenant: tenant, conv: id, lane: wire.Lane(lane), channel: channel,
		key: key, owner: randomHex(12), enqueued: time.Now().UTC(), ttl: time.Duration(row.TTLSeconds) * time.Second,
		ring: make([]pending, c.deps.PublishWindow),
	}
	in.prefix = "r" + randomHex(12)
	if key != "" {
		in.prefix = idPrefix(tenant, id, key)
	}
	return in, true
}

// claimKey takes the Idempotency-Key of a keyed request: a request still
// running elsewhere is answered 409, a completed one is replayed; otherwise
// the rows an earlier attempt stored are set to be checked and skipped. It
// returns true when the request goes on to publish.
func (c *Campaigns) claimKey(w http.ResponseWriter, r *http.Request, in *ingest, ndjson bool) bool {
	cl, err := c.claim(r.Context(), in.tenant, in.conv, in.key, in.owner)
	if err != nil {
		c.log.Error("idempotency key lookup failed", "tenant", in.tenant, "conversation", in.conv, "err", err)
		w.Header().Set("Retry-After", "2")
		problem(w, http.StatusServiceUnavailable, ProblemUnavailable, "", "the request could not be recorded; retry")
		return false
	}
	switch cl.state {
	case claimBusy:
		w.Header().Set("Retry-After", strconv.Itoa(int(cl.leaseLeft.Seconds())+1))
		WriteProblem(w, Problem{Type: ProblemIdempotencyInUse, Title: "Idempotency-Key in use", Status: http.StatusConflict,
			Detail:     "a request with this Idempotency-Key is still being published; retry after it ends",
			Extensions: map[string]any{"idempotency_key": in.key}})
		return false
	case reqDone:
		c.replay(w, r, in, ndjson, cl)
		return false
	}
	in.skipThrough, in.skipHash = cl.rowsDone, cl.rowsHash
	in.rowsDone, in.chain = cl.rowsDone, cl.rowsHash
	if len(cl.extras) > 0 {
		in.extras0 = make(map[int64]bool, len(cl.extras))
		for _, x := range cl.extras {
			in.extras0[x] = true
		}
	}
	in.skipped = cl.rowsDone
	if cl.resumed {
		c.log.Info("activation request resumed", "tenant", in.tenant, "conversation", in.conv,
			"id_prefix", in.prefix, "stored_through_row", cl.rowsDone, "also_stored", len(cl.extras))
	}
	return true
}

// expiry is when rw's message expires: its own expires_at, else the
// acceptance time plus the conversation's ttl, else never (nil).
func (in *ingest) expiry(rw row) *time.Time {
	if rw.expiresAt != nil {
		return rw.expiresAt
	}
	if in.ttl > 0 {
		t := in.enqueued.Add(in.ttl)
		return &t
	}
	return nil
}

// rowReader frames the body's rows.
func (c *Campaigns) rowReader(r *http.Request, ndjson bool) rowReader {
	if ndjson {
		return newNDJSONReader(r.Body, c.deps.MaxRowBytes)
	}
	return newArrayReader(r.Body, c.deps.MaxRowBytes)
}

// Bounds of drainBody.
const (
	maxDrainBytes = 64 << 20
	maxDrainTime  = 10 * time.Second
)

// drainBody reads and discards what is left of a body the request stopped
// reading (a bad row), at most maxDrainBytes for at most maxDrainTime,
// before the answer is written. A client still sending, as curl does after
// its "Expect: 100-continue" was answered, then receives the problem
// document: a server that answers and closes with the body unread resets
// the connection under it, and the client sees the reset instead of the
// answer. A body longer than the bound still ends with the connection
// closed.
func drainBody(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(maxDrainTime))
	_, _ = io.CopyN(io.Discard, r.Body, maxDrainBytes)
	_ = rc.SetReadDeadline(time.Time{})
}

// activationFormat reads the body's format from Content-Type: a JSON array
// (application/json, or none) or NDJSON.
func activationFormat(w http.ResponseWriter, r *http.Request) (ndjson, ok bool) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return false, true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil {
		switch mt {
		case "application/json":
			return false, true
		case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines":
			return true, true
		}
	}
	problem(w, http.StatusUnsupportedMediaType, ProblemUnsupportedMedia, "",
		"send a JSON array of rows with Content-Type application/json, or one row per line with Content-Type application/x-ndjson")
	return false, false
}

// run reads, checks and publishes the rows, then waits for the stream to
// acknowledge every publish. It returns nil when every row is stored.
func (in *ingest) run(ctx context.Context, rr rowReader) *failure {
	var (
		verify [32]byte // chain over the rows an earlier attempt stored
		f      *failure
	)
	for f == nil {
		if err := in.stopped(); err != nil {
			f = in.stopFailure(err)
			break
		}
		raw, err := rr.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			f = in.readFailure(rr, err)
			break
		}
		n, line := rr.position()
		var digest [32]byte
		if in.key != "" {
			digest = sha256.Sum256(raw)
		}
		if n <= in.skipThrough {
			verify = chainNext(verify, digest)
			if n == in.skipThrough && verify != in.skipHash {
				f = in.mismatch(n)
			}
			continue
		}
		rw, err := decodeRow(raw, in.c.deps.MaxVarsBytes)
		if err != nil {
			re := err.(*rowError)
			re.row, re.line = n, line
			f = rowFailure(re)
			break
		}
		if in.extras0[n] {
			in.push(ctx, pending{row: n, digest: digest})
			continue
		}
		a := &wire.Activation{
			ID: activationID(in.prefix, n, rw.id), Tenant: in.tenant, Conversation: in.conv,
			Lane: in.lane, Channel: in.channel, To: rw.to, Vars: rw.vars, EnqueuedAt: in.enqueued,
			ExpiresAt: in.expiry(rw),
		}
		fut, sent, err := in.publish(ctx, a)
		if err != nil {
			in.mu.Lock()
			if in.pubFailed == nil {
				in.pubFailed = err
			}
			in.mu.Unlock()
			break
		}
		in.push(ctx, pending{row: n, digest: digest, fut: fut, sent: sent})
	}
	if f == nil && in.skipThrough > 0 {
		if n, _ := rr.position(); n < in.skipThrough {
			f = in.mismatch(n)
		}
	}
	for in.size > 0 {
		in.popOldest(ctx)
	}
	in.mu.Lock()
	pubErr := in.pubFailed
	in.mu.Unlock()
	if pubErr != nil {
		// A publish failure decides the answer over a bad row found after it:
		// the rows before the bad one are not all stored.
		in.c.log.Warn("activation publish failed", "tenant", in.tenant, "conversation", in.conv, "err", pubErr)
		return &failure{status: http.StatusServiceUnavailable, typ: ProblemUnavailable, title: "Publish failed",
			detail: "the stream did not store every row", cause: "publish", retry: true}
	}
	return f
}

// push adds p to the window, first making room by waiting for the oldest.
func (in *ingest) push(ctx context.Context, p pending) {
	if in.size == len(in.ring) {
		in.popOldest(ctx)
	}
	in.ring[(in.head+in.size)%len(in.ring)] = p
	in.size++
}

// popOldest waits for the oldest publish of the window and records it.
// Rows are stored in order as long as every publish succeeds; after the
// first failure, later rows that were stored anyway are extras.
func (in *ingest) popOldest(ctx context.Context) {
	p := in.ring[in.head]
	in.ring[in.head] = pending{}
	in.head = (in.head + 1) % len(in.ring)
	in.size--
	var err error
	if p.fut != nil {
		err = in.c.pub.Await(ctx, p.fut, p.sent, in.c.deps.AckTimeout)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	switch {
	case err != nil:
		if in.pubFailed == nil {
			in.pubFailed = fmt.Errorf("row %d: %w", p.row, err)
		}
		return
	case in.pubFailed == nil:
		in.rowsDone = p.row
		in.chain = chainNext(in.chain, p.digest)
	default:
		in.extras = append(in.extras, p.row)
	}
	if p.fut != nil {
		in.unrecorded++
		in.c.m.accepted.WithLabelValues(string(in.lane)).Inc()
	} else {
		in.skipped++
	}
}

// publish publishes a asynchronously and returns when it was sent. When
// the connection's window of pending publishes (shared by every request) is
// full, it waits for this request's oldest publish, or a moment, and tries
// again.
func (in *ingest) publish(ctx context.Context, a *wire.Activation) (jetstream.PubAckFuture, time.Time, error) {
	for {
		fut, err := in.c.pub.PublishAsync(a)
		if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			// Sent just before PublishAsync returned, which may have
			// waited for room in the window first.
			return fut, time.Now(), err
		}
		if in.size > 0 {
			in.popOldest(ctx)
			in.mu.Lock()
			failed := in.pubFailed
			in.mu.Unlock()
			if failed != nil {
				return nil, time.Time{}, failed
			}
			continue
		}
		if err := in.stopped(); err != nil {
			return nil, time.Time{}, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopped returns why the checkpointer wants the request to stop, if it does.
func (in *ingest) stopped() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.abort
}

// checkpointLoop writes progress every CheckpointInterval until stop, and
// renews the lease of a keyed request even while no row arrives. If progress
// cannot be written for most of a lease, or the lease was taken over, it
// stops the request.
func (in *ingest) checkpointLoop(ctx context.Context, stop <-chan struct{}) {
	t := time.NewTicker(in.c.deps.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		err := in.checkpoint(ctx, reqRunning, nil, false)
		if err == nil {
			continue
		}
		in.mu.Lock()
		if errors.Is(err, errLeaseLost) || time.Since(in.lastWritten) > in.c.deps.LeaseDuration-2*in.c.deps.CheckpointInterval {
			if in.abort == nil {
				in.abort = err
			}
			in.mu.Unlock()
			return
		}
		in.mu.Unlock()
		in.c.log.Warn("could not record activation progress; will retry", "tenant", in.tenant, "conversation", in.conv, "err", err)
	}
}

// checkpoint writes the progress so far. Unless force, it writes only when
// there is something new or a keyed request's lease needs renewing.
func (in *ingest) checkpoint(ctx context.Context, state string, response []byte, force bool) error {
	in.mu.Lock()
	w := progressWrite{rowsDone: in.rowsDone, rowsHash: in.chain, delta: in.unrecorded, state: state, response: response}
	for x := range in.extras0 {
		if x > in.rowsDone && !slices.Contains(in.extras, x) {
			w.extras = append(w.extras, x)
		}
	}
	w.extras = append(w.extras, in.extras...)
	renew := in.key != "" && time.Since(in.lastWritten) > in.c.deps.LeaseDuration/4
	if !force && w.delta == 0 && !renew {
		in.mu.Unlock()
		return nil
	}
	in.unrecorded = 0
	in.mu.Unlock()
	slices.Sort(w.extras)

	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := in.c.writeProgress(wctx, in, w)
	in.mu.Lock()
	defer in.mu.Unlock()
	if err != nil {
		in.unrecorded += w.delta
		return err
	}
	in.lastWritten = time.Now()
	return nil
}

// finish records the outcome and answers.
func (c *Campaigns) finish(w http.ResponseWriter, ctx context.Context, in *ingest, f *failure, start time.Time) {
	in.mu.Lock()
	done, skipped, extras := in.rowsDone, in.skipped, len(in.extras)
	for x := range in.extras0 {
		if x > done && !slices.Contains(in.extras, x) {
			extras++
		}
	}
	in.mu.Unlock()

	var (
		response []byte
		state    = reqFailed
	)
	if f == nil {
		state = reqDone
		response, _ = json.Marshal(ActivationsAccepted{Conversation: in.conv, Accepted: done, Skipped: skipped, IdempotencyKey: in.key})
	}
	// The final write is retried: without it, stored activations would be
	// missing from the conversation's accepted count.
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 500 * time.Millisecond)
		}
		if err = in.checkpoint(ctx, state, response, in.key != ""); err == nil || errors.Is(err, errLeaseLost) {
			break
		}
	}
	log := c.log.With("tenant", in.tenant, "conversation", in.conv, "lane", in.lane, "idempotent", in.key != "",
		"id_prefix", in.prefix, "stored_through_row", done, "skipped", skipped, "elapsed", time.Since(start).Round(time.Millisecond))
	switch {
	case errors.Is(err, errLeaseLost):
		f = in.stopFailure(err)
	case err != nil && in.key != "":
		log.Error("could not record the outcome of an activation request; a retry with its key completes it", "err", err)
		f = &failure{status: http.StatusServiceUnavailable, typ: ProblemUnavailable, title: "Progress not recorded",
			detail: "the rows' progress could not be recorded", cause: "progress", retry: true}
	case err != nil:
		// The rows are queued: an error answer would invite a retry that
		// sends them twice. Say it loudly here instead.
		in.mu.Lock()
		lost := in.unrecorded
		in.mu.Unlock()
		log.Error("activations queued but not counted in conversations.accepted", "uncounted", lost, "err", err)
	}

	if f == nil {
		log.Info("activations accepted", "accepted", done)
		w.Header().Set("Location", "/v1/conversations/"+in.conv)
		writeRaw(w, http.StatusAccepted, response)
		return
	}
	c.m.rowErrors.WithLabelValues(f.cause).Inc()
	log.Info("activation request ended early", "cause", f.cause, "row", f.row, "status", f.status, "also_stored", extras)
	accepted := done + int64(extras)
	ext := map[string]any{
		"accepted":           accepted,
		"stored_through_row": done,
	}
	if f.row > 0 {
		ext["row"] = f.row
	}
	if f.line > 0 {
		ext["line"] = f.line
	}
	if in.key != "" {
		ext["idempotency_key"] = in.key
	}
	if f.retry {
		w.Header().Set("Retry-After", "5")
	}
	WriteProblem(w, Problem{Type: f.typ, Title: f.title, Status: f.status, Extensions: ext,
		Detail: f.detail + ". " + progressSentence(done, int64(extras), in.key != "")})
}

// progressSentence tells the client what is queued and how to continue.
func progressSentence(done, extras int64, keyed bool) string {
	var s string
	switch {
	case done == 0 && extras == 0:
		return "Nothing from this body is queued."
	case done == 0:
		s = fmt.Sprintf("%d later row(s) are queued and will be delivered", extras)
	default:
		s = fmt.Sprintf("Rows 1-%d are queued and will be delivered", done)
		if extras > 0 {
			s += fmt.Sprintf(", and %d later row(s)", extras)
		}
	}
	if keyed {
		return s + ". Send the whole body again with the same Idempotency-Key: the rows already queued are checked and skipped, the rest published."
	}
	return s + fmt.Sprintf(". Without an Idempotency-Key a retry sends every row again: send only the rows after row %d, or use an Idempotency-Key.", done)
}

// replay answers a completed request again, once the body is checked to be
// the same; nothing is published.
func (c *Campaigns) replay(w http.ResponseWriter, r *http.Request, in *ingest, ndjson bool, cl claimResult) {
	rr := c.rowReader(r, ndjson)
	var chain [32]byte
	same := true
	for {
		raw, err := rr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			same = false
			break
		}
		chain = chainNext(chain, sha256.Sum256(raw))
	}
	if n, _ := rr.position(); !same || n != cl.rowsDone || chain != cl.rowsHash {
		drainBody(w, r)
		WriteProblem(w, Problem{Type: ProblemIdempotencyMismatch, Title: "Idempotency-Key reused", Status: http.StatusUnprocessableEntity,
			Detail: "this Idempotency-Key completed a request with a different body; nothing was published. " +
				"Use a new key for a new request.",
			Extensions: map[string]any{"idempotency_key": in.key}})
		return
	}
	// The stored answer, encoded as the first one was (jsonb reorders keys).
	var answer ActivationsAccepted
	body, err := cl.response, json.Unmarshal(cl.response, &answer)
	if err == nil {
		body, err = json.Marshal(answer)
	}
	if err != nil {
		c.log.Error("stored answer of an activation request is unreadable", "tenant", in.tenant, "conversation", in.conv, "err", err)
	}
	w.Header().Set("Idempotent-Replayed", "true")
	w.Header().Set("Location", "/v1/conversations/"+in.conv)
	writeRaw(w, http.StatusAccepted, body)
}

func (in *ingest) mismatch(n int64) *failure {
	return &failure{status: http.StatusUnprocessableEntity, typ: ProblemIdempotencyMismatch, title: "Idempotency-Key reused",
		detail: fmt.Sprintf("rows 1-%d of this body differ from the rows an earlier request with this Idempotency-Key queued "+
			"(or the body has fewer rows); nothing was published", in.skipThrough),
		row: n, cause: "mismatch"}
}

func (in *ingest) stopFailure(err error) *failure {
	if errors.Is(err, errLeaseLost) {
		return &failure{status: http.StatusConflict, typ: ProblemIdempotencyInUse, title: "Idempotency-Key taken over",
			detail: "another request with this Idempotency-Key took over while this one could not record its progress",
			cause:  "progress"}
	}
	return &failure{status: http.StatusServiceUnavailable, typ: ProblemUnavailable, title: "Progress not recorded",
		detail: "the request's progress could not be recorded, so it was stopped", cause: "progress", retry: true}
}

func (in *ingest) readFailure(rr rowReader, err error) *failure {
	var re *rowError
	if errors.As(err, &re) {
		return rowFailure(re)
	}
	n, line := rr.position()
	return &failure{status: http.StatusBadRequest, typ: ProblemBodyUnreadable, title: "Body unreadable",
		detail: "the request body could not be read after row " + strconv.FormatInt(n, 10) + " (connection lost?)",
		row:    n + 1, line: line, cause: "body"}
}

func rowFailure(re *rowError) *failure {
	f := &failure{row: re.row, line: re.line, cause: "row", detail: re.Error()}
	switch re.kind {
	case rowTooLarge:
		f.status, f.typ, f.title = http.StatusRequestEntityTooLarge, ProblemRowTooLarge, "Row too large"
	case rowInvalid:
		f.status, f.typ, f.title = http.StatusUnprocessableEntity, ProblemInvalidRow, "Invalid row"
	default:
		f.status, f.typ, f.title = http.StatusBadRequest, ProblemMalformedRow, "Malformed row"
	}
	return f
}

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
