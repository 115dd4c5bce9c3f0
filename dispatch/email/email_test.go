package email_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/dispatch/email"
	"github.com/sluicehq/sluice/dispatch/providertest"
	"github.com/sluicehq/sluice/dispatch/sink"
	"github.com/sluicehq/sluice/wire"
)

// startSink starts an SMTP sink with STARTTLS and AUTH and returns it with
// a provider configuration for it.
func startSink(t *testing.T) (*sink.SMTPServer, email.Config) {
	t.Helper()
	s, err := sink.StartSMTP(sink.SMTPConfig{SelfSignedTLS: true, Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, email.Config{
		Addr: s.Addr(), From: "Sluice <noreply@example.com>",
		TLSConfig: &tls.Config{RootCAs: s.RootCAs()}, Username: "u", Password: "p",
		HeloName: "test.example", MaxConns: 2, ThrottleRetryAfter: 11 * time.Second,
	}
}

func newProvider(t *testing.T, cfg email.Config) *email.Provider {
	t.Helper()
	p, err := email.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) providertest.Fixture {
		s, cfg := startSink(t)
		return providertest.Fixture{
			Provider:       newProvider(t, cfg),
			Sink:           s,
			Channel:        dispatch.ChannelEmail,
			Address:        func(i int) string { return fmt.Sprintf("user%d@example.com", i) },
			Rejected:       "reject.me@example.com",
			RejectedReason: wire.ReasonRecipientRejected,
			// SMTP has no Retry-After: a 421 waits the configured time.
			ThrottleRetryAfter: func(time.Duration) time.Duration { return 11 * time.Second },
			CarriesSubject:     true,
		}
	})
}

func TestConnectionReuse(t *testing.T) {
	t.Parallel()
	s, cfg := startSink(t)
	cfg.MaxMessagesPerConn = 10
	p := newProvider(t, cfg)
	for i := range 25 {
		m := &dispatch.Message{ID: fmt.Sprintf("m%d", i), To: fmt.Sprintf("u%d@example.com", i)}
		if err := p.Send(t.Context(), m); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if n := s.Ledger().Stats().Unique; n != 25 {
		t.Fatalf("sink accepted %d, want 25", n)
	}
	// One session carries 10 messages, so 25 sequential sends need 3.
	if n := s.Connections(); n != 3 {
		t.Errorf("%d SMTP connections for 25 sequential messages at 10 per connection, want 3", n)
	}
}

func TestPoolIsBounded(t *testing.T) {
	t.Parallel()
	s, cfg := startSink(t)
	cfg.MaxConns = 2
	p := newProvider(t, cfg)
	errs := make(chan error, 40)
	for i := range 40 {
		go func() {
			errs <- p.Send(t.Context(), &dispatch.Message{ID: fmt.Sprintf("c%d", i), To: "x@example.com"})
		}()
	}
	for range 40 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Connections(); n > 2 {
		t.Errorf("%d SMTP connections with MaxConns 2", n)
	}
	if n := s.Ledger().Stats().Unique; n != 40 {
		t.Errorf("sink accepted %d, want 40", n)
	}
}

func TestRelayDropsIdleSession(t *testing.T) {
	t.Parallel()
	s, err := sink.StartSMTP(sink.SMTPConfig{})
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	p := newProvider(t, email.Config{Addr: addr, From: "noreply@example.com", TLS: email.TLSNone})
	if err := p.Send(t.Context(), &dispatch.Message{ID: "a", To: "a@example.com"}); err != nil {
		t.Fatal(err)
	}
	// Restart the relay on the same address: the pooled session is dead,
	// and the next send must replace it rather than fail.
	s.Close()
	s2, err := sink.StartSMTP(sink.SMTPConfig{Addr: addr})
	if err != nil {
		t.Skipf("cannot rebind %s: %v", addr, err)
	}
	t.Cleanup(func() { s2.Close() })
	if err := p.Send(t.Context(), &dispatch.Message{ID: "b", To: "b@example.com"}); err != nil {
		t.Fatalf("send after the relay restarted: %v", err)
	}
	if !s2.Ledger().Has("b") {
		t.Fatal("message b not in the new relay's ledger")
	}
}

func TestStartTLSRequired(t *testing.T) {
	t.Parallel()
	s, err := sink.StartSMTP(sink.SMTPConfig{}) // offers no STARTTLS
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	p := newProvider(t, email.Config{Addr: s.Addr(), From: "noreply@example.com"})
	err = p.Send(t.Context(), &dispatch.Message{ID: "a", To: "a@example.com"})
	if err == nil || errors.Is(err, dispatch.ErrRejected) || s.Ledger().Has("a") {
		t.Fatalf("send without STARTTLS: %v, want a transient error and nothing sent", err)
	}
}

func TestAuthFailureIsTransient(t *testing.T) {
	t.Parallel()
	s, cfg := startSink(t)
	cfg.Password = "wrong"
	p := newProvider(t, cfg)
	err := p.Send(t.Context(), &dispatch.Message{ID: "a", To: "a@example.com"})
	if err == nil || errors.Is(err, dispatch.ErrRejected) || errors.Is(err, dispatch.ErrUnavailable) {
		t.Fatalf("send with a wrong password: %v, want a transient error", err)
	}
	if s.Ledger().Has("a") {
		t.Fatal("message accepted without authentication")
	}
}

func TestHTMLAndHeaders(t *testing.T) {
	t.Parallel()
	s, cfg := startSink(t)
	p := newProvider(t, cfg)
	m := &dispatch.Message{
		ID: "id with spaces/and.dots%", Tenant: "acme", Conversation: "spring-sale", To: "a@example.com",
		Subject: "Déjà vu, a long subject " + strings.Repeat("é", 80), Body: "plain\nline two", HTML: "<p>Hi <b>there</b></p>",
	}
	if err := p.Send(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	got, ok := s.Ledger().Message(m.ID)
	if !ok {
		t.Fatalf("ledger has no message keyed %q", m.ID)
	}
	if got.Subject != m.Subject || got.Body != m.Body || got.HTML != m.HTML {
		t.Errorf("sink decoded subject %q body %q html %q", got.Subject, got.Body, got.HTML)
	}
	if got.Tenant != "acme" || got.Conversation != "spring-sale" {
		t.Errorf("sink saw tenant %q conversation %q", got.Tenant, got.Conversation)
	}
	if s.Ledger().Conversation("acme", "spring-sale") != 1 {
		t.Error("per-conversation count missing")
	}
}

func TestImplicitTLS(t *testing.T) {
	t.Parallel()
	s, err := sink.StartSMTP(sink.SMTPConfig{ImplicitTLS: true, SelfSignedTLS: true, Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	p := newProvider(t, email.Config{
		Addr: s.Addr(), From: "noreply@example.com", TLS: email.TLSImplicit,
		TLSConfig: &tls.Config{RootCAs: s.RootCAs()}, Username: "u", Password: "p",
	})
	if err := p.Send(t.Context(), &dispatch.Message{ID: "tls", To: "a@example.com"}); err != nil {
		t.Fatal(err)
	}
	if !s.Ledger().Has("tls") {
		t.Fatal("not delivered over implicit TLS")
	}
	// A client that does not trust the certificate must not send.
	bad := newProvider(t, email.Config{Addr: s.Addr(), From: "noreply@example.com", TLS: email.TLSImplicit, Username: "u", Password: "p"})
	if err := bad.Send(t.Context(), &dispatch.Message{ID: "untrusted", To: "a@example.com"}); err == nil || s.Ledger().Has("untrusted") {
		t.Fatalf("send to an untrusted certificate: %v", err)
	}
}
