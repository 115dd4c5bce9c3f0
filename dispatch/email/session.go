package email

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

var errClosed = errors.New("email: provider closed")

// request is one Send waiting to be carried to the relay.
type request struct {
	ctx  context.Context
	to   string
	msg  []byte
	done chan error // the outcome, classified; buffered
	// retried is set once the request has been moved to a fresh
	// connection because a reused one turned out to be dead.
	retried bool
	// claimed is set when submit counted a free session for the request
	// (sessions.free).
	claimed bool
}

func (r *request) finish(err error) { r.done <- err }

// sessions are the provider's SMTP sessions with the relay: at most max
// goroutines, each owning at most one connection and carrying the requests
// it takes from queue. A session started when a request found none free
// stays until Close; its connection is quit after IdleTimeout unused.
//
// A request goes to a free session before another is started, so that
// sends one after the other keep to one connection: free counts the
// sessions waiting for a request, or about to (a session counts itself
// free just before it settles the last request it carries, since its
// caller may send again at once), less the requests that have claimed one
// and are on their way to it. A request that claimed none is waiting for
// any session; the session that takes it uncounts itself. A request taken
// by another session's lookahead gives its claim back.
type sessions struct {
	p     *Provider
	max   int
	queue chan *request // unbuffered: a request goes to a session ready for it
	quit  chan struct{}
	wg    sync.WaitGroup
	free  atomic.Int64

	mu     sync.Mutex
	n      int
	closed bool
}

func newSessions(p *Provider, max int) *sessions {
	return &sessions{p: p, max: max, queue: make(chan *request), quit: make(chan struct{})}
}

// submit hands req to a session, starting one if none is free and fewer
// than max run, or waiting for one to be free.
func (s *sessions) submit(ctx context.Context, req *request) error {
	if s.free.Add(-1) >= 0 {
		req.claimed = true
	} else {
		s.free.Add(1)
		started, err := s.grow()
		if err != nil {
			return err
		}
		req.claimed = started // the new session is free for this request
	}
	select {
	case s.queue <- req:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.quit:
		return errClosed
	}
}

// grow starts a session if fewer than max run, reporting whether it did.
func (s *sessions) grow() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, errClosed
	}
	if s.n >= s.max {
		return false, nil
	}
	s.n++
	s.wg.Go(s.run)
	return true, nil
}

// took accounts for a request a session takes from the queue: from run
// (the session is no longer free) or from a lookahead (a claim on another
// session is given back).
func (s *sessions) took(req *request, lookahead bool) {
	switch {
	case lookahead && req.claimed:
		s.free.Add(1)
	case !lookahead && !req.claimed:
		s.free.Add(-1)
	}
}

func (s *sessions) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// close stops the sessions: each finishes what it carries and quits its
// connection.
func (s *sessions) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.quit)
	s.mu.Unlock()
	s.wg.Wait()
}

// run is one session's loop.
func (s *sessions) run() {
	ss := &session{p: s.p, s: s}
	defer ss.drop(true)
	idle := time.NewTimer(s.p.cfg.IdleTimeout)
	defer idle.Stop()
	for {
		select {
		case req := <-s.queue:
			s.took(req, false)
			if s.isClosed() {
				ss.settle(req, errClosed, true)
				continue
			}
			ss.carry(req)
			idle.Reset(s.p.cfg.IdleTimeout)
		case <-idle.C:
			ss.drop(true)
		case <-s.quit:
			return
		}
	}
}

// session is one connection to the relay (nil between connections) and
// the requests it carries.
type session struct {
	p *Provider
	s *sessions
	c *conn
}

// settle gives req its outcome. last says the session has nothing more to
// carry: it counts itself free first (see sessions).
func (ss *session) settle(req *request, err error, last bool) {
	if last {
		ss.s.free.Add(1)
	}
	req.finish(err)
}

// drop ends the connection, politely (QUIT) or not.
func (ss *session) drop(polite bool) {
	if ss.c == nil {
		return
	}
	if polite && !ss.c.broken {
		ss.c.quit(2 * time.Second)
	} else {
		ss.c.close()
	}
	ss.c = nil
}

// carry carries req and then, as long as requests are waiting when a
// message ends, the next ones (see transact).
func (ss *session) carry(req *request) {
	sent := false
	for req != nil {
		req, sent = ss.transact(req, sent)
	}
}

// lookahead takes a waiting request, if any, to pipeline its commands
// behind the message being sent: only when every session is busy (an idle
// one would have taken it), the connection may carry one more message, and
// the provider is not closing.
func (ss *session) lookahead() *request {
	if capN := ss.p.cfg.MaxMessagesPerConn; capN > 0 && ss.c.sent+2 > capN {
		return nil
	}
	if ss.c.broken || ss.s.isClosed() {
		return nil
	}
	for {
		select {
		case next := <-ss.s.queue:
			ss.s.took(next, true)
			if err := next.ctx.Err(); err != nil {
				next.finish(ss.p.classify(next.ctx, err))
				continue
			}
			return next
		default:
			return nil
		}
	}
}
