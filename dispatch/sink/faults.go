package sink

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// Faults are the failure knobs of a sink. The zero value is a healthy sink.
// Change them at any time with the sink's SetFaults; a change releases the
// requests that Hang held.
type Faults struct {
	// Latency delays every request by this much before it is answered.
	Latency time.Duration
	// ErrorRate is the fraction, 0 to 1, of requests answered with a server
	// error: HTTP 503 (Twilio, FCM, APNs), SMTP 451 4.3.0 to MAIL FROM.
	ErrorRate float64
	// Hang holds every request unanswered until the client gives up, the
	// faults change or the sink stops: a timeout, for the client.
	Hang bool
	// HangAfterData (SMTP only) accepts each message into the ledger after
	// the final dot, then holds the reply until the client gives up, the
	// faults change or the sink stops: the client cannot tell whether the
	// message was taken, the in-doubt case of a failover.
	HangAfterData bool
	// RetryAfter, when > 0, throttles every request: HTTP 429 with a
	// Retry-After header of RetryAfter in whole seconds, rounded up (APNs
	// sends no Retry-After, but the sink adds it so that a proxy's can be
	// simulated); SMTP 421 4.7.0 to MAIL FROM.
	RetryAfter time.Duration
}

// verdict is what the faults decide for one request.
type verdict int

const (
	pass verdict = iota
	fail
	throttle
	gone // the client gave up or the sink stops: answer nothing
)

// faultBox holds a sink's faults.
type faultBox struct {
	mu      sync.Mutex
	f       Faults
	changed chan struct{} // closed and replaced by every set
	stop    chan struct{} // closed when the sink stops
}

func newFaultBox() *faultBox {
	return &faultBox{changed: make(chan struct{}), stop: make(chan struct{})}
}

func (b *faultBox) set(f Faults) {
	b.mu.Lock()
	b.f = f
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

func (b *faultBox) get() (Faults, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.f, b.changed
}

// close releases every held request for good.
func (b *faultBox) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
}

// apply waits out the latency and the hang, then decides. ctx is the
// request's (nil for SMTP, which has none).
func (b *faultBox) apply(ctx context.Context) (verdict, Faults) {
	var done <-chan struct{}
	if ctx != nil {
		done = ctx.Done()
	}
	for {
		f, changed := b.get()
		if f.Latency > 0 {
			t := time.NewTimer(f.Latency)
			select {
			case <-t.C:
			case <-done:
				t.Stop()
				return gone, f
			case <-b.stop:
				t.Stop()
				return gone, f
			}
		}
		if f.Hang {
			select {
			case <-changed:
				continue
			case <-done:
			case <-b.stop:
			}
			return gone, f
		}
		switch {
		case f.RetryAfter > 0:
			return throttle, f
		case f.ErrorRate > 0 && rand.Float64() < f.ErrorRate:
			return fail, f
		}
		return pass, f
	}
}

// retryAfterSeconds is d in whole seconds, rounded up, at least 1.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// holdReply waits, when HangAfterData is set, until the faults change or
// the sink stops.
func (b *faultBox) holdReply() {
	f, changed := b.get()
	if !f.HangAfterData {
		return
	}
	select {
	case <-changed:
	case <-b.stop:
	}
}
