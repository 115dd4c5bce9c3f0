package email_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/dispatch/email"
	"github.com/sluicehq/sluice/dispatch/sink"
	"github.com/sluicehq/sluice/wire"
)

// strictRelay is an SMTP relay that advertises PIPELINING and answers a
// transaction's MAIL, RCPT and DATA only once it has received all three, so
// a client that waits for each reply before the next command stalls. Its
// replies are scripted by the recipient: "reject.me@..." gets 550 to RCPT, and
// with acceptDataAnyway the DATA after it gets 354 all the same (a broken
// relay). It answers MAIL with 421 and closes once a session has carried
// perConn messages (0: no cap).
type strictRelay struct {
	ln               net.Listener
	perConn          int
	acceptDataAnyway bool
	// chained, when set, makes the relay answer a final dot only once the
	// next transaction's MAIL, RCPT and DATA have arrived behind it, until
	// chained dots have come (over all sessions): a client that waits for the
	// dot's reply before the next message's commands stalls. greetDelay
	// holds the greeting back, so that a test's sends queue meanwhile.
	// After a dot, a recipient containing "BADBODY" gets 554, one
	// containing "CLOSE" gets 421 and the session is closed, and one
	// containing "DROP" gets no reply: the connection just closes.
	chained    int
	greetDelay time.Duration

	conns     atomic.Int64
	delivered atomic.Int64
	dots      atomic.Int64 // final dots received, accepted or not
	wg        sync.WaitGroup
}

func startStrictRelay(t *testing.T, perConn int, acceptDataAnyway bool) *strictRelay {
	t.Helper()
	return serveStrictRelay(t, &strictRelay{perConn: perConn, acceptDataAnyway: acceptDataAnyway})
}

// serveStrictRelay listens and serves r, configured by its caller.
func serveStrictRelay(t *testing.T, r *strictRelay) *strictRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.ln = ln
	r.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.conns.Add(1)
			r.wg.Go(func() { r.serve(c) })
		}
	})
	t.Cleanup(func() { ln.Close(); r.wg.Wait() })
	return r
}

// strictProvider starts a strictRelay and a provider with one connection to
// it.
func strictProvider(t *testing.T, perConn int, acceptDataAnyway bool) (*strictRelay, *email.Provider) {
	t.Helper()
	r := startStrictRelay(t, perConn, acceptDataAnyway)
	return r, newProvider(t, email.Config{Addr: r.ln.Addr().String(), From: "noreply@example.com", TLS: email.TLSNone, MaxConns: 1})
}

func (r *strictRelay) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br, bw := bufio.NewReader(c), bufio.NewWriter(c)
	reply := func(s string) { bw.WriteString(s + "\r\n"); bw.Flush() }
	time.Sleep(r.greetDelay)
	reply("220 strict ESMTP")
	sent := 0
	var group []string // MAIL, RCPT, DATA awaiting replies
	var ahead []string // lines read ahead of their turn
	for {
		var line string
		var err error
		if len(ahead) > 0 {
			line, ahead = ahead[0], ahead[1:]
		} else if line, err = br.ReadString('\n'); err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			reply("250-strict\r\n250-8BITMIME\r\n250 PIPELINING")
		case strings.HasPrefix(cmd, "MAIL"), strings.HasPrefix(cmd, "RCPT"):
			group = append(group, cmd)
		case cmd == "DATA":
			if len(group) != 2 {
				reply("503 5.5.1 bad sequence")
				return
			}
			if r.perConn > 0 && sent >= r.perConn {
				reply("421 4.7.0 enough for this session")
				return
			}
			rcpt := group[1]
			rejected := strings.Contains(rcpt, "REJECT")
			group = nil
			if rejected {
				bw.WriteString("250 2.1.0 ok\r\n550 5.1.1 no such user\r\n")
				if !r.acceptDataAnyway {
					reply("554 5.5.1 no valid recipients")
					continue
				}
			} else {
				bw.WriteString("250 2.1.0 ok\r\n250 2.1.5 ok\r\n")
			}
			reply("354 go ahead")
			if !r.readData(br) {
				return
			}
			if n := r.dots.Add(1); r.chained > 0 && n < int64(r.chained) {
				// The next group must already be on its way.
				for range 3 {
					l, err := br.ReadString('\n')
					if err != nil {
						return
					}
					ahead = append(ahead, l)
				}
			}
			switch {
			case strings.Contains(rcpt, "BADBODY"):
				reply("554 5.6.0 content refused")
			case strings.Contains(rcpt, "CLOSE"):
				reply("421 4.3.2 closing")
				return
			case strings.Contains(rcpt, "DROP"):
				return // the connection lost with the message in doubt
			case !rejected:
				sent++
				r.delivered.Add(1)
				reply("250 2.0.0 queued")
			default:
				reply("250 2.0.0 queued")
			}
		case cmd == "RSET":
			group = nil
			reply("250 2.0.0 ok")
		case cmd == "QUIT":
			reply("221 2.0.0 bye")
			return
		default:
			reply("502 5.5.2 not implemented")
		}
	}
}

// readData reads a message up to its final dot.
func (r *strictRelay) readData(br *bufio.Reader) bool {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return false
		}
		if line == ".\r\n" {
			return true
		}
	}
}

// rejectThenAccept sends to the relay's rejected address, which must come
// back recipient_rejected, then to a valid one, which must be accepted on
// the same pool.
func rejectThenAccept(t *testing.T, p *email.Provider, i int) {
	t.Helper()
	// Each send's context ends as it returns, as the pipeline's do.
	send := func(m *dispatch.Message) error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		return p.Send(ctx, m)
	}
	err := send(&dispatch.Message{ID: fmt.Sprintf("r%d", i), To: "reject.me@example.com"})
	if re, ok := errors.AsType[*dispatch.RejectedError](err); !ok || re.Reason != wire.ReasonRecipientRejected {
		t.Fatalf("pipelined send %d to a rejected recipient: %v, want recipient_rejected", i, err)
	}
	if err := send(&dispatch.Message{ID: fmt.Sprintf("a%d", i), To: fmt.Sprintf("u%d@example.com", i)}); err != nil {
		t.Fatalf("send %d after a rejected recipient: %v", i, err)
	}
}

// TestPipelinedAgainstRelayThatWaitsForTheGroup sends sequentially to a
// relay that answers only whole pipelined groups (a lock-step client
// stalls there until its deadline), with and without a per-session cap on
// the relay's side, which the provider must follow by dialing anew.
func TestPipelinedAgainstRelayThatWaitsForTheGroup(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name             string
		perConn, n, conn int
	}{
		{"no cap: one session", 0, 5, 1},
		{"relay closes each session after 3", 3, 10, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, p := strictProvider(t, tc.perConn, false)
			for i := range tc.n {
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				err := p.Send(ctx, &dispatch.Message{ID: fmt.Sprintf("p%d", i), To: "a@example.com", Body: "hi"})
				cancel()
				if err != nil {
					t.Fatalf("send %d: %v", i, err)
				}
			}
			if d := r.delivered.Load(); d != int64(tc.n) {
				t.Errorf("relay delivered %d, want %d", d, tc.n)
			}
			if c := r.conns.Load(); c != int64(tc.conn) {
				t.Errorf("%d connections for %d sequential messages, want %d", c, tc.n, tc.conn)
			}
		})
	}
}

// TestPipelinedRejectedRecipient: a 550 to RCPT in a pipelined group is
// recipient_rejected. With the relay's 554 to DATA the session stays in
// step and carries the next message; a broken relay that answers DATA with
// 354 anyway gets no message (the session is dropped instead).
func TestPipelinedRejectedRecipient(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                   string
		acceptDataAnyway       bool
		rounds, dots, sessions int64
	}{
		{"DATA refused: session kept", false, 3, 3, 1},
		{"DATA accepted anyway: session dropped, no message", true, 2, 2, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, p := strictProvider(t, 0, tc.acceptDataAnyway)
			for i := range tc.rounds {
				rejectThenAccept(t, p, int(i))
			}
			if d := r.dots.Load(); d != tc.dots {
				t.Errorf("relay got %d messages, want the %d accepted ones", d, tc.dots)
			}
			if n := r.conns.Load(); n != tc.sessions {
				t.Errorf("%d sessions, want %d", n, tc.sessions)
			}
		})
	}
}

func TestPipelinedAgainstGoSMTPSink(t *testing.T) {
	t.Parallel()
	s, err := sink.StartSMTP(sink.SMTPConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	p := newProvider(t, email.Config{Addr: s.Addr(), From: "noreply@example.com", TLS: email.TLSNone, MaxConns: 1})
	for i := range 4 {
		rejectThenAccept(t, p, i)
	}
	if n := s.Ledger().Stats().Unique; n != 4 {
		t.Errorf("sink accepted %d, want 4", n)
	}
	if n := s.Connections(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

// chainedSends starts a strict relay that answers each final dot only once
// the next message's commands are behind it (chained), and sends to it
// through one connection the messages to tos, all queued while the relay
// holds its greeting back, in order. It returns the relay and each send's
// error.
func chainedSends(t *testing.T, tos []string) (*strictRelay, []error) {
	t.Helper()
	r := serveStrictRelay(t, &strictRelay{chained: len(tos), greetDelay: 300 * time.Millisecond})
	p := newProvider(t, email.Config{Addr: r.ln.Addr().String(), From: "noreply@example.com", TLS: email.TLSNone, MaxConns: 1})
	errs := make([]error, len(tos))
	var wg sync.WaitGroup
	for i, to := range tos {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			errs[i] = p.Send(ctx, &dispatch.Message{ID: fmt.Sprintf("q%d", i), To: to, Body: "hi\n.hidden dot\n"})
		})
		time.Sleep(10 * time.Millisecond) // queued in this order
	}
	wg.Wait()
	return r, errs
}

// TestPipelinedAcrossMessages: while sends wait for the connection, each
// message's final dot goes out with the next message's MAIL, RCPT and DATA
// (RFC 2920 lets a message's content open a group), so a relay that
// answers the dot only then carries them all on one connection; a client
// that waits for the dot's reply first would stall until its deadline.
func TestPipelinedAcrossMessages(t *testing.T) {
	t.Parallel()
	tos := make([]string, 8)
	for i := range tos {
		tos[i] = fmt.Sprintf("u%d@example.com", i)
	}
	r, errs := chainedSends(t, tos)
	for i, err := range errs {
		if err != nil {
			t.Errorf("send %d: %v", i, err)
		}
	}
	if d, c := r.delivered.Load(), r.conns.Load(); d != 8 || c != 1 {
		t.Errorf("relay delivered %d on %d connections, want 8 on 1", d, c)
	}
}

// TestPipelinedAcrossMessagesRefusals: a message refused at its final dot
// (554) is content_rejected and the next message, whose commands followed
// the dot, goes on on the same connection; a 421 at the dot (the relay
// closes) is unavailable, and a connection lost before the dot's reply
// leaves that message in doubt (a transient error not marked not-sent);
// after either, the next message starts again on a fresh connection and is
// delivered.
func TestPipelinedAcrossMessagesRefusals(t *testing.T) {
	t.Parallel()
	r, errs := chainedSends(t, []string{"a@example.com", "badbody@example.com", "b@example.com", "close@example.com", "c@example.com",
		"drop@example.com", "d@example.com"})
	want := []string{"", "content_rejected", "", "unavailable", "", "in doubt", ""}
	for i, err := range errs {
		got := ""
		if re, ok := errors.AsType[*dispatch.RejectedError](err); ok {
			got = string(re.Reason)
		} else if errors.Is(err, dispatch.ErrUnavailable) {
			got = "unavailable"
		} else if err != nil && !errors.Is(err, dispatch.ErrNotSent) {
			got = "in doubt" // transient, and the relay may have the message
		} else if err != nil {
			got = err.Error()
		}
		if got != want[i] {
			t.Errorf("send %d: %q, want %q", i, got, want[i])
		}
	}
	if d, c := r.delivered.Load(), r.conns.Load(); d != 4 || c != 3 {
		t.Errorf("relay delivered %d on %d connections, want 4 on 3", d, c)
	}
}
