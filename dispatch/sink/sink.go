// Package sink holds the local stand-ins for the email, SMS and push
// providers, used by `sluice dev`, the tests and the load test.
//
// The protocol sinks speak what the real providers speak, on 127.0.0.1
// only: an SMTP server ([StartSMTP], github.com/emersion/go-smtp, with
// STARTTLS and AUTH PLAIN), and HTTP servers in the shape of Twilio's
// Messages API ([StartTwilio]), FCM's HTTP v1 API with its OAuth2 token
// endpoint ([StartFCM]) and APNs over HTTP/2 with TLS ([StartAPNs]).
// [StartLocal] starts all four and hands back provider configurations that
// point at them. [Recorder] is the in-process stand-in of the pipeline's
// unit tests.
//
// Each sink keeps a [Ledger] of what it accepted, keyed by the message's
// idempotency key as the protocol carries it (SMTP Message-ID, the
// I-Twilio-Idempotency-Token and Idempotency-Key headers, apns-id), so that
// duplicates and losses are visible, and each has fault knobs ([Faults]):
// latency, a server-error rate, hanging requests, throttling with
// Retry-After, and recipients it rejects for good.
package sink

import (
	"context"
	"sync"

	"github.com/sluicehq/sluice/dispatch"
)

// Ledger records accepted messages by idempotency key. It is safe for
// concurrent use.
type Ledger struct {
	mu         sync.Mutex
	seen       map[string]int
	accepted   int
	duplicates int
	byConv     map[string]int

	// keep > 0 keeps a copy of the last keep messages, for Message.
	keep   int
	recent map[string]dispatch.Message
	order  []string
	next   int
}

// NewLedger returns an empty ledger that counts messages and keeps no copy
// of them.
func NewLedger() *Ledger {
	return &Ledger{seen: make(map[string]int), byConv: make(map[string]int)}
}

// newKeepingLedger returns a ledger that also keeps a copy of the last keep
// messages it accepted.
func newKeepingLedger(keep int) *Ledger {
	l := NewLedger()
	l.keep, l.recent, l.order = keep, make(map[string]dispatch.Message, keep), make([]string, 0, keep)
	return l
}

// Add records one accepted message and reports whether its key was new.
func (l *Ledger) Add(m *dispatch.Message) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen[m.ID]++
	if l.seen[m.ID] > 1 {
		l.duplicates++
		return false
	}
	l.accepted++
	l.byConv[m.Tenant+"/"+m.Conversation]++
	if l.keep > 0 {
		if len(l.order) < l.keep {
			l.order = append(l.order, m.ID)
		} else {
			delete(l.recent, l.order[l.next])
			l.order[l.next] = m.ID
			l.next = (l.next + 1) % l.keep
		}
		l.recent[m.ID] = *m
	}
	return true
}

// Count returns how many times a message with this idempotency key was
// accepted: 0, 1, or more for duplicates.
func (l *Ledger) Count(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen[id]
}

// Message returns the first accepted copy of the message with this key, as
// the sink decoded it (To, Subject, Body and, for email, HTML), if the
// ledger keeps copies (the protocol sinks keep the last 4096) and still
// holds it.
func (l *Ledger) Message(id string) (dispatch.Message, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m, ok := l.recent[id]
	return m, ok
}

// Stats is a snapshot of a ledger.
type Stats struct {
	// Unique is the number of distinct idempotency keys accepted.
	Unique int
	// Duplicates is the number of sends whose key had been accepted before.
	Duplicates int
}

// Add returns the sum of s and o.
func (s Stats) Add(o Stats) Stats {
	return Stats{Unique: s.Unique + o.Unique, Duplicates: s.Duplicates + o.Duplicates}
}

// Stats returns a snapshot of the totals.
func (l *Ledger) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{Unique: l.accepted, Duplicates: l.duplicates}
}

// Conversation returns the number of distinct messages accepted for one
// conversation.
func (l *Ledger) Conversation(tenant, conversation string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byConv[tenant+"/"+conversation]
}

// Has reports whether a message with this idempotency key was accepted.
func (l *Ledger) Has(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen[id] > 0
}

// Recorder is an in-process Provider that accepts every message into a
// Ledger. It is the provider of the core pipeline's tests and of `sluice dev`
// until the protocol sinks (SMTP, HTTP) replace it.
type Recorder struct {
	Ledger *Ledger
}

// NewRecorder returns a Recorder with a fresh ledger.
func NewRecorder() *Recorder { return &Recorder{Ledger: NewLedger()} }

// Send records m. It fails only when ctx is done.
func (r *Recorder) Send(ctx context.Context, m *dispatch.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.Ledger.Add(m)
	return nil
}

// Find returns a kept copy of an accepted message for which match holds
// (see Message), if any.
func (l *Ledger) Find(match func(dispatch.Message) bool) (dispatch.Message, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.recent {
		if match(m) {
			return m, true
		}
	}
	return dispatch.Message{}, false
}
