// Package webhooktest is a webhook receiver for tests: an HTTP server that
// verifies every request's Standard Webhooks signature and records what it
// received, deduplicated by webhook-id as a careful receiver would.
package webhooktest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/webhook"
)

// Receiver is one endpoint's receiving server. Set Secret (from the
// registration) before the first request arrives.
type Receiver struct {
	URL string

	mu       sync.Mutex
	secret   string
	fail     int                 // the next fail requests are answered 500
	hang     bool                // requests are held until the test ends
	hold     bool                // requests are recorded, then held (the answer is lost)
	byID     map[string][]string // webhook-id → event ids of its first accepted body
	requests map[string]int      // webhook-id → requests received
	events   map[string]int      // event id → times seen in accepted, distinct webhook-ids
	types    map[string]int      // event type → events (deduplicated)
	bad      []string            // why a request failed verification
	replayed int                 // events seen in replays
	held     int                 // requests recorded and held
	stop     chan struct{}
}

// New starts a Receiver, stopped when the test ends.
func New(t testing.TB) *Receiver {
	r := &Receiver{byID: map[string][]string{}, requests: map[string]int{}, events: map[string]int{},
		types: map[string]int{}, stop: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(func() { close(r.stop); srv.Close() })
	r.URL = srv.URL + "/hook"
	return r
}

// SetSecret sets the secret that requests are verified with.
func (r *Receiver) SetSecret(s string) { r.mu.Lock(); r.secret = s; r.mu.Unlock() }

// FailNext answers the next n requests 500.
func (r *Receiver) FailNext(n int) { r.mu.Lock(); r.fail = n; r.mu.Unlock() }

// Hang holds every request until the test ends (or Hang(false)).
func (r *Receiver) Hang(on bool) { r.mu.Lock(); r.hang = on; r.mu.Unlock() }

// HoldAfterAccept records each request, then holds it unanswered until the
// sender gives up or the test ends: the sender never learns it was taken.
func (r *Receiver) HoldAfterAccept(on bool) { r.mu.Lock(); r.hold = on; r.mu.Unlock() }

// InFlight is the number of requests held by Hang or HoldAfterAccept so
// far.
func (r *Receiver) InFlight() int { r.mu.Lock(); defer r.mu.Unlock(); return r.held }

type body struct {
	Type string `json:"type"`
	Data struct {
		Replay bool            `json:"replay"`
		Events []webhook.Event `json:"events"`
	} `json:"data"`
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	data, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	if r.hang {
		r.held++
		r.mu.Unlock()
		select {
		case <-r.stop:
		case <-req.Context().Done():
		}
		return
	}
	hold := r.accept(w, req, data)
	r.mu.Unlock()
	if hold {
		select {
		case <-r.stop:
		case <-req.Context().Done():
		}
	}
}

// accept verifies and records one request (r.mu held) and reports whether
// it must be held unanswered.
func (r *Receiver) accept(w http.ResponseWriter, req *http.Request, data []byte) (hold bool) {
	id := req.Header.Get(webhook.HeaderID)
	r.requests[id]++
	if err := webhook.Verify(r.secret, req.Header, data, time.Now(), 5*time.Minute); err != nil {
		r.bad = append(r.bad, id+": "+err.Error())
		w.WriteHeader(http.StatusUnauthorized)
		return false
	}
	if r.fail > 0 {
		r.fail--
		w.WriteHeader(http.StatusInternalServerError)
		return false
	}
	var b body
	if err := json.Unmarshal(data, &b); err != nil || b.Type != webhook.PayloadType {
		r.bad = append(r.bad, id+": undecodable body")
		w.WriteHeader(http.StatusBadRequest)
		return false
	}
	if _, seen := r.byID[id]; seen {
		w.WriteHeader(http.StatusNoContent) // a retry of a message processed: acknowledged, ignored
		return false
	}
	r.byID[id] = nil
	for _, ev := range b.Data.Events {
		r.byID[id] = append(r.byID[id], ev.ID)
		if b.Data.Replay {
			r.replayed++
			continue
		}
		r.events[ev.ID]++
		if r.events[ev.ID] == 1 {
			r.types[ev.Type]++
		}
	}
	if r.hold {
		r.held++
		return true
	}
	w.WriteHeader(http.StatusNoContent)
	return false
}

// Stats is what a Receiver saw.
type Stats struct {
	// Distinct is the number of distinct events accepted (not replays);
	// Duplicates the events accepted under more than one webhook-id.
	Distinct, Duplicates int
	// Retried is the number of webhook-ids received more than once.
	Retried int
	// Bad lists the requests that failed verification.
	Bad []string
	// Types counts distinct events per type.
	Types map[string]int
	// Replayed counts events received in replays.
	Replayed int
}

// Stats returns what the receiver saw so far.
func (r *Receiver) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Stats{Distinct: len(r.events), Bad: append([]string(nil), r.bad...), Types: map[string]int{}, Replayed: r.replayed}
	for _, n := range r.events {
		if n > 1 {
			s.Duplicates++
		}
	}
	for _, n := range r.requests {
		if n > 1 {
			s.Retried++
		}
	}
	for k, v := range r.types {
		s.Types[k] = v
	}
	return s
}
