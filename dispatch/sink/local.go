package sink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/sluicehq/sluice/dispatch/email"
	"github.com/sluicehq/sluice/dispatch/providerset"
	"github.com/sluicehq/sluice/dispatch/push"
)

// LocalConfig configures [StartLocal].
type LocalConfig struct {
	// Host is the loopback address every sink listens on. Default
	// "127.0.0.1".
	Host string
	// SMTPPort, TwilioPort, FCMPort and APNsPort are the sinks' ports.
	// Default 0: free ports chosen by the system.
	SMTPPort, TwilioPort, FCMPort, APNsPort int
	// Logger receives the SMTP server's connection errors at debug level.
	// Default: none.
	Logger *slog.Logger
}

// Local is the four protocol sinks of one machine, started together.
type Local struct {
	SMTP   *SMTPServer
	Twilio *TwilioServer
	FCM    *FCMServer
	APNs   *APNsServer

	roots *x509.CertPool
}

// Local SMTP credentials: the sink requires AUTH PLAIN after STARTTLS, so
// that `sluice dev` exercises the same path as a real relay.
const (
	localSMTPUser     = "sluice"
	localSMTPPassword = "sluice-dev"
)

// StartLocal starts an SMTP sink (STARTTLS with a self-signed certificate,
// AUTH PLAIN required), a Twilio-shaped sink, an FCM-shaped sink with its
// token endpoint, and an APNs-shaped HTTP/2 sink over TLS, all on loopback.
// ctx only bounds the start; stop the sinks with Close. [Local.Config]
// returns provider configurations that point at them and trust their
// certificate.
func StartLocal(ctx context.Context, cfg LocalConfig) (_ *Local, err error) {
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	addr := func(port int) string { return net.JoinHostPort(cfg.Host, strconv.Itoa(port)) }
	cert, roots, err := selfSigned()
	if err != nil {
		return nil, fmt.Errorf("sink: certificate: %w", err)
	}
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{cert}}
	l := &Local{roots: roots}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	if l.SMTP, err = StartSMTP(SMTPConfig{Addr: addr(cfg.SMTPPort), TLS: tlsConfig, Username: localSMTPUser, Password: localSMTPPassword, Logger: cfg.Logger}); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if l.Twilio, err = StartTwilio(TwilioConfig{Addr: addr(cfg.TwilioPort)}); err != nil {
		return nil, err
	}
	if l.FCM, err = StartFCM(FCMConfig{Addr: addr(cfg.FCMPort)}); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if l.APNs, err = StartAPNs(APNsConfig{Addr: addr(cfg.APNsPort), TLS: tlsConfig}); err != nil {
		return nil, err
	}
	return l, nil
}

// EmailConfig returns the configuration of an email.Provider that sends to
// the SMTP sink with STARTTLS and AUTH.
func (l *Local) EmailConfig() email.Config {
	return email.Config{
		Addr: l.SMTP.Addr(), From: "sluice dev <noreply@sluice.localhost>",
		TLS: email.TLSStartTLS, TLSConfig: &tls.Config{RootCAs: l.roots},
		Username: localSMTPUser, Password: localSMTPPassword,
		HeloName: "sluice.localhost", MaxConns: 8,
	}
}

// APNsConfig returns the configuration of a push.APNs provider that sends
// to the APNs sink, trusting its certificate.
func (l *Local) APNsConfig() push.APNsConfig {
	c := l.APNs.Config()
	c.RootCAs = l.roots
	return c
}

// Config returns a provider set configuration with every provider pointing
// at its sink, ready for providerset.New.
func (l *Local) Config() providerset.Config {
	e, s, f, a := l.EmailConfig(), l.Twilio.Config(), l.FCM.Config(), l.APNsConfig()
	return providerset.Config{Email: &e, SMS: &s, FCM: &f, APNs: &a}
}

// String lists the sinks' addresses, for a banner.
func (l *Local) String() string {
	return fmt.Sprintf("smtp %s, twilio %s, fcm %s, apns %s", l.SMTP.Addr(), l.Twilio.URL(), l.FCM.URL(), l.APNs.URL())
}

// SetFaults sets the same faults on every sink.
func (l *Local) SetFaults(f Faults) {
	l.SMTP.SetFaults(f)
	l.Twilio.SetFaults(f)
	l.FCM.SetFaults(f)
	l.APNs.SetFaults(f)
}

// Stats returns the sum of the sinks' ledger totals.
func (l *Local) Stats() Stats {
	return l.SMTP.Ledger().Stats().Add(l.Twilio.Ledger().Stats()).Add(l.FCM.Ledger().Stats()).Add(l.APNs.Ledger().Stats())
}

// Count returns how many times any sink accepted the message with this
// idempotency key (for APNs, under push.APNsID(id)).
func (l *Local) Count(id string) int {
	return l.SMTP.Ledger().Count(id) + l.Twilio.Ledger().Count(id) + l.FCM.Ledger().Count(id) + l.APNs.Ledger().Count(push.APNsID(id))
}

// Close stops every sink that was started.
func (l *Local) Close() error {
	var errs []error
	if l.SMTP != nil {
		errs = append(errs, l.SMTP.Close())
	}
	if l.Twilio != nil {
		errs = append(errs, l.Twilio.Close())
	}
	if l.FCM != nil {
		errs = append(errs, l.FCM.Close())
	}
	if l.APNs != nil {
		errs = append(errs, l.APNs.Close())
	}
	return errors.Join(errs...)
}
