package suppression_test

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/sluicehq/sluice/suppression"
)

// BenchmarkSetSuppressed is the worker's per-message check against a
// tenant list of 1,000,000 hashes: one HMAC-SHA256 and a map lookup. It
// reports the heap the list takes.
func BenchmarkSetSuppressed(b *testing.B) {
	h, err := suppression.NewHasher(testKey)
	if err != nil {
		b.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := suppression.NewSet(h)
	sums := make([][]byte, 1_000_000)
	for i := range sums {
		sums[i] = binary.BigEndian.AppendUint64(nil, rand.Uint64())
	}
	s.AddHashes("acme", sums)
	sums = nil
	runtime.GC()
	runtime.ReadMemStats(&after)
	addrs := make([]string, 1024)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("user%d@example.com", i)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if s.Suppressed("acme", addrs[i%len(addrs)]) {
				b.Error("a random list holds a test address")
			}
			i++
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/1e6, "MB-heap")
	runtime.KeepAlive(s)
}

// TestSetCollisionFree: a Set of one tenant's real hashes answers for its
// own addresses and for no other.
func TestSetCollisionFree(t *testing.T) {
	t.Parallel()
	h, _ := suppression.NewHasher(testKey)
	s := suppression.NewSet(h)
	for i := range 10_000 {
		s.Add("acme", fmt.Sprintf("in%d@example.com", i))
	}
	for i := range 10_000 {
		if !s.Suppressed("acme", fmt.Sprintf("IN%d@example.com", i)) {
			t.Fatalf("in%d not suppressed", i)
		}
		if s.Suppressed("acme", fmt.Sprintf("out%d@example.com", i)) {
			t.Fatalf("out%d suppressed", i)
		}
	}
	if s.Len() != 10_000 {
		t.Fatalf("Len %d", s.Len())
	}
}
