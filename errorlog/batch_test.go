package errorlog

import (
	"slices"
	"testing"

	"github.com/sluicehq/sluice/wire"
)

// TestBatchReuse: a batch emptied for reuse (recycle) holds nothing of the
// one before, its callbacks and rows included, and counts afresh.
func TestBatchReuse(t *testing.T) {
	b := newBatch()
	called := false
	ev := Event{Outcome: wire.OutcomeInvalid, Tenant: "acme", Conversation: "c1", Channel: "email", Reason: "empty_address", Seq: 7}
	b.add(ev, func(error) { called = true })
	b.details = append(b.details, ev)
	events := b.events[:1]
	b.reset()
	if len(b.keys) != 0 || len(b.events) != 0 || len(b.details) != 0 || len(b.index) != 0 {
		t.Fatalf("reset left keys %v, events %v, details %v, index %v", b.keys, b.events, b.details, b.index)
	}
	if events[0].done != nil {
		t.Fatal("reset kept the earlier batch's callback reachable")
	}
	ev2 := ev
	ev2.Conversation, ev2.Seq = "c2", 8
	b.add(ev2, nil)
	if len(b.keys) != 1 || b.keys[0].Conversation != "c2" || b.events[0].key != 0 || b.events[0].seq != 8 || called {
		t.Fatalf("after reuse: keys %v, events %v", b.keys, b.events)
	}
}

// TestBySource: one source shares the batch's events; several are grouped
// in the order they first appear, "" standing for the writer's own.
func TestBySource(t *testing.T) {
	b := newBatch()
	for i, src := range []string{"", "", ""} {
		b.add(Event{Seq: uint64(i + 1), Source: src}, nil)
	}
	sources, events := b.bySource("SLUICE_BULK")
	if !slices.Equal(sources, []string{"SLUICE_BULK"}) || len(events["SLUICE_BULK"]) != 3 || &events["SLUICE_BULK"][0] != &b.events[0] {
		t.Fatalf("one source: %v %v", sources, events)
	}
	b.add(Event{Seq: 9, Source: "SLUICE_TRANSACTIONAL"}, nil)
	b.add(Event{Seq: 4, Source: "SLUICE_BULK"}, nil)
	sources, events = b.bySource("SLUICE_BULK")
	if !slices.Equal(sources, []string{"SLUICE_BULK", "SLUICE_TRANSACTIONAL"}) || len(events["SLUICE_BULK"]) != 4 || len(events["SLUICE_TRANSACTIONAL"]) != 1 {
		t.Fatalf("two sources: %v %v", sources, events)
	}
}

func TestRepeats(t *testing.T) {
	for _, tt := range []struct {
		seqs []uint64
		want bool
	}{{nil, false}, {[]uint64{1}, false}, {[]uint64{1, 2, 5}, false}, {[]uint64{1, 2, 2, 5}, true}, {[]uint64{3, 3}, true}} {
		if got := repeats(tt.seqs); got != tt.want {
			t.Errorf("repeats(%v) = %v, want %v", tt.seqs, got, tt.want)
		}
	}
}
