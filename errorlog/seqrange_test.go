package errorlog

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice/wire"
)

// TestFirstDeliveryTwiceCountedOnce: a NATS node whose consumer state rolled
// back redelivers messages as first deliveries (NumDelivered 1). Recorded
// again in later batches, interleaved with new sequences and with sequences
// of the same span counted by another batch, each sequence is counted once.
func TestFirstDeliveryTwiceCountedOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{BatchSize: 10, FlushInterval: time.Hour}, true)
	res := newResults()
	n := 0
	record := func(seqs ...uint64) {
		for _, s := range seqs {
			n++
			b.log.Record(Event{Outcome: wire.OutcomeInvalid, ID: fmt.Sprintf("m%d", s), Time: time.Unix(1700000000, 0), Tenant: "acme",
				Conversation: "c1", Lane: "bulk", Channel: "email", Reason: "empty_address", Seq: s}, res.done(fmt.Sprint(n)))
		}
		res.wait(t, n)
	}
	record(1, 3, 5, 7, 9, 11, 13, 15, 17, 19)  // one worker's batch: the odd sequences
	record(2, 4, 6, 8, 10, 12, 14, 16, 18, 20) // another's: the even ones, the same span
	// After a node restart: both spans again as first deliveries, mixed
	// with 21..25 never seen, and 22 twice within the batch.
	record(19, 2, 21, 22, 22, 23, 10, 11, 24, 25)
	record(1, 2, 3, 4, 5, 6, 7, 8, 9, 20)
	res.mu.Lock()
	for id, err := range res.errs {
		t.Errorf("event %s: %v", id, err)
	}
	res.mu.Unlock()
	if got := scalar[int](t, b.db.Pool, "SELECT sum(count)::int FROM error_counts WHERE conversation = 'c1'"); got != 25 {
		t.Errorf("counted %d, want 25 (sequences 1..25 once each)", got)
	}
	if got := scalar[int](t, b.db.Pool, "SELECT count(*)::int FROM error_log WHERE conversation = 'c1'"); got != 25 {
		t.Errorf("rows %d, want 25", got)
	}
}

func TestParseMultirange(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want rangeSet
		ok   bool
	}{
		{"{}", nil, true},
		{"{[1,4)}", rangeSet{{1, 4}}, true},
		{"{[1,4),[7,8),[10,20)}", rangeSet{{1, 4}, {7, 8}, {10, 20}}, true},
		{"", nil, false},
		{"{[4,1)}", nil, false},
		{"{[1,4),[3,8)}", nil, false},
		{"{[a,4)}", nil, false},
	} {
		got, err := parseMultirange(tc.in)
		if (err == nil) != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("parseMultirange(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	set := rangeSet{{1, 4}, {7, 8}, {10, 20}}
	for seq, want := range map[uint64]bool{0: false, 1: true, 3: true, 4: false, 6: false, 7: true, 8: false, 19: true, 20: false, 99: false} {
		if set.has(seq) != want {
			t.Errorf("has(%d) = %v, want %v", seq, !want, want)
		}
	}
	if (rangeSet(nil)).has(1) {
		t.Error("empty set has 1")
	}
}

func TestMultirangeRoundTrip(t *testing.T) {
	t.Parallel()
	seqs := []uint64{9, 1, 2, 3, 7, 3, 12, 11}
	got, err := parseMultirange(multirange(seqs))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []uint64{1, 2, 3, 7, 9, 11, 12} {
		if !got.has(s) {
			t.Errorf("%d missing from %v", s, got)
		}
	}
	for _, s := range []uint64{4, 5, 6, 8, 10, 13} {
		if got.has(s) {
			t.Errorf("%d in %v", s, got)
		}
	}
}
