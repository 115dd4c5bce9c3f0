package email

import (
	"context"
	"errors"
	"sync"
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
}

func (r *request) finish(err error) { r.done <- err }

// sessions are the provider's SMTP sessions with the relay: at most max
// goroutines, each owning at most one connection and carrying the requests
// it takes from queue. A session started when a request found none free
// stays until Close; its connection is quit after IdleTimeout unused.
type sessions struct {
	p     *Provider
	max   int
	queue chan *request // unbuffered: a request goes to a session ready for it
	quit  chan struct{}
	wg    sync.WaitGroup

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
	select {
	case s.queue <- req:
		return nil
	default:
	}
	if err := s.grow(); err != nil {
		return err
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

func (s *sessions) grow() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	if s.n < s.max {
		s.n++
		s.wg.Go(s.run)
	}
	return nil
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
			if s.isClosed() {
				req.finish(errClosed)
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
