package email

import (
	"bufio"
	"bytes"
	"errors"
	"net/textproto"
)

// transact carries req on the session's connection, dialing one if there
// is none, and returns the request to carry next: one taken by lookahead
// whose MAIL, RCPT and DATA went out with req's final dot (sent true), or
// a request to carry on a fresh connection (sent false), or nil.
func (ss *session) transact(req *request, sent bool) (*request, bool) {
	p := ss.p
	if !sent {
		if err := req.ctx.Err(); err != nil {
			ss.settle(req, p.classify(req.ctx, err), true)
			return nil, false
		}
	}
	if ss.c == nil {
		c, err := p.dial(req.ctx)
		if err != nil {
			ss.settle(req, p.classify(req.ctx, err), true)
			return nil, false
		}
		ss.c, sent = c, false
	}
	if !ss.c.pipelining {
		return ss.lockstep(req), false
	}
	return ss.pipelined(req, sent)
}

// pipelined runs one mail transaction with SMTP command pipelining (RFC
// 2920), for relays that advertise PIPELINING: MAIL FROM, RCPT TO and DATA
// go out in one write, their replies are read in order, then the message
// and its final dot go out, followed in the same write, when another
// request is waiting (lookahead), by that request's MAIL FROM, RCPT TO and
// DATA: RFC 2920 lets a message's content open a group of commands. One
// write and one round trip per message while requests queue, two when
// they do not.
//
// Each reply is attributed to its command's stage, so outcomes map as in a
// lock-step dialogue: the first failed reply is the transaction's error (a
// 5xx to RCPT is recipient_rejected even though DATA's reply, read after
// it, is also a refusal). Every pipelined reply is read before the session
// goes on, so that it stays in step; when that is impossible (the
// connection failed mid-way, or the relay accepted DATA although an earlier
// command failed) the connection is marked broken and not reused. A relay
// accepting DATA with no valid recipient is not given the dot: closing the
// connection abandons the transaction without delivering an empty message.
// The final dot ends a transaction whatever its reply, so the next
// request's commands behind it stand even when the message is refused;
// when the connection is lost instead, the next request starts again on a
// fresh one (none of its content was sent).
func (ss *session) pipelined(req *request, sent bool) (*request, bool) {
	p, c := ss.p, ss.c
	w := c.c.Text.W
	unbind := c.bind(req.ctx)
	var err error
	if !sent {
		p.writeCommands(w, req.to, c.mailParams)
		if ferr := w.Flush(); ferr != nil {
			c.broken = true
			err = &stageError{stage: "mail", err: ferr}
		}
	}
	if err == nil {
		err = readCommandReplies(c)
	}
	if err != nil {
		return ss.failed(req, err, unbind()), false
	}
	writeData(w, req.msg)
	next := ss.lookahead()
	if next != nil {
		p.writeCommands(w, next.to, c.mailParams)
	}
	if err = w.Flush(); err != nil {
		c.broken = true
		err = &stageError{stage: "data", err: err}
	} else if _, _, err = c.c.Text.ReadResponse(250); err != nil {
		err = &stageError{stage: "data", err: err}
	}
	return ss.ended(req, err, unbind(), next)
}

// writeCommands writes a transaction's MAIL FROM, RCPT TO and DATA.
func (p *Provider) writeCommands(w *bufio.Writer, to, mailParams string) {
	w.WriteString("MAIL FROM:<")
	w.WriteString(p.envFrom)
	w.WriteString(">")
	w.WriteString(mailParams)
	w.WriteString("\r\nRCPT TO:<")
	w.WriteString(to)
	w.WriteString(">\r\nDATA\r\n")
}

// readCommandReplies reads the replies to a pipelined MAIL FROM, RCPT TO and
// DATA and returns the first failure, by stage.
func readCommandReplies(c *conn) error {
	var first error
	for _, step := range [...]struct {
		stage string
		code  int
	}{{"mail", 250}, {"rcpt", 25}, {"data", 354}} {
		_, _, err := c.c.Text.ReadResponse(step.code)
		if err == nil {
			if step.stage == "data" && first != nil {
				// 354 after a failed MAIL or RCPT: the relay waits for a
				// message that must not be sent.
				c.broken = true
			}
			continue
		}
		if _, replied := errors.AsType[*textproto.Error](err); !replied {
			// The connection failed: the remaining replies will not come.
			c.broken = true
			if first == nil {
				first = &stageError{stage: step.stage, err: err}
			}
			return first
		}
		if first == nil {
			first = &stageError{stage: step.stage, err: err}
		}
	}
	return first
}

// writeData writes msg as a DATA section's content and its final dot,
// without flushing: leading dots doubled and every line end made CRLF,
// byte for byte what textproto's DotWriter and its Close write (a bare LF
// gets a CR unless DotWriter would count the CR before it as one, i.e. an
// odd run of CRs), a line at a time rather than a byte at a time.
func writeData(w *bufio.Writer, msg []byte) {
	if len(msg) == 0 {
		w.WriteString("\r\n.\r\n")
		return
	}
	for len(msg) > 0 {
		if msg[0] == '.' {
			w.WriteByte('.')
		}
		i := bytes.IndexByte(msg, '\n')
		if i < 0 {
			w.Write(msg)
			if oddCRs(msg) {
				w.WriteString("\n.\r\n")
			} else {
				w.WriteString("\r\n.\r\n")
			}
			return
		}
		w.Write(msg[:i])
		if !oddCRs(msg[:i]) {
			w.WriteByte('\r')
		}
		w.WriteByte('\n')
		msg = msg[i+1:]
	}
	w.WriteString(".\r\n")
}

// oddCRs reports whether line ends in an odd run of CRs, which leaves
// DotWriter counting the last one as the start of a line end.
func oddCRs(line []byte) bool {
	n := 0
	for n < len(line) && line[len(line)-1-n] == '\r' {
		n++
	}
	return n%2 == 1
}

// ended settles req once its final dot has been answered (err nil) or not,
// and decides the connection's fate; next, if any, had its commands sent
// behind the dot and is carried next, on this connection if it is sound.
func (ss *session) ended(req *request, err error, clean bool, next *request) (*request, bool) {
	c := ss.c
	var out error
	switch {
	case err == nil && clean:
		c.sent++
	case err == nil:
		// Accepted, but ctx fired as the reply came in: the session is in
		// doubt, the message is not.
	default:
		out = ss.p.classify(req.ctx, err)
	}
	ss.settle(req, out, next == nil)
	c.reused = true
	te, replied := errors.AsType[*textproto.Error](err)
	if !clean || c.broken || err != nil && (!replied || te.Code == 421) {
		ss.drop(false)
		return next, false
	}
	if next != nil {
		return next, true
	}
	if capN := ss.p.cfg.MaxMessagesPerConn; capN > 0 && c.sent >= capN {
		ss.drop(true)
	}
	return nil, false
}

// failed settles req after a failure before its message was sent, and
// decides the connection's fate. A reused connection that the relay has
// ended (a 421 at MAIL, or found dead) gets req back, to be carried once
// more on a fresh one.
func (ss *session) failed(req *request, err error, clean bool) *request {
	c := ss.c
	if !req.retried && c.reused && clean && req.ctx.Err() == nil && staleSession(err) {
		req.retried = true
		ss.drop(false)
		return req
	}
	// The outcome waits for the RSET: once Send returns, its caller may
	// cancel req.ctx, which bounds the RSET too.
	out := ss.p.classify(req.ctx, err)
	c.reused = true
	if !clean || c.broken || !ss.p.recover(req.ctx, c, err) {
		ss.drop(false)
	}
	ss.settle(req, out, true)
	return nil
}

// lockstep runs one mail transaction a command at a time, for relays that
// do not offer PIPELINING (or when it is disabled).
func (ss *session) lockstep(req *request) *request {
	c := ss.c
	unbind := c.bind(req.ctx)
	err := ss.p.transactLockstep(c, req.to, req.msg)
	clean := unbind()
	if err != nil {
		return ss.failed(req, err, clean)
	}
	next, _ := ss.ended(req, nil, clean, nil)
	return next
}
