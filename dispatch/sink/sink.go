// Package sink holds the local stand-ins for email, SMS and push providers used
// by `sluice dev`, the tests and the load test. Each keeps a Ledger of what it
// accepted, keyed by the message's idempotency key, so that duplicates and
// losses are visible.
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
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{seen: make(map[string]int), byConv: make(map[string]int)}
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
	return true
}

// Stats is a snapshot of a ledger.
type Stats struct {
	// Unique is the number of distinct idempotency keys accepted.
	Unique int
	// Duplicates is the number of sends whose key had been accepted before.
	Duplicates int
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
