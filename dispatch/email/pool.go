package email

import (
	"context"
	"errors"
	"net"
	"net/smtp"
	"sync"
	"time"
)

// conn is one SMTP session with the relay, ready for MAIL FROM.
type conn struct {
	nc       net.Conn // the TCP connection, under TLS if any; deadlines go here
	c        *smtp.Client
	sent     int
	reused   bool
	lastUsed time.Time
	// pipelining is set when the relay advertises PIPELINING (RFC 2920).
	pipelining bool
	// mailParams are the MAIL FROM parameters the relay's extensions call
	// for (" BODY=8BITMIME", " SMTPUTF8"), as net/smtp sends them.
	mailParams string
	// broken is set when the session is out of step with the relay and
	// must not carry another transaction.
	broken bool
}

// bind makes ctx bound every read and write on c until the returned func is
// called: ctx's deadline becomes the connection's, and canceling ctx
// interrupts a blocked read or write. The returned func reports whether the
// connection is still clean (ctx did not interrupt it).
func (c *conn) bind(ctx context.Context) (unbind func() bool) {
	if dl, ok := ctx.Deadline(); ok {
		c.nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Unix(1, 0)) })
	return func() bool {
		if !stop() {
			return false
		}
		c.nc.SetDeadline(time.Time{})
		return true
	}
}

// close ends the session without ceremony.
func (c *conn) close() { c.c.Close() }

// quit ends the session politely, waiting at most d for the relay.
func (c *conn) quit(d time.Duration) {
	c.nc.SetDeadline(time.Now().Add(d))
	if err := c.c.Quit(); err != nil {
		c.c.Close()
	}
}

var errClosed = errors.New("email: provider closed")

// pool is a bounded pool of sessions with one relay. At most size sessions
// exist at once, idle or in use.
type pool struct {
	sem         chan struct{}
	dial        func(context.Context) (*conn, error)
	idleTimeout time.Duration

	mu     sync.Mutex
	idle   []*conn // most recently used last
	closed bool
}

func newPool(size int, idleTimeout time.Duration, dial func(context.Context) (*conn, error)) *pool {
	return &pool{sem: make(chan struct{}, size), dial: dial, idleTimeout: idleTimeout}
}

// get returns an idle session or dials a new one, waiting for a free slot
// while size sessions are in use.
func (p *pool) get(ctx context.Context) (*conn, error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var stale []*conn
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.sem
		return nil, errClosed
	}
	var c *conn
	for len(p.idle) > 0 {
		last := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if time.Since(last.lastUsed) < p.idleTimeout {
			c = last
			break
		}
		stale = append(stale, last)
	}
	p.mu.Unlock()
	for _, s := range stale {
		s.close()
	}
	if c != nil {
		c.reused = true
		return c, nil
	}
	c, err := p.dial(ctx)
	if err != nil {
		<-p.sem
		return nil, err
	}
	return c, nil
}

// put returns c to the pool if reusable, else closes it, and frees its slot.
func (p *pool) put(c *conn, reusable bool) {
	if reusable {
		c.lastUsed = time.Now()
		p.mu.Lock()
		if !p.closed {
			p.idle = append(p.idle, c)
			c = nil
		}
		p.mu.Unlock()
	}
	if c != nil {
		c.close()
	}
	<-p.sem
}

// dropIdle closes the idle sessions.
func (p *pool) dropIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// close quits the idle sessions; sessions in use are closed when put back.
func (p *pool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range idle {
		wg.Go(func() { c.quit(2 * time.Second) })
	}
	wg.Wait()
}
