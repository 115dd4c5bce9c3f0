package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestWorkerRSSBench measures a `sluice serve --worker` process alone
// through a backlog, as issue 14 asks: the worker is its own OS process
// (real SMTP provider to a sink in this test's process, Postgres, embedded
// NATS here), and `sluice loadtest --metrics-url` against it reads its
// process_resident_memory_bytes every second and reports the peak (rss_MiB).
// Only with SLUICE_RSS_BENCH=<messages>, e.g.
//
//	SLUICE_RSS_BENCH=8000000 go test -run TestWorkerRSSBench -v -timeout 2h ./cmd/sluice/
func TestWorkerRSSBench(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SLUICE_RSS_BENCH"))
	if n <= 0 {
		t.Skip("a measurement, not a test: set SLUICE_RSS_BENCH to the number of messages")
	}
	k := startKillBench(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	startWorkerAt(t, k.natsURL, k.db.URL, k.smtp.Addr(), addr)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker did not get ready: %v", err)
		}
	}
	report := t.TempDir()
	var out strings.Builder
	err = runLoadtest(context.Background(), []string{"--nats-url", k.natsURL, "--database-url", k.db.URL,
		"--metrics-url", "http://" + addr + "/metrics", "--messages", strconv.Itoa(n), "--quarantine", "none",
		"--env", "test", "--report", report}, &out, os.Stderr)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
}
