package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDevEndToEnd starts `sluice dev` as `make run` does (on free ports, in a
// temporary data dir) and runs the README's tour against it, checking what
// the README says each step prints. Then it stops it with a cancel, as
// Ctrl-C does, starts it again on the same data dir, and sends to the
// conversations the first round made.
func TestDevEndToEnd(t *testing.T) {
	dataDir := t.TempDir()
	// As root, Postgres runs as the postgres user, which must be able to
	// reach the data dir; t.TempDir's parents are 0700.
	for _, d := range []string{filepath.Dir(dataDir), dataDir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	for round := 1; round <= 2; round++ {
		ctx, cancel := context.WithCancel(context.Background())
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			err := runDev(ctx, []string{"--data-dir", dataDir, "--nats-port", "-1", "--http-addr", "127.0.0.1:0", "--pg-port", "0"}, pw, io.Discard)
			pw.Close()
			done <- err
		}()
		var natsURL, httpBase string
		sc := bufio.NewScanner(pr)
		natsRe := regexp.MustCompile(`NATS JetStream\s+(nats://\S+)`)
		httpRe := regexp.MustCompile(`HTTP\s+(http://\S+)`)
		for sc.Scan() && (natsURL == "" || httpBase == "") {
			if m := natsRe.FindStringSubmatch(sc.Text()); m != nil {
				natsURL = m[1]
			}
			if m := httpRe.FindStringSubmatch(sc.Text()); m != nil {
				httpBase = m[1]
			}
		}
		go func() { _, _ = io.Copy(io.Discard, pr) }()
		if natsURL == "" || httpBase == "" {
			cancel()
			t.Fatalf("round %d: dev did not print its addresses (err %v)", round, <-done)
		}

		if code := getStatus(t, httpBase+"/readyz"); code != http.StatusOK {
			t.Fatalf("round %d: /readyz = %d", round, code)
		}
		if round == 1 {
			readmeTour(t, ctx, httpBase)
		} else {
			var out bytes.Buffer
			if err := runSend(ctx, []string{"--api-url", httpBase, "--channel", "email", "--to", "bob@example.com"}, &out, io.Discard); err != nil {
				t.Fatalf("round 2: send to the existing conversation hello: %v", err)
			}
			waitMetrics(t, httpBase, `sluice_messages_total{channel="email",lane="transactional",outcome="delivered"} 1`)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: dev stopped with %v", round, err)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("round %d: dev did not stop within 60s of the cancel", round)
		}
	}
}

// readmeTour runs the README's "A short tour" against a dev node at base:
// the same commands (sluice send, ctl, and the curl requests made with Go's
// client) and the outcomes the README's comments claim.
func readmeTour(t *testing.T, ctx context.Context, base string) {
	t.Helper()
	run := func(f func(context.Context, []string, io.Writer, io.Writer) error, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := f(ctx, append(args, "--api-url", base), &out, &errOut); err != nil {
			t.Fatalf("%v: %v %s", args, err, errOut.String())
		}
		return out.String()
	}
	// Sending to a conversation that does not exist is refused, naming --create.
	var errOut bytes.Buffer
	if err := runSend(ctx, []string{"--api-url", base, "--channel", "email", "--to", "alice@example.com"}, io.Discard, &errOut); err == nil || !strings.Contains(err.Error(), "--create") {
		t.Fatalf("send without --create to a missing conversation: %v, want a refusal naming --create", err)
	}
	if out := run(runSend, "--create", "--channel", "email", "--to", "alice@example.com"); !strings.Contains(out, "accepted 1 activation(s) for conversation hello") {
		t.Fatalf("send: %q", out)
	}
	run(runSend, "--create", "--conversation", "storm", "--lane", "bulk", "--channel", "sms", "--to", "12345", "--count", "1000")
	waitMetrics(t, base,
		`sluice_messages_total{channel="email",lane="transactional",outcome="delivered"} 1`,
		`sluice_messages_total{channel="sms",lane="bulk",outcome="invalid"} 1000`)
	for _, conv := range []string{"hello", "storm"} {
		c := tourCounts(t, base, conv)
		if c.Pending != 0 || c.Accepted != c.Delivered+c.Invalid+c.Failed+c.Purged {
			t.Errorf("%s: %+v, want accepted = delivered + invalid + failed + purged, pending 0", conv, c)
		}
	}
	waitFor(t, 10*time.Second, "storm to be quarantined", func() bool {
		return strings.Contains(run(runCtl, "conversation", "list", "--state", "quarantined"), "storm")
	})

	postTour(t, base, "/v1/conversations", "application/json", `{"id":"spring","name":"Spring sale","channel":"email","lane":"bulk",
       "template":{"subject":"Hi {{.name}}","text":"Spring is here, {{.name}}."}}`, http.StatusCreated)
	rows := "{\"to\":\"ann@example.com\",\"vars\":{\"name\":\"Ann\"}}\n{\"to\":\"not-an-email\"}\n{\"to\":\"\"}\n"
	for range 2 { // a retry with the same key publishes nothing
		if body := postTour(t, base, "/v1/conversations/spring/activations", "application/x-ndjson", rows, http.StatusAccepted); !strings.Contains(body, `"accepted":3`) {
			t.Fatalf("activations: %s", body)
		}
	}
	var c countsView
	waitFor(t, 30*time.Second, "spring's counts to settle", func() bool { c = tourCounts(t, base, "spring"); return c.Pending == 0 })
	if c.Accepted != 3 || c.Delivered != 1 || c.Invalid != 2 || c.InvalidReasons["empty"] != 1 || c.InvalidReasons["syntax"] != 1 {
		t.Errorf("spring: %+v, want accepted 3, delivered 1, invalid 2 {empty, syntax}", c)
	}
	if out := run(runCtl, "errors", "top", "--window", "5m"); !strings.Contains(out, "storm") || !strings.Contains(out, "spring") {
		t.Errorf("errors top: %q, want storm and spring", out)
	}
	if out := run(runCtl, "errorlog", "set", "sample", "--first", "100", "--then", "1000"); !strings.Contains(out, "sample") {
		t.Errorf("errorlog set: %q", out)
	}
}

// countsView is the counts member of GET /v1/conversations/{id}.
type countsView struct {
	Accepted, Delivered, Invalid, Failed, Purged, Pending int64
	InvalidReasons                                        map[string]int64 `json:"invalid_reasons"`
}

func tourCounts(t *testing.T, base, conv string) countsView {
	t.Helper()
	var got struct{ Counts countsView }
	if err := json.Unmarshal([]byte(get(t, base+"/v1/conversations/"+conv)), &got); err != nil {
		t.Fatal(err)
	}
	return got.Counts
}

func postTour(t *testing.T, base, path, ctype, body string, want int) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Idempotency-Key", "k1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("POST %s: %d %s, want %d", path, resp.StatusCode, data, want)
	}
	return string(data)
}

// waitMetrics waits until /metrics at base shows every one of want.
func waitMetrics(t *testing.T, base string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		body := get(t, base+"/metrics")
		missing := ""
		for _, w := range want {
			if !strings.Contains(body, w) {
				missing = w
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics never showed %s", missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
