package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/wire"
)

// TestActivateNDJSON100k queues 100,000 recipients (10,000 with -short) in
// one NDJSON request and finds exactly that many messages in the stream, each
// a well-formed envelope, and the same number accepted in Postgres.
func TestActivateNDJSON100k(t *testing.T) {
	t.Parallel()
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	f := setup(t)
	key := f.key("acme", ScopeSend, ScopeRead)
	f.conversation(key, "spring")

	start := time.Now()
	r := f.activate(key, "spring", "batch-1", ndjsonRows(1, n, nil), true)
	elapsed := time.Since(start)
	if r.status != http.StatusAccepted {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	got := r.json(t)
	if got["accepted"] != float64(n) || got["skipped"] != float64(0) || got["conversation"] != "spring" || got["idempotency_key"] != "batch-1" {
		t.Fatalf("answer = %v", got)
	}
	t.Logf("%d rows accepted in %s (%.0f rows/s)", n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	if m := f.streamMsgs(); m != uint64(n) {
		t.Fatalf("stream holds %d messages, want %d", m, n)
	}
	if a := f.accepted("acme", "spring"); a != int64(n) {
		t.Fatalf("conversations.accepted = %d, want %d", a, n)
	}

	// The envelopes: first and last row.
	prefix := idPrefix("acme", "spring", "batch-1")
	for _, seq := range []uint64{1, uint64(n)} {
		msg, err := f.stream.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		a, err := wire.Decode(msg.Data, 0)
		if err != nil {
			t.Fatal(err)
		}
		row := int(seq)
		want := wire.Activation{
			Version: wire.SchemaVersion, ID: fmt.Sprintf("%s-%d", prefix, row), Tenant: "acme", Conversation: "spring",
			Lane: wire.LaneBulk, Channel: "email", To: fmt.Sprintf("user%d@example.com", row),
		}
		if a.ID != want.ID || a.Tenant != want.Tenant || a.Conversation != want.Conversation || a.Lane != want.Lane ||
			a.Channel != want.Channel || a.To != want.To || a.Vars["name"] != fmt.Sprintf("User %d", row) || a.EnqueuedAt.IsZero() {
			t.Fatalf("message %d = %+v, want %+v", seq, a, want)
		}
		if msg.Subject != wire.Subject(wire.LaneBulk, "acme", "spring") || msg.Header.Get(jetstream.MsgIDHeader) != want.ID {
			t.Fatalf("message %d: subject %s, Nats-Msg-Id %q", seq, msg.Subject, msg.Header.Get(jetstream.MsgIDHeader))
		}
	}

	// GET shows the same count, all pending.
	c := f.do(http.MethodGet, "/v1/conversations/spring", key, nil).json(t)
	counts := c["counts"].(map[string]any)
	if counts["accepted"] != float64(n) || counts["pending"] != float64(n) {
		t.Fatalf("counts = %v", counts)
	}
}

// TestActivateJSONArray queues rows given as a JSON array, with vars and the
// client's row ids, without an Idempotency-Key.
func TestActivateJSONArray(t *testing.T) {
	t.Parallel()
	f := setup(t)
	key := f.key("acme", ScopeSend)
	f.conversation(key, "welcome")
	body := `[
		{"to": "a@example.com", "vars": {"name": "A"}, "id": "cust-1"},
		{"to": ""},
		{"to": "not an address", "vars": null}
	]`
	r := f.activate(key, "welcome", "", strings.NewReader(body), false)
	if r.status != http.StatusAccepted {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if got := r.json(t); got["accepted"] != float64(3) || got["idempotency_key"] != nil {
		t.Fatalf("answer = %v", got)
	}
	if m := f.streamMsgs(); m != 3 {
		t.Fatalf("stream holds %d, want 3", m)
	}
	msg, err := f.stream.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	a, err := wire.Decode(msg.Data, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a.ID, "r") || !strings.HasSuffix(a.ID, "-1-cust-1") || a.To != "a@example.com" || a.Vars["name"] != "A" {
		t.Fatalf("activation = %+v", a)
	}
	// Empty and invalid addresses are queued: the workers count them invalid.
	if a := f.accepted("acme", "welcome"); a != 3 {
		t.Fatalf("accepted = %d", a)
	}
	// An empty array is fine.
	if r := f.activate(key, "welcome", "", strings.NewReader(" [ ] "), false); r.status != http.StatusAccepted || r.json(t)["accepted"] != float64(0) {
		t.Fatalf("empty array: %d %s", r.status, r.body)
	}
}

// TestIdempotentRetry: a retry with the same key publishes nothing twice,
// both inside the stream's duplicate window and after it (simulated by a
// fresh stream, which remembers no id: only the Postgres record prevents
// the republish), and replays the first answer.
func TestIdempotentRetry(t *testing.T) {
	t.Parallel()
	f := setup(t)
	key := f.key("acme", ScopeSend)
	f.conversation(key, "promo")
	const n = 2000

	first := f.activate(key, "promo", "order-42", ndjsonRows(1, n, nil), true)
	if first.status != http.StatusAccepted {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	for _, round := range []string{"inside the window", "after the window"} {
		if round == "after the window" {
			f.resetStream()
		}
		before := f.streamMsgs()
		again := f.activate(key, "promo", "order-42", ndjsonRows(1, n, nil), true)
		if again.status != http.StatusAccepted || again.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("%s: retry %d (replayed %q): %s", round, again.status, again.header.Get("Idempotent-Replayed"), again.body)
		}
		if string(again.body) != string(first.body) {
			t.Fatalf("%s: retry answered %s, first %s", round, again.body, first.body)
		}
		if m := f.streamMsgs(); m != before {
			t.Fatalf("%s: the retry published %d messages", round, m-before)
		}
	}
	if a := f.accepted("acme", "promo"); a != n {
		t.Fatalf("accepted = %d, want %d", a, n)
	}

	// The same key with another body is refused, and publishes nothing.
	other := f.activate(key, "promo", "order-42", ndjsonRows(1, n+1, nil), true)
	other.problem(t, http.StatusUnprocessableEntity, ProblemIdempotencyMismatch)
	if m := f.streamMsgs(); m != 0 {
		t.Fatalf("a reused key published %d messages", m)
	}
	// A quoted key is the same key (structured-field string).
	if r := f.activate(key, "promo", `"order-42"`, ndjsonRows(1, n, nil), true); r.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("quoted key: %d %s", r.status, r.body)
	}
	// Keys are per conversation: the same key elsewhere is a new request.
	f.conversation(key, "promo2")
	if r := f.activate(key, "promo2", "order-42", ndjsonRows(1, 10, nil), true); r.status != http.StatusAccepted || r.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("other conversation: %d %s", r.status, r.body)
	}
}

// TestBadRowThenResume: a malformed row ends the request with a problem
// naming it and saying how many rows are queued; the client fixes the row and
// sends the whole body again with the same key, after the duplicate window:
// exactly the remaining rows are published.
func TestBadRowThenResume(t *testing.T) {
	t.Parallel()
	f := setup(t, func(d *CampaignDeps) { d.PublishWindow = 64 })
	key := f.key("acme", ScopeSend, ScopeRead)
	f.conversation(key, "news")
	const n, bad = 3000, 2001

	r := f.activate(key, "news", "upload-7", ndjsonRows(1, n, map[int]string{bad: `{"to": "x@example.com",`}), true)
	p := r.problem(t, http.StatusBadRequest, ProblemMalformedRow)
	if p["row"] != float64(bad) || p["line"] != float64(bad) || p["accepted"] != float64(bad-1) ||
		p["stored_through_row"] != float64(bad-1) || p["idempotency_key"] != "upload-7" {
		t.Fatalf("problem = %v", p)
	}
	if d := p["detail"].(string); !strings.Contains(d, "row 2001") || !strings.Contains(d, "Rows 1-2000 are queued") {
		t.Fatalf("detail = %q", d)
	}
	if m := f.streamMsgs(); m != bad-1 {
		t.Fatalf("stream holds %d, want %d", m, bad-1)
	}
	if a := f.accepted("acme", "news"); a != bad-1 {
		t.Fatalf("accepted = %d, want %d", a, bad-1)
	}

	// A body whose first rows differ is refused before anything is published.
	f.resetStream()
	changed := f.activate(key, "news", "upload-7", ndjsonRows(2, n+1, nil), true)
	changed.problem(t, http.StatusUnprocessableEntity, ProblemIdempotencyMismatch)
	if m := f.streamMsgs(); m != 0 {
		t.Fatalf("a changed body published %d", m)
	}

	fixed := f.activate(key, "news", "upload-7", ndjsonRows(1, n, nil), true)
	if fixed.status != http.StatusAccepted {
		t.Fatalf("fixed: %d %s", fixed.status, fixed.body)
	}
	if got := fixed.json(t); got["accepted"] != float64(n) || got["skipped"] != float64(bad-1) {
		t.Fatalf("answer = %v", got)
	}
	if m := f.streamMsgs(); m != n-(bad-1) {
		t.Fatalf("stream holds %d after the resume, want %d", m, n-(bad-1))
	}
	first, err := f.stream.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if id := first.Header.Get(jetstream.MsgIDHeader); !strings.HasSuffix(id, fmt.Sprintf("-%d", bad)) {
		t.Fatalf("first message after resume has id %s, want row %d", id, bad)
	}
	if a := f.accepted("acme", "news"); a != n {
		t.Fatalf("accepted = %d, want %d", a, n)
	}
}

// TestResumeAfterCrash: an attempt that crashed after the stream stored rows
// it never recorded is taken over by the retry; the stream's duplicate
// window stores those rows once, and they are counted exactly once.
func TestResumeAfterCrash(t *testing.T) {
	t.Parallel()
	f := setup(t)
	key := f.key("acme", ScopeSend)
	f.conversation(key, "crash")
	const n, recorded, stored = 500, 200, 350
	ctx := context.Background()

	// The crashed attempt: rows 1..350 stored, 1..200 recorded and counted.
	prefix := idPrefix("acme", "crash", "k1")
	pub := orchestrator.NewPublisher(f.js, 0)
	var chain [32]byte
	rows := ndjsonLines(1, n)
	for i := 1; i <= stored; i++ {
		var rw wireRow
		if err := json.Unmarshal([]byte(rows[i-1]), &rw); err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish(ctx, &wire.Activation{ID: activationID(prefix, int64(i), ""), Tenant: "acme",
			Conversation: "crash", Lane: wire.LaneBulk, Channel: "email", To: *rw.To, Vars: rw.Vars,
			EnqueuedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if i <= recorded {
			chain = chainNext(chain, sha256.Sum256([]byte(rows[i-1])))
		}
	}
	if _, err := f.db.Pool.Exec(ctx, `INSERT INTO activation_requests
		(tenant, conversation, idempotency_key, state, owner, lease_until, rows_done, rows_hash, accepted)
		VALUES ('acme', 'crash', 'k1', 'running', 'dead', now() - interval '1 second', $1, $2, $1)`,
		recorded, chain[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.Pool.Exec(ctx, `UPDATE conversations SET accepted = $1 WHERE tenant = 'acme' AND id = 'crash'`, recorded); err != nil {
		t.Fatal(err)
	}

	r := f.activate(key, "crash", "k1", strings.NewReader(strings.Join(rows, "\n")), true)
	if r.status != http.StatusAccepted {
		t.Fatalf("retry: %d %s", r.status, r.body)
	}
	if got := r.json(t); got["accepted"] != float64(n) || got["skipped"] != float64(recorded) {
		t.Fatalf("answer = %v", got)
	}
	if m := f.streamMsgs(); m != n {
		t.Fatalf("stream holds %d, want %d: rows stored by the crashed attempt were stored twice", m, n)
	}
	if a := f.accepted("acme", "crash"); a != n {
		t.Fatalf("accepted = %d, want %d", a, n)
	}
}

func ndjsonLines(first, last int) []string {
	b, _ := io.ReadAll(ndjsonRows(first, last, nil))
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// TestStreamsBeforeBodyEnds: rows are published as they arrive, long before
// the body ends, so a body of any size needs no more memory than the window.
// A second request with the same key meanwhile is told the key is in use.
func TestStreamsBeforeBodyEnds(t *testing.T) {
	t.Parallel()
	f := setup(t, func(d *CampaignDeps) { d.PublishWindow = 256 })
	key := f.key("acme", ScopeSend)
	f.conversation(key, "live")
	const sent = 5000

	pr, pw := io.Pipe()
	defer pw.Close()
	done := make(chan response, 1)
	go func() { done <- f.activate(key, "live", "stream-1", pr, true) }()
	if _, err := io.Copy(pw, ndjsonRows(1, sent, nil)); err != nil {
		t.Fatal(err)
	}
	// The body is still open: every row written so far gets published.
	waitFor(t, "the rows sent so far to be in the stream", 20*time.Second, func() bool { return f.streamMsgs() == sent })
	waitFor(t, "progress to be recorded", 10*time.Second, func() bool { return f.accepted("acme", "live") > 0 })

	busy := f.activate(key, "live", "stream-1", strings.NewReader(`{"to":"a@example.com"}`), true)
	busy.problem(t, http.StatusConflict, ProblemIdempotencyInUse)
	if busy.header.Get("Retry-After") == "" {
		t.Fatal("409 without Retry-After")
	}

	if _, err := io.Copy(pw, ndjsonRows(sent+1, 2*sent, nil)); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	r := <-done
	if r.status != http.StatusAccepted || r.json(t)["accepted"] != float64(2*sent) {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if m := f.streamMsgs(); m != 2*sent {
		t.Fatalf("stream holds %d", m)
	}
}

// TestClientGoneMidBody: a client that disconnects mid-body leaves the rows
// it sent queued and counted; its retry with the key completes the request.
func TestClientGoneMidBody(t *testing.T) {
	t.Parallel()
	f := setup(t)
	key := f.key("acme", ScopeSend)
	f.conversation(key, "flaky")
	const sent, n = 1000, 1500

	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.base+"/v1/conversations/flaky/activations", pr)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Idempotency-Key", "flaky-1")
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	if _, err := io.Copy(pw, ndjsonRows(1, sent, nil)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rows sent to be in the stream", 20*time.Second, func() bool { return f.streamMsgs() == sent })
	cancel()
	pw.CloseWithError(io.ErrUnexpectedEOF)
	<-errc
	waitFor(t, "the server to record the rows", 20*time.Second, func() bool { return f.accepted("acme", "flaky") == sent })

	r := f.activate(key, "flaky", "flaky-1", ndjsonRows(1, n, nil), true)
	if r.status != http.StatusAccepted || r.json(t)["skipped"] != float64(sent) {
		t.Fatalf("retry: %d %s", r.status, r.body)
	}
	if m, a := f.streamMsgs(), f.accepted("acme", "flaky"); m != n || a != n {
		t.Fatalf("stream %d, accepted %d, want %d", m, a, n)
	}
}

// TestBadRows: each kind of bad row is answered with the status and problem
// type of its kind, naming the row; nothing after it is published.
func TestBadRows(t *testing.T) {
	t.Parallel()
	f := setup(t, func(d *CampaignDeps) { d.MaxRowBytes = 1024 })
	key := f.key("acme", ScopeSend)
	f.conversation(key, "bad")
	ok := `{"to":"a@example.com"}`
	big := `{"to":"a@example.com","vars":{"x":"` + strings.Repeat("x", 2000) + `"}}`
	cases := []struct {
		name     string
		ndjson   bool
		body     string
		status   int
		typ      string
		row      float64
		line     float64
		accepted float64
	}{
		{"ndjson truncated JSON", true, ok + "\n" + ok + "\n{\"to\": \n", 400, ProblemMalformedRow, 3, 3, 2},
		{"ndjson not JSON", true, "hello\n", 400, ProblemMalformedRow, 1, 1, 0},
		{"ndjson two values on a line", true, ok + " " + ok + "\n", 400, ProblemMalformedRow, 1, 1, 0},
		{"ndjson blank lines are not rows", true, ok + "\n\n  \n" + `{"vars":{}}` + "\n", 422, ProblemInvalidRow, 2, 4, 1},
		{"ndjson missing to", true, `{"vars":{"a":"b"}}`, 422, ProblemInvalidRow, 1, 1, 0},
		{"ndjson to not a string", true, `{"to": 5}`, 422, ProblemInvalidRow, 1, 1, 0},
		{"ndjson unknown field", true, ok + "\n" + `{"to":"a@example.com","email":"b"}`, 422, ProblemInvalidRow, 2, 2, 1},
		{"ndjson vars not strings", true, `{"to":"a@example.com","vars":{"n":1}}`, 422, ProblemInvalidRow, 1, 1, 0},
		{"ndjson bad row id", true, `{"to":"a@example.com","id":"a b"}`, 422, ProblemInvalidRow, 1, 1, 0},
		{"ndjson array row", true, `["a@example.com"]`, 422, ProblemInvalidRow, 1, 1, 0},
		{"ndjson row too large", true, ok + "\n" + big + "\n" + ok, 413, ProblemRowTooLarge, 2, 2, 1},
		{"array not an array", false, ok, 400, ProblemMalformedRow, 1, 0, 0},
		{"array empty body", false, "", 400, ProblemMalformedRow, 1, 0, 0},
		{"array malformed element", false, "[" + ok + ", {\"to\" \"x\"}]", 400, ProblemMalformedRow, 2, 0, 1},
		{"array missing to", false, "[" + ok + "," + ok + ", {}]", 422, ProblemInvalidRow, 3, 0, 2},
		{"array element too large", false, "[" + ok + "," + big + "]", 413, ProblemRowTooLarge, 2, 0, 1},
		{"array huge element is not buffered", false, "[" + ok + `,{"to":"` + strings.Repeat("y", 1<<20) + `"}]`, 413, ProblemRowTooLarge, 2, 0, 1},
		{"array unterminated", false, "[" + ok + "," + ok, 400, ProblemMalformedRow, 3, 0, 2},
		{"array data after the end", false, "[" + ok + "] x", 400, ProblemMalformedRow, 2, 0, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := f.streamMsgs()
			r := f.activate(key, "bad", "", strings.NewReader(tc.body), tc.ndjson)
			p := r.problem(t, tc.status, tc.typ)
			if p["row"] != tc.row || p["accepted"] != tc.accepted || p["stored_through_row"] != tc.accepted {
				t.Fatalf("problem = %v, want row %v accepted %v", p, tc.row, tc.accepted)
			}
			if tc.line > 0 && p["line"] != tc.line {
				t.Fatalf("line = %v, want %v", p["line"], tc.line)
			}
			if tc.row > 0 && !strings.Contains(p["detail"].(string), fmt.Sprintf("row %d", int(tc.row))) {
				t.Fatalf("detail %q does not name row %v", p["detail"], tc.row)
			}
			if m := f.streamMsgs() - before; m != uint64(tc.accepted) {
				t.Fatalf("published %d, want %v", m, tc.accepted)
			}
		})
	}

	unsupported := f.do(http.MethodPost, "/v1/conversations/bad/activations", key, strings.NewReader("to=a"),
		header("Content-Type", "application/x-www-form-urlencoded"))
	unsupported.problem(t, http.StatusUnsupportedMediaType, ProblemUnsupportedMedia)

	badKey := f.activate(key, "bad", "caf\u00e9", strings.NewReader("[]"), false)
	badKey.problem(t, http.StatusBadRequest, ProblemInvalidRequest)

	unknown := f.activate(key, "nope", "", strings.NewReader("[]"), false)
	unknown.problem(t, http.StatusNotFound, ProblemNotFound)
}

// TestStoppedConversation takes no activations, whether the state comes
// from Postgres or from the control plane's hook.
func TestStoppedConversation(t *testing.T) {
	t.Parallel()
	f := setup(t)
	key := f.key("acme", ScopeSend, ScopeRead)
	f.conversation(key, "old")
	if _, err := f.db.Pool.Exec(context.Background(), `UPDATE conversations SET state = 'stopped' WHERE id = 'old'`); err != nil {
		t.Fatal(err)
	}
	r := f.activate(key, "old", "", strings.NewReader(`[{"to":"a@example.com"}]`), false)
	r.problem(t, http.StatusConflict, ProblemConversationStopped)
	if f.streamMsgs() != 0 {
		t.Fatal("published to a stopped conversation")
	}

	states := map[string]string{"live": StateStopped}
	h := setup(t, func(d *CampaignDeps) {
		d.ConversationState = func(_ context.Context, tenant, id string) (string, error) {
			if s, ok := states[id]; ok && tenant == "acme" {
				return s, nil
			}
			return StateActive, nil
		}
	})
	key = h.key("acme", ScopeSend, ScopeRead)
	h.conversation(key, "live")
	h.activate(key, "live", "", strings.NewReader(`[{"to":"a@example.com"}]`), false).problem(t, http.StatusConflict, ProblemConversationStopped)
	states["live"] = StatePaused
	if got := h.do(http.MethodGet, "/v1/conversations/live", key, nil).json(t); got["state"] != StatePaused {
		t.Fatalf("state = %v, want the hook's", got["state"])
	}
	// A paused conversation takes activations: they wait in the queue.
	if r := h.activate(key, "live", "", strings.NewReader(`[{"to":"a@example.com"}]`), false); r.status != http.StatusAccepted {
		t.Fatalf("paused: %d %s", r.status, r.body)
	}
}

// TestIntakePaused: while intake is paused, activations are answered 503
// with Retry-After and nothing is published.
func TestIntakePaused(t *testing.T) {
	t.Parallel()
	var paused atomic.Bool
	paused.Store(true)
	f := setup(t, func(d *CampaignDeps) { d.IntakePaused = paused.Load })
	key := f.key("acme", ScopeSend)
	f.conversation(key, "c")
	r := f.activate(key, "c", "k", strings.NewReader(`[{"to":"a@example.com"}]`), false)
	r.problem(t, http.StatusServiceUnavailable, ProblemIntakePaused)
	if r.header.Get("Retry-After") == "" || f.streamMsgs() != 0 {
		t.Fatalf("Retry-After %q, published %d", r.header.Get("Retry-After"), f.streamMsgs())
	}
	paused.Store(false)
	if r := f.activate(key, "c", "k", strings.NewReader(`[{"to":"a@example.com"}]`), false); r.status != http.StatusAccepted {
		t.Fatalf("resumed: %d %s", r.status, r.body)
	}
}
