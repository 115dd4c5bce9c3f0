// Package providerset builds the providers of every channel from one
// configuration, each behind its own circuit breaker and rate limiter
// (dispatch.Guard): email over SMTP, SMS in the shape of Twilio, and push
// routed between FCM and APNs. `sluice serve` builds one from flags,
// `sluice dev` from the local sinks (sink.StartLocal).
package providerset

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/dispatch/email"
	"github.com/sluicehq/sluice/dispatch/push"
	"github.com/sluicehq/sluice/dispatch/sms"
)

// Provider names: the GuardConfig names, hence the provider label of the
// breaker metrics, and the keys of Config.Rates.
const (
	SMTP   = "smtp"
	Twilio = "twilio"
	FCM    = "fcm"
	APNs   = "apns"
)

// Config says which providers to build. A nil provider config leaves that
// provider out; a channel with no provider at all is absent from
// [Set.Providers].
type Config struct {
	Email *email.Config
	SMS   *sms.Config
	FCM   *push.FCMConfig
	APNs  *push.APNsConfig
	// Breaker is the guard configuration of every provider; its Name, Rate
	// and Burst are set per provider. Zero fields take the defaults of
	// dispatch.GuardConfig.
	Breaker dispatch.GuardConfig
	// Rates maps a provider name (SMTP, Twilio, FCM, APNs, or a fallback's
	// name such as smtp_2) to its rate limit in messages per second; an
	// absent name or 0 means unlimited.
	Rates map[string]float64

	// EmailFallbacks are further SMTP relays, tried in order when the ones
	// before did not take a message (dispatch.Failover). They need Email.
	// Their providers are named smtp_2, smtp_3, ... (FallbackName).
	EmailFallbacks []email.Config
	// SMSFallbacks are further Twilio accounts, tried in order after SMS;
	// named twilio_2, twilio_3, ... They need SMS.
	SMSFallbacks []sms.Config
	// Failover configures the chains of channels with fallbacks.
	Failover dispatch.FailoverConfig
}

// FallbackName is the provider name of the i-th provider (0-based) of the
// chain whose first provider is named base: base itself for i 0, else
// base_<i+1> ("smtp_2").
func FallbackName(base string, i int) string {
	if i == 0 {
		return base
	}
	return fmt.Sprintf("%s_%d", base, i+1)
}

// names returns the provider names cfg builds, for checking Rates.
func (cfg *Config) names() map[string]bool {
	out := map[string]bool{SMTP: true, Twilio: true, FCM: true, APNs: true}
	for i := range cfg.EmailFallbacks {
		out[FallbackName(SMTP, i+1)] = true
	}
	for i := range cfg.SMSFallbacks {
		out[FallbackName(Twilio, i+1)] = true
	}
	return out
}

func (cfg *Config) validate() error {
	switch {
	case len(cfg.EmailFallbacks) > 0 && cfg.Email == nil:
		return errors.New("providerset: Config.EmailFallbacks needs Config.Email, the first relay")
	case len(cfg.SMSFallbacks) > 0 && cfg.SMS == nil:
		return errors.New("providerset: Config.SMSFallbacks needs Config.SMS, the first account")
	}
	known := cfg.names()
	for name, r := range cfg.Rates {
		if !known[name] {
			return fmt.Errorf("providerset: Config.Rates: unknown provider %q (want one of %s, %s, %s, %s or a configured fallback such as %s)", name, SMTP, Twilio, FCM, APNs, FallbackName(SMTP, 1))
		}
		if r < 0 {
			return fmt.Errorf("providerset: Config.Rates[%s] = %v: must not be negative", name, r)
		}
	}
	return nil
}

// Set is a built set of providers. It is a prometheus.Collector of every
// guard's metrics.
type Set struct {
	providers map[dispatch.Channel]dispatch.Provider
	guards    []*dispatch.Guarded
	failovers []*dispatch.Failover
	closers   []io.Closer
}

// New builds the providers of cfg. logger may be nil. reg may be nil: then
// register the Set itself once a registry exists.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Set, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Set{providers: make(map[dispatch.Channel]dispatch.Provider)}
	guard := func(name string, p dispatch.Provider, c io.Closer) (*dispatch.Guarded, error) {
		gc := cfg.Breaker
		gc.Name, gc.Rate, gc.Burst = name, cfg.Rates[name], 0
		g, err := dispatch.Guard(p, gc, logger, nil)
		if err != nil {
			return nil, err
		}
		s.guards = append(s.guards, g)
		s.closers = append(s.closers, c)
		return g, nil
	}
	fail := func(err error) (*Set, error) {
		s.Close()
		return nil, err
	}
	if cfg.Email != nil {
		relays := append([]email.Config{*cfg.Email}, cfg.EmailFallbacks...)
		p, err := s.chain(SMTP, len(relays), cfg.Failover, func(i int) (*dispatch.Guarded, error) {
			p, err := email.New(relays[i])
			if err != nil {
				return nil, fmt.Errorf("providerset: %s: %w", FallbackName(SMTP, i), err)
			}
			return guard(FallbackName(SMTP, i), p, p)
		})
		if err != nil {
			return fail(err)
		}
		s.providers[dispatch.ChannelEmail] = p
	}
	if cfg.SMS != nil {
		accounts := append([]sms.Config{*cfg.SMS}, cfg.SMSFallbacks...)
		p, err := s.chain(Twilio, len(accounts), cfg.Failover, func(i int) (*dispatch.Guarded, error) {
			p, err := sms.New(accounts[i])
			if err != nil {
				return nil, fmt.Errorf("providerset: %s: %w", FallbackName(Twilio, i), err)
			}
			return guard(FallbackName(Twilio, i), p, p)
		})
		if err != nil {
			return fail(err)
		}
		s.providers[dispatch.ChannelSMS] = p
	}
	var router push.Router
	if cfg.FCM != nil {
		p, err := push.NewFCM(*cfg.FCM)
		if err != nil {
			return fail(err)
		}
		if router.FCM, err = guard(FCM, p, p); err != nil {
			return fail(err)
		}
	}
	if cfg.APNs != nil {
		p, err := push.NewAPNs(*cfg.APNs)
		if err != nil {
			return fail(err)
		}
		if router.APNs, err = guard(APNs, p, p); err != nil {
			return fail(err)
		}
	}
	if router.FCM != nil || router.APNs != nil {
		s.providers[dispatch.ChannelPush] = &router
	}
	if reg != nil {
		if err := reg.Register(s); err != nil {
			return fail(err)
		}
	}
	return s, nil
}

// chain builds the n guarded providers of one channel: the guard itself
// when n is 1, else a dispatch.Failover over them.
func (s *Set) chain(base string, n int, fc dispatch.FailoverConfig, build func(i int) (*dispatch.Guarded, error)) (dispatch.Provider, error) {
	gs := make([]*dispatch.Guarded, n)
	for i := range gs {
		g, err := build(i)
		if err != nil {
			return nil, err
		}
		gs[i] = g
	}
	if n == 1 {
		return gs[0], nil
	}
	f, err := dispatch.NewFailover(gs, fc)
	if err != nil {
		return nil, fmt.Errorf("providerset: %s failover: %w", base, err)
	}
	s.failovers = append(s.failovers, f)
	return f, nil
}

// Providers returns the provider of each configured channel, for
// node.Config.Providers. Email and SMS are *dispatch.Guarded, or a
// *dispatch.Failover over several when fallbacks are configured; push a
// *push.Router over guarded FCM and APNs providers; all have an Open() bool
// method that reports an open breaker (for a chain and for push: every
// provider's).
func (s *Set) Providers() map[dispatch.Channel]dispatch.Provider {
	out := make(map[dispatch.Channel]dispatch.Provider, len(s.providers))
	for ch, p := range s.providers {
		out[ch] = p
	}
	return out
}

// Guards returns the guarded providers, one per provider name, fallbacks
// included.
func (s *Set) Guards() []*dispatch.Guarded { return append([]*dispatch.Guarded(nil), s.guards...) }

// Describe implements prometheus.Collector.
func (s *Set) Describe(ch chan<- *prometheus.Desc) {
	for _, g := range s.guards {
		g.Describe(ch)
	}
	for _, f := range s.failovers {
		f.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (s *Set) Collect(ch chan<- prometheus.Metric) {
	for _, g := range s.guards {
		g.Collect(ch)
	}
	for _, f := range s.failovers {
		f.Collect(ch)
	}
}

// OnClose adds c to what Close closes, after the providers: the local
// sinks a process started for its providers, for instance.
func (s *Set) OnClose(c io.Closer) { s.closers = append(s.closers, c) }

// Close closes every provider's idle connections (and the SMTP pool), then
// whatever OnClose added.
func (s *Set) Close() error {
	var errs []error
	for _, c := range s.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
