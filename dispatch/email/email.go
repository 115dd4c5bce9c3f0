// Package email sends messages over SMTP to one relay, with STARTTLS or
// implicit TLS and AUTH PLAIN when configured, over a bounded number of
// connections reused across messages.
//
// The client is the standard library's net/smtp, which does what a relay
// client needs (EHLO, STARTTLS, AUTH, MAIL/RCPT/DATA, RSET, QUIT), never
// touches connection deadlines (so the send's context bounds every read and
// write), and reports replies as *textproto.Error with the reply code.
//
// # Outcomes
//
//   - 5xx to RCPT: [dispatch.RejectedError] with reason recipient_rejected
//     (550 5.1.1 user unknown, 553 mailbox name not allowed, ...);
//   - 5xx to DATA or after the final dot: content_rejected;
//   - 421 (the relay is closing the channel, often a throttle):
//     [dispatch.UnavailableError] with RetryAfter Config.ThrottleRetryAfter;
//   - 4xx anywhere, 5xx to MAIL FROM (the relay refuses our sender: a
//     configuration problem, not the message's), connection and TLS errors,
//     timeouts: transient errors.
//
// # Pipelining and connections
//
// Each connection belongs to a session, a goroutine that carries the sends
// handed to it one after the other; at most Config.MaxConns sessions run,
// started as sends find none free. Where the relay advertises PIPELINING
// (RFC 2920), MAIL FROM, RCPT TO and DATA go out together and their replies
// are read in order, each mapped as above by its own command; the message
// follows the 354, and when other sends are waiting (every session busy)
// the next one's MAIL FROM, RCPT TO and DATA go out in the same write as
// the final dot: one write and one round trip per message instead of two,
// which is what a relay far away is paid in. A connection carries messages
// until Config.MaxMessagesPerConn (default no cap) or until the relay ends
// it (421, or a closed connection found at the next MAIL, which is retried
// once on a fresh connection; a send whose commands followed a dot on a
// connection that was then lost starts again on a fresh one: none of its
// content had gone out).
//
// Error texts carry the reply code and enhanced status code, never the
// relay's free text, which often quotes the recipient address.
//
// # Idempotency
//
// The Message-ID header is <ID@Config.MessageIDDomain> with the message ID
// escaped by [MessageID], so a redelivered activation produces the same
// Message-ID and receivers and the sink's ledger can see the duplicate.
package email

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"regexp"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/wire"
)

// Provider sends email through one SMTP relay. It is safe for concurrent
// use; Close it to quit its connections.
type Provider struct {
	cfg        Config
	host       string
	envFrom    string
	fromHeader string
	tls        *tls.Config
	sessions   *sessions
}

// New returns a Provider for cfg. It does not connect: the first Send does.
func New(cfg Config) (*Provider, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	from, _ := mail.ParseAddress(cfg.From)
	host, _, _ := net.SplitHostPort(cfg.Addr)
	p := &Provider{cfg: cfg, host: host, envFrom: from.Address, fromHeader: from.String()}
	if cfg.TLSConfig != nil {
		p.tls = cfg.TLSConfig.Clone()
	} else {
		p.tls = &tls.Config{}
	}
	if p.tls.ServerName == "" {
		p.tls.ServerName = host
	}
	p.sessions = newSessions(p, cfg.MaxConns)
	return p, nil
}

// Close quits the connections once the messages being sent are: Sends
// after Close fail.
func (p *Provider) Close() error {
	p.sessions.close()
	return nil
}

// Addr returns the relay address.
func (p *Provider) Addr() string { return p.cfg.Addr }

// dial opens, secures and authenticates one session.
func (p *Provider) dial(ctx context.Context) (*conn, error) {
	d := &net.Dialer{KeepAlive: 30 * time.Second}
	var nc net.Conn
	var err error
	if p.cfg.TLS == TLSImplicit {
		nc, err = (&tls.Dialer{NetDialer: d, Config: p.tls}).DialContext(ctx, "tcp", p.cfg.Addr)
	} else {
		nc, err = d.DialContext(ctx, "tcp", p.cfg.Addr)
	}
	if err != nil {
		return nil, &stageError{stage: "connect", err: err}
	}
	c := &conn{nc: nc}
	unbind := c.bind(ctx)
	err = p.handshake(c)
	if clean := unbind(); err == nil && !clean {
		err = ctx.Err()
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func (p *Provider) handshake(c *conn) error {
	var err error
	if c.c, err = smtp.NewClient(c.nc, p.host); err != nil {
		return &stageError{stage: "greeting", err: err}
	}
	if err := c.c.Hello(p.cfg.HeloName); err != nil {
		return &stageError{stage: "ehlo", err: err}
	}
	if p.cfg.TLS == TLSStartTLS {
		if ok, _ := c.c.Extension("STARTTLS"); !ok {
			return &stageError{stage: "starttls", err: errors.New("relay does not offer STARTTLS (set TLS to \"none\" for a trusted local relay)")}
		}
		if err := c.c.StartTLS(p.tls); err != nil {
			return &stageError{stage: "starttls", err: err}
		}
	}
	if p.cfg.Username != "" {
		if err := c.c.Auth(smtp.PlainAuth("", p.cfg.Username, p.cfg.Password, p.host)); err != nil {
			return &stageError{stage: "auth", err: err}
		}
	}
	c.pipelining, _ = c.c.Extension("PIPELINING")
	c.pipelining = c.pipelining && !p.cfg.DisablePipelining
	if ok, _ := c.c.Extension("8BITMIME"); ok {
		c.mailParams += " BODY=8BITMIME"
	}
	if ok, _ := c.c.Extension("SMTPUTF8"); ok {
		c.mailParams += " SMTPUTF8"
	}
	return nil
}

// Send delivers m to m.To through the relay. See the package documentation
// for how replies map to outcomes.
func (p *Provider) Send(ctx context.Context, m *dispatch.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if strings.ContainsAny(m.To, "\r\n<>") {
		return &dispatch.RejectedError{Reason: wire.ReasonRecipientRejected, Detail: "address not fit for an SMTP envelope"}
	}
	req := &request{ctx: ctx, to: m.To, msg: compose(m, p.fromHeader, p.cfg.MessageIDDomain, time.Now()), done: make(chan error, 1)}
	if err := p.sessions.submit(ctx, req); err != nil {
		return p.classify(ctx, err)
	}
	// Every read and write for req is bound by ctx (conn.bind), so the
	// session settles it soon after ctx ends.
	return <-req.done
}

// transactLockstep runs one mail transaction a command at a time.
func (p *Provider) transactLockstep(c *conn, to string, msg []byte) error {
	if err := c.c.Mail(p.envFrom); err != nil {
		return &stageError{stage: "mail", err: err}
	}
	if err := c.c.Rcpt(to); err != nil {
		return &stageError{stage: "rcpt", err: err}
	}
	w, err := c.c.Data()
	if err != nil {
		return &stageError{stage: "data", err: err}
	}
	if _, err := w.Write(msg); err != nil {
		w.Close()
		return &stageError{stage: "data", err: err}
	}
	if err := w.Close(); err != nil {
		return &stageError{stage: "data", err: err}
	}
	return nil
}

// recover reports whether c can carry another transaction after err,
// resetting the failed transaction if needed.
func (p *Provider) recover(ctx context.Context, c *conn, err error) bool {
	var te *textproto.Error
	if !errors.As(err, &te) || te.Code == 421 {
		return false
	}
	unbind := c.bind(ctx)
	rerr := c.c.Reset()
	return unbind() && rerr == nil
}

// staleSession reports whether err is what a relay that dropped an idle
// session produces at the first command: EOF, a reset, or 421.
func staleSession(err error) bool {
	var se *stageError
	if !errors.As(err, &se) || se.stage != "mail" {
		return false
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code == 421
	}
	var ne net.Error
	return !errors.As(err, &ne) || !ne.Timeout()
}

// stageError is a failure at one step of the SMTP dialogue.
type stageError struct {
	stage string
	err   error
}

func (e *stageError) Error() string { return "smtp " + e.stage + ": " + e.err.Error() }
func (e *stageError) Unwrap() error { return e.err }

var enhancedRE = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}\b`)

// classify maps a failure to the dispatch outcome, marking with
// dispatch.NotSent the transient failures that prove the relay did not take
// the message: every failure before DATA (connect, greeting, EHLO,
// STARTTLS, AUTH, MAIL, RCPT, a wait for a session), and a 4xx
// reply to DATA or after the final dot. A network error or timeout during
// or after DATA leaves the message in doubt: the relay may have queued it.
func (p *Provider) classify(ctx context.Context, err error) error {
	out := p.classifyReply(ctx, err)
	if out == nil || errors.Is(out, dispatch.ErrRejected) || errors.Is(out, dispatch.ErrUnavailable) || errors.Is(out, context.Canceled) {
		return out
	}
	stage := "connect"
	if se, ok := errors.AsType[*stageError](err); ok {
		stage = se.stage
	}
	_, replied := errors.AsType[*textproto.Error](err)
	if stage != "data" || replied {
		return dispatch.NotSent(out)
	}
	return out
}

// classifyReply maps a failure to the dispatch outcome.
func (p *Provider) classifyReply(ctx context.Context, err error) error {
	stage := "connect"
	var se *stageError
	if errors.As(err, &se) {
		stage = se.stage
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		code := fmt.Sprintf("smtp %d", te.Code)
		if enh := enhancedRE.FindString(te.Msg); enh != "" {
			code += " " + enh
		}
		switch {
		case te.Code == 421:
			return &dispatch.UnavailableError{RetryAfter: p.cfg.ThrottleRetryAfter, Cause: fmt.Errorf("email: relay closing channel at %s: %s", stage, code)}
		case te.Code >= 500 && stage == "rcpt":
			return &dispatch.RejectedError{Reason: wire.ReasonRecipientRejected, Detail: code}
		case te.Code >= 500 && stage == "data":
			return &dispatch.RejectedError{Reason: wire.ReasonContentRejected, Detail: code}
		case stage == "rcpt" || stage == "data":
			return fmt.Errorf("email: relay deferred at %s: %s", stage, code)
		default:
			// Before any recipient is named the relay's text is safe to
			// keep, and it is what an operator needs ("authentication
			// required", "sender rejected").
			return fmt.Errorf("email: relay refused %s: %s: %s", stage, code, firstLine(te.Msg))
		}
	}
	if errors.Is(err, errClosed) {
		return err
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("email: smtp %s: %w", stage, cerr)
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return fmt.Errorf("email: smtp %s: %w", stage, context.DeadlineExceeded)
	}
	if se != nil {
		err = se.err
	}
	if (stage == "rcpt" || stage == "data") && !isNetError(err) {
		// Not a network error: its text might quote the recipient.
		err = errors.New("connection failed")
	}
	return fmt.Errorf("email: smtp %s: %w", stage, err)
}

func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
