package errorlog

import "github.com/sluicehq/sluice/wire"

// countKey is one exact counter: delivery_counts (Outcome delivered, Reason
// empty) or error_counts is keyed by it and the minute.
type countKey struct {
	Outcome      wire.Outcome `json:"o"`
	Tenant       string       `json:"t"`
	Conversation string       `json:"c"`
	Channel      string       `json:"ch"`
	Reason       string       `json:"r"`
}

// pending is one recorded event waiting to be made durable: which counter it
// adds to, the stream sequence that identifies it, and its callback.
type pending struct {
	key  int32
	seq  uint64
	src  string // Event.Source: "" for the writer's Config.Source
	done func(error)
}

// batch is what one write makes durable: every event's counter, and the
// detail rows the mode kept.
type batch struct {
	keys    []countKey
	index   map[countKey]int32
	events  []pending
	details []Event
}

func newBatch() *batch { return &batch{index: map[countKey]int32{}} }

func (b *batch) add(ev Event, done func(error)) {
	k := countKey{ev.Outcome, ev.Tenant, ev.Conversation, ev.Channel, ev.Reason}
	i, ok := b.index[k]
	if !ok {
		i = int32(len(b.keys))
		b.keys = append(b.keys, k)
		b.index[k] = i
	}
	b.events = append(b.events, pending{key: i, seq: ev.Seq, src: ev.Source, done: done})
}

// reset empties b for reuse, keeping its slices' and index's room (one
// batch's worth of growth, every batch, was a visible share of the bulk
// lane's allocations: issue 14); the callbacks and rows it held are let go.
func (b *batch) reset() {
	clear(b.keys)
	clear(b.events)
	clear(b.details)
	clear(b.index)
	b.keys, b.events, b.details = b.keys[:0], b.events[:0], b.details[:0]
}

// bySource groups b's events by the source of their sequence, "" standing
// for def, in the order the sources first appear. The groups share b's
// events when there is one source, as there usually is.
func (b *batch) bySource(def string) (sources []string, events map[string][]pending) {
	if len(b.events) > 0 && oneSource(b.events) {
		src := b.events[0].src
		if src == "" {
			src = def
		}
		return []string{src}, map[string][]pending{src: b.events}
	}
	events = map[string][]pending{}
	for _, e := range b.events {
		src := e.src
		if src == "" {
			src = def
		}
		if _, ok := events[src]; !ok {
			sources = append(sources, src)
		}
		events[src] = append(events[src], e)
	}
	return sources, events
}

// oneSource reports whether every event has the first one's source.
func oneSource(events []pending) bool {
	for _, e := range events[1:] {
		if e.src != events[0].src {
			return false
		}
	}
	return true
}

// spillVersion is the version of spilled this build writes. Version 1 (before
// outcomes were stored) had no outcome in its keys: it is read with the
// outcome wire.OutcomeOf gives its reason, the rule of that release.
const spillVersion = 2

// spilled is a batch as stored in the spill stream: compact, one message per
// batch (or per chunk of one), not one per event.
type spilled struct {
	V       int        `json:"v"`
	Source  string     `json:"source"`
	Keys    []countKey `json:"keys"`
	K       []int32    `json:"k"` // per event: index into Keys
	S       []uint64   `json:"s"` // per event: stream sequence, 0 if none
	Details []Event    `json:"details,omitempty"`
}

// chunks splits b into spilled messages of at most n events and n rows, one
// source per message (the format older builds read); the rows go with the
// first source's messages.
func (b *batch) chunks(def string, n int) []spilled {
	sources, events := b.bySource(def)
	if len(sources) == 0 {
		sources = []string{def}
	}
	var out []spilled
	for i, src := range sources {
		evs, details := events[src], []Event(nil)
		if i == 0 {
			details = b.details
		}
		for lo := 0; lo < max(len(evs), len(details)); lo += n {
			s := spilled{V: spillVersion, Source: src, Keys: b.keys}
			for _, e := range evs[min(lo, len(evs)):min(lo+n, len(evs))] {
				s.K = append(s.K, e.key)
				s.S = append(s.S, e.seq)
			}
			if lo < len(details) {
				s.Details = details[lo:min(lo+n, len(details))]
			}
			out = append(out, s)
		}
	}
	return out
}

// batch rebuilds a writable batch (without callbacks) from a spilled one.
func (s *spilled) batch() *batch {
	b := &batch{keys: s.Keys, details: s.Details}
	if s.V == 1 {
		for i := range b.keys {
			b.keys[i].Outcome = wire.OutcomeOf(wire.Reason(b.keys[i].Reason))
		}
	}
	for i := range s.K {
		b.events = append(b.events, pending{key: s.K[i], seq: s.S[i]})
	}
	return b
}
