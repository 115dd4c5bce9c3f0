package email

import (
	"context"
	"net"
	"net/smtp"
	"time"
)

// conn is one SMTP session with the relay, ready for MAIL FROM.
type conn struct {
	nc     net.Conn // the TCP connection, under TLS if any; deadlines go here
	c      *smtp.Client
	sent   int  // messages the relay accepted on this connection
	reused bool // a transaction has ended on it before the current one
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
