package email

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/mail"
	"os"
	"time"
)

// TLSMode says how the connection to the relay is secured.
type TLSMode string

const (
	// TLSStartTLS connects in plain text and requires the relay to offer
	// STARTTLS before anything else is sent (submission, port 587).
	TLSStartTLS TLSMode = "starttls"
	// TLSImplicit connects with TLS from the first byte (SMTPS, port 465).
	TLSImplicit TLSMode = "tls"
	// TLSNone never encrypts. Only for relays on a trusted network, such as a
	// local MTA or the sinks of `sluice dev`.
	TLSNone TLSMode = "none"
)

// Config configures a [Provider]: one relay, a bounded number of
// connections to it.
type Config struct {
	// Addr is the relay's host:port. Required.
	Addr string
	// From is the sender: an address, optionally with a display name
	// ("Sluice <noreply@example.com>"). It is both the envelope sender
	// (MAIL FROM) and the From header. Required.
	From string
	// TLS selects how the connection is secured. Default TLSStartTLS.
	TLS TLSMode
	// TLSConfig configures TLS (trusted roots, client certificates). Its
	// ServerName defaults to the host of Addr. Default: the system roots.
	TLSConfig *tls.Config
	// Username and Password enable AUTH PLAIN when Username is set. AUTH is
	// refused over an unencrypted connection to anything but localhost.
	Username, Password string
	// HeloName is the name sent in EHLO. Default: the host name of this
	// machine, or "localhost" if it has none.
	HeloName string
	// MaxConns bounds the connections open to the relay at once; a Send
	// beyond it waits for a free connection (or its context). Default 4.
	MaxConns int
	// MaxMessagesPerConn is how many messages one connection carries before
	// it is closed and replaced, for relays that cap it. Default 0: no cap;
	// a connection carries messages for as long as the relay keeps it (a
	// relay that has had enough answers 421 or closes, and the next send
	// dials anew).
	MaxMessagesPerConn int
	// DisablePipelining sends MAIL FROM, RCPT TO and DATA one at a time even
	// when the relay advertises PIPELINING (RFC 2920). Default false: a
	// relay that offers pipelining gets the three commands in one write,
	// behind the previous message's final dot when sends are waiting.
	DisablePipelining bool
	// IdleTimeout quits a connection unused for that long instead of
	// reusing it (relays drop idle clients after a few minutes). Default 30s.
	IdleTimeout time.Duration
	// MessageIDDomain is the right-hand side of the Message-ID header
	// <ID@domain>. Default "sluice".
	MessageIDDomain string
	// ThrottleRetryAfter is the RetryAfter of the [dispatch.UnavailableError]
	// returned when the relay answers 421 (service not available, closing
	// the channel), which SMTP gives no Retry-After for. Default 30s.
	ThrottleRetryAfter time.Duration
}

func (c *Config) validate() error {
	if c.Addr == "" {
		return fmt.Errorf("email: Config.Addr is required")
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("email: Config.Addr %q: %w", c.Addr, err)
	}
	if c.From == "" {
		return fmt.Errorf("email: Config.From is required")
	}
	if _, err := mail.ParseAddress(c.From); err != nil {
		return fmt.Errorf("email: Config.From %q: %w", c.From, err)
	}
	switch c.TLS {
	case "", TLSStartTLS, TLSImplicit, TLSNone:
	default:
		return fmt.Errorf("email: Config.TLS %q: want %q, %q or %q", c.TLS, TLSStartTLS, TLSImplicit, TLSNone)
	}
	if c.Password != "" && c.Username == "" {
		return fmt.Errorf("email: Config.Password is set but Config.Username is empty")
	}
	if c.MaxConns < 0 || c.MaxMessagesPerConn < 0 || c.IdleTimeout < 0 || c.ThrottleRetryAfter < 0 {
		return fmt.Errorf("email: Config.MaxConns, MaxMessagesPerConn, IdleTimeout and ThrottleRetryAfter must not be negative")
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.TLS == "" {
		c.TLS = TLSStartTLS
	}
	if c.HeloName == "" {
		c.HeloName = "localhost"
		if h, err := os.Hostname(); err == nil && h != "" {
			c.HeloName = h
		}
	}
	if c.MaxConns == 0 {
		c.MaxConns = 4
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 30 * time.Second
	}
	if c.MessageIDDomain == "" {
		c.MessageIDDomain = "sluice"
	}
	if c.ThrottleRetryAfter == 0 {
		c.ThrottleRetryAfter = 30 * time.Second
	}
}
