package email

import (
	"errors"
	"net/textproto"
)

// transactPipelined runs one mail transaction with SMTP command pipelining
// (RFC 2920), for relays that advertise PIPELINING: MAIL FROM, RCPT TO and
// DATA go out in one write, their replies are read in order, and then the
// message and its final dot go out in a second write, whose reply is the
// relay's verdict. Two round trips instead of four.
//
// Each reply is attributed to its command's stage, so outcomes map as in a
// lock-step dialogue: the first failed reply is the transaction's error (a
// 5xx to RCPT is recipient_rejected even though DATA's reply, read after
// it, is also a refusal). Every pipelined reply is read before returning, so
// that the session stays in step; when that is impossible (the connection
// failed mid-way, or the relay accepted DATA although an earlier command
// failed) the session is marked broken and not reused. A relay accepting
// DATA with no valid recipient is not given the dot: closing the
// connection abandons the transaction without delivering an empty message.
func (p *Provider) transactPipelined(c *conn, to string, msg []byte) error {
	w := c.c.Text.W
	w.WriteString("MAIL FROM:<")
	w.WriteString(p.envFrom)
	w.WriteString(">")
	w.WriteString(c.mailParams)
	w.WriteString("\r\nRCPT TO:<")
	w.WriteString(to)
	w.WriteString(">\r\nDATA\r\n")
	if err := w.Flush(); err != nil {
		c.broken = true
		return &stageError{stage: "mail", err: err}
	}
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
	if first != nil {
		return first
	}
	dw := c.c.Text.DotWriter()
	if _, err := dw.Write(msg); err != nil {
		c.broken = true
		return &stageError{stage: "data", err: err}
	}
	if err := dw.Close(); err != nil {
		c.broken = true
		return &stageError{stage: "data", err: err}
	}
	if _, _, err := c.c.Text.ReadResponse(250); err != nil {
		return &stageError{stage: "data", err: err}
	}
	return nil
}
