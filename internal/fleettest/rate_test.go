//go:build fleet

package fleettest

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestFleetDrainRate measures what one worker process and two drain, with
// every stream at replicas 1 and at replicas 3, on the same three-node
// cluster layout: SLUICE_FLEET_BENCH_MESSAGES (default 40,000) activations,
// nine in ten invalid, queued through the API before the workers start. A
// measurement, not a check: it runs only with SLUICE_FLEET_BENCH=1.
func TestFleetDrainRate(t *testing.T) {
	if os.Getenv("SLUICE_FLEET_BENCH") != "1" {
		t.Skip("a measurement: set SLUICE_FLEET_BENCH=1")
	}
	n := 40_000
	if v, err := strconv.Atoi(os.Getenv("SLUICE_FLEET_BENCH_MESSAGES")); err == nil && v > 0 {
		n = v
	}
	results := map[string]float64{}
	for _, replicas := range []int{1, 3} {
		t.Run(fmt.Sprintf("R%d", replicas), func(t *testing.T) {
			f := startFleet(t, replicas, -2) // the spill stream comes with the first worker
			var all []*campaign
			for _, workers := range []int{1, 2} {
				c := f.createCampaign(fmt.Sprintf("rate-%dw", workers))
				all = append(all, c)
				if code, resp := f.post(c, "rate", n); code != http.StatusAccepted {
					t.Fatalf("post: %d %s", code, resp)
				}
				rate := f.drainRate(c, f.workers[:workers])
				results[fmt.Sprintf("R%d %d worker(s)", replicas, workers)] = rate
				t.Logf("R%d, %d worker process(es): %.0f msgs/s", replicas, workers, rate)
				for _, w := range f.workers[:workers] {
					w.stop()
				}
			}
			f.atRest(all)
		})
	}
	for _, k := range []string{"R1 1 worker(s)", "R1 2 worker(s)", "R3 1 worker(s)", "R3 2 worker(s)"} {
		t.Logf("%s: %.0f msgs/s (%.2f of R1 with one worker)", k, results[k], results[k]/results["R1 1 worker(s)"])
	}
}

// drainRate starts the workers and returns the messages of c counted per
// second from the moment the last of them is ready until c is drained.
func (f *fleet) drainRate(c *campaign, workers []*proc) float64 {
	f.t.Helper()
	for _, w := range workers {
		w.start()
	}
	counted := func() int64 {
		k, err := f.counts(c.id)
		if err != nil {
			f.t.Fatal(err)
		}
		return k.Delivered + k.Invalid + k.Failed + k.Purged
	}
	t0, n0 := time.Now(), counted()
	poll(f.t, 5*time.Minute, c.id+" drained", func() (bool, string) {
		n := counted()
		return n >= c.accepted, fmt.Sprintf("%d of %d", n, c.accepted)
	})
	return float64(c.accepted-n0) / time.Since(t0).Seconds()
}
