package main

import (
	"bufio"
	"bytes"
	"context"
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
// temporary data dir), sends one valid and one invalid activation with
// `sluice send`, and sees them in /metrics as delivered and invalid. Then it
// stops it with a cancel, as Ctrl-C does, and starts it again on the same
// data dir.
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
		var out, errOut bytes.Buffer
		if err := runSend(ctx, []string{"--nats-url", natsURL, "--channel", "email", "--to", "alice@example.com"}, &out, &errOut); err != nil {
			t.Fatalf("send: %v %s", err, errOut.String())
		}
		if err := runSend(ctx, []string{"--nats-url", natsURL, "--lane", "bulk", "--channel", "sms", "--to", "12345", "--count", "3"}, &out, &errOut); err != nil {
			t.Fatalf("send: %v %s", err, errOut.String())
		}
		want := []string{
			`sluice_messages_total{channel="email",lane="transactional",outcome="delivered"} 1`,
			`sluice_messages_total{channel="sms",lane="bulk",outcome="invalid"} 3`,
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			body := get(t, httpBase+"/metrics")
			missing := ""
			for _, w := range want {
				if !strings.Contains(body, w) {
					missing = w
				}
			}
			if missing == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: /metrics never showed %s", round, missing)
			}
			time.Sleep(50 * time.Millisecond)
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
