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
	// Rates maps a provider name (SMTP, Twilio, FCM, APNs) to its rate limit
	// in messages per second; an absent name or 0 means unlimited.
	Rates map[string]float64
}

// Set is a built set of providers. It is a prometheus.Collector of every
// guard's metrics.
type Set struct {
	providers map[dispatch.Channel]dispatch.Provider
	guards    []*dispatch.Guarded
	closers   []io.Closer
}

// New builds the providers of cfg. logger may be nil. reg may be nil: then
// register the Set itself once a registry exists.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Set, error) {
	for name, r := range cfg.Rates {
		switch name {
		case SMTP, Twilio, FCM, APNs:
		default:
			return nil, fmt.Errorf("providerset: Config.Rates: unknown provider %q (want %s, %s, %s or %s)", name, SMTP, Twilio, FCM, APNs)
		}
		if r < 0 {
			return nil, fmt.Errorf("providerset: Config.Rates[%s] = %v: must not be negative", name, r)
		}
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
		p, err := email.New(*cfg.Email)
		if err != nil {
			return fail(err)
		}
		g, err := guard(SMTP, p, p)
		if err != nil {
			return fail(err)
		}
		s.providers[dispatch.ChannelEmail] = g
	}
	if cfg.SMS != nil {
		p, err := sms.New(*cfg.SMS)
		if err != nil {
			return fail(err)
		}
		g, err := guard(Twilio, p, p)
		if err != nil {
			return fail(err)
		}
		s.providers[dispatch.ChannelSMS] = g
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

// Providers returns the provider of each configured channel, for
// node.Config.Providers. Email and SMS are *dispatch.Guarded, push a
// *push.Router over guarded FCM and APNs providers; all three have an
// Open() bool method that reports an open breaker (for push: every
// configured backend's).
func (s *Set) Providers() map[dispatch.Channel]dispatch.Provider {
	out := make(map[dispatch.Channel]dispatch.Provider, len(s.providers))
	for ch, p := range s.providers {
		out[ch] = p
	}
	return out
}

// Guards returns the guarded providers, one per provider name.
func (s *Set) Guards() []*dispatch.Guarded { return append([]*dispatch.Guarded(nil), s.guards...) }

// Describe implements prometheus.Collector.
func (s *Set) Describe(ch chan<- *prometheus.Desc) {
	for _, g := range s.guards {
		g.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (s *Set) Collect(ch chan<- prometheus.Metric) {
	for _, g := range s.guards {
		g.Collect(ch)
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
