package sink

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/dispatch/email"
)

// SMTPConfig configures [StartSMTP].
type SMTPConfig struct {
	// Addr is the listen address, on loopback. Default "127.0.0.1:0".
	Addr string
	// TLS, when set, makes the sink offer STARTTLS with it.
	TLS *tls.Config
	// ImplicitTLS serves TLS from the first byte (SMTPS, as on port 465)
	// instead of offering STARTTLS; it needs TLS or SelfSignedTLS.
	ImplicitTLS bool
	// SelfSignedTLS, when TLS is nil, makes the sink offer STARTTLS with a
	// self-signed certificate for 127.0.0.1 and localhost that
	// [SMTPServer.RootCAs] trusts.
	SelfSignedTLS bool
	// Username and Password, when Username is set, make AUTH PLAIN
	// required before MAIL FROM (and, with TLS, allowed only after
	// STARTTLS).
	Username, Password string
	// Reject says which recipients are refused with 550 5.1.1 at RCPT TO.
	// Default [RejectPrefix]("reject") on the local part: reject@...,
	// reject+7@... are refused.
	Reject func(rcpt string) bool
	// Logger receives the server's connection errors. Default: none.
	Logger *slog.Logger
}

// RejectPrefix returns a predicate that holds for email addresses whose
// local part starts with prefix (case-insensitive), and for any other
// recipient (number, token) that starts with it.
func RejectPrefix(prefix string) func(string) bool {
	prefix = strings.ToLower(prefix)
	return func(to string) bool {
		return strings.HasPrefix(strings.ToLower(to), prefix)
	}
}

// SMTPServer is a local SMTP server that accepts mail into a [Ledger] keyed
// by the idempotency key in each message's Message-ID (see
// email.IDFromMessageID; a message without one is keyed "no-message-id-N").
type SMTPServer struct {
	cfg      SMTPConfig
	srv      *smtp.Server
	ln       net.Listener
	roots    *x509.CertPool
	ledger   *Ledger
	faults   *faultBox
	conns    atomic.Int64
	noID     atomic.Int64
	done     chan struct{}
	stopOnce sync.Once
}

// StartSMTP starts an SMTP sink.
func StartSMTP(cfg SMTPConfig) (*SMTPServer, error) {
	if cfg.Reject == nil {
		cfg.Reject = RejectPrefix("reject")
	}
	var roots *x509.CertPool
	if cfg.TLS == nil && cfg.SelfSignedTLS {
		cert, pool, err := selfSigned()
		if err != nil {
			return nil, err
		}
		cfg.TLS, roots = &tls.Config{Certificates: []tls.Certificate{cert}}, pool
	}
	if cfg.ImplicitTLS && cfg.TLS == nil {
		return nil, errors.New("sink: SMTPConfig.ImplicitTLS needs TLS or SelfSignedTLS")
	}
	ln, err := listenLoopback(cfg.Addr)
	if err != nil {
		return nil, err
	}
	s := &SMTPServer{cfg: cfg, ln: ln, roots: roots, ledger: newKeepingLedger(4096), faults: newFaultBox(), done: make(chan struct{})}
	s.srv = smtp.NewServer(smtp.BackendFunc(s.newSession))
	s.srv.Domain = "sluice-sink.localhost"
	s.srv.TLSConfig = cfg.TLS
	s.srv.AllowInsecureAuth = cfg.TLS == nil || cfg.ImplicitTLS
	var served net.Listener = countingListener{ln, &s.conns}
	if cfg.ImplicitTLS {
		s.srv.TLSConfig = nil // no STARTTLS inside TLS
		served = tls.NewListener(served, cfg.TLS)
	}
	s.srv.MaxMessageBytes = 10 << 20
	s.srv.MaxRecipients = 100
	s.srv.ReadTimeout = time.Minute
	s.srv.WriteTimeout = time.Minute
	s.srv.EnableSMTPUTF8 = true
	s.srv.ErrorLog = smtpLogger{cfg.Logger}
	go func() {
		defer close(s.done)
		s.srv.Serve(served)
	}()
	return s, nil
}

// Addr returns the host:port the sink listens on.
func (s *SMTPServer) Addr() string { return s.ln.Addr().String() }

// RootCAs returns a pool trusting the sink's self-signed certificate, or
// nil without SMTPConfig.SelfSignedTLS.
func (s *SMTPServer) RootCAs() *x509.CertPool { return s.roots }

// Ledger returns the ledger of accepted messages.
func (s *SMTPServer) Ledger() *Ledger { return s.ledger }

// SetFaults replaces the fault knobs.
func (s *SMTPServer) SetFaults(f Faults) { s.faults.set(f) }

// Connections returns how many connections the sink has accepted: with
// connection reuse it stays far below the number of messages.
func (s *SMTPServer) Connections() int64 { return s.conns.Load() }

// Close stops the sink, releasing held requests and closing connections.
func (s *SMTPServer) Close() error {
	var err error
	s.stopOnce.Do(func() {
		s.faults.close()
		err = s.srv.Close()
		<-s.done
	})
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

func (s *SMTPServer) newSession(*smtp.Conn) (smtp.Session, error) {
	return &smtpSession{s: s}, nil
}

type smtpSession struct {
	s      *SMTPServer
	authed bool
	rcpt   string
}

var (
	errAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	errTempFailure  = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Local error in processing, try again later"}
	errGone         = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Service shutting down"}
)

func (ss *smtpSession) AuthMechanisms() []string {
	if ss.s.cfg.Username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *smtpSession) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain || ss.s.cfg.Username == "" {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != ss.s.cfg.Username || password != ss.s.cfg.Password || (identity != "" && identity != username) {
			return smtp.ErrAuthFailed
		}
		ss.authed = true
		return nil
	}), nil
}

func (ss *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.cfg.Username != "" && !ss.authed {
		return errAuthRequired
	}
	v, f := ss.s.faults.apply(nil)
	switch v {
	case gone:
		return errGone
	case throttle:
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many messages, try again in " + strconv.Itoa(retryAfterSeconds(f.RetryAfter)) + " seconds"}
	case fail:
		return errTempFailure
	}
	return nil
}

func (ss *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if ss.s.cfg.Reject(to) {
		// Like Postfix, quote the address: the provider must not echo it.
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<" + to + ">: Recipient address rejected: User unknown in local recipient table"}
	}
	ss.rcpt = to
	return nil
}

func (ss *smtpSession) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Malformed message"}
	}
	id, ok := email.IDFromMessageID(msg.Header.Get("Message-Id"))
	if !ok {
		id = "no-message-id-" + strconv.FormatInt(ss.s.noID.Add(1), 10)
	}
	m := &dispatch.Message{
		ID:           id,
		Tenant:       msg.Header.Get(email.HeaderTenant),
		Conversation: msg.Header.Get(email.HeaderConversation),
		Channel:      dispatch.ChannelEmail,
		To:           ss.rcpt,
	}
	for _, k := range ledgerHeaders {
		if v := msg.Header.Get(k); v != "" {
			if m.Headers == nil {
				m.Headers = map[string]string{}
			}
			m.Headers[k] = v
		}
	}
	dec := new(mime.WordDecoder)
	if subj, err := dec.DecodeHeader(msg.Header.Get("Subject")); err == nil {
		m.Subject = subj
	}
	m.Body, m.HTML = decodeBody(msg)
	ss.s.ledger.Add(m)
	ss.s.faults.holdReply()
	return nil
}

// ledgerHeaders are the headers the SMTP sink keeps in its ledger's copy
// of a message (Message.Headers), for tests to check.
var ledgerHeaders = []string{"List-Unsubscribe", "List-Unsubscribe-Post"}

func (ss *smtpSession) Reset()        { ss.rcpt = "" }
func (ss *smtpSession) Logout() error { return nil }

// decodeBody returns the text and HTML bodies of a single-part or
// multipart/alternative message, with line ends as "\n".
func decodeBody(msg *mail.Message) (text, html string) {
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		mt = "text/plain"
	}
	if !strings.HasPrefix(mt, "multipart/") {
		return decodePart(msg.Header.Get("Content-Transfer-Encoding"), msg.Body), ""
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err != nil {
			return text, html
		}
		pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		body := decodePart(p.Header.Get("Content-Transfer-Encoding"), p)
		switch pt {
		case "text/plain":
			text = body
		case "text/html":
			html = body
		}
	}
}

func decodePart(cte string, r io.Reader) string {
	if strings.EqualFold(cte, "quoted-printable") {
		r = quotedprintable.NewReader(r)
	}
	b, _ := io.ReadAll(io.LimitReader(r, 1<<20))
	return strings.TrimSuffix(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n")
}

// smtpLogger adapts a *slog.Logger to go-smtp's Logger.
type smtpLogger struct{ l *slog.Logger }

func (l smtpLogger) Printf(format string, v ...any) {
	if l.l != nil {
		l.l.Debug("smtp sink", "msg", strings.TrimSpace(fmt.Sprintf(format, v...)))
	}
}

func (l smtpLogger) Println(v ...any) {
	if l.l != nil {
		l.l.Debug("smtp sink", "msg", strings.TrimSpace(fmt.Sprintln(v...)))
	}
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}
