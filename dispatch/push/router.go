package push

import (
	"context"
	"errors"

	"github.com/sluicehq/sluice/dispatch"
)

// IsAPNsToken reports whether tok has the shape of an APNs device token:
// an even number, 64 to 200, of hex digits.
func IsAPNsToken(tok string) bool {
	if len(tok) < 64 || len(tok) > 200 || len(tok)%2 != 0 {
		return false
	}
	for i := 0; i < len(tok); i++ {
		if !isHex(tok[i]) {
			return false
		}
	}
	return true
}

// Router is the push channel's Provider: it sends APNs-shaped tokens
// ([IsAPNsToken]) to APNs and every other token to FCM. Each backend is
// normally a *dispatch.Guarded, so each has its own breaker: an APNs outage
// does not stop FCM sends.
type Router struct {
	// APNs and FCM are the backends; either may be nil when not configured.
	APNs, FCM dispatch.Provider
}

var (
	errNoAPNs = errors.New("push: no APNs provider configured for an APNs token")
	errNoFCM  = errors.New("push: no FCM provider configured for an FCM token")
)

// Send routes m by the shape of m.To. A token for a backend that is not
// configured gets a transient error, so the message waits for the
// configuration rather than being dropped.
func (r *Router) Send(ctx context.Context, m *dispatch.Message) error {
	if IsAPNsToken(m.To) {
		if r.APNs == nil {
			return errNoAPNs
		}
		return r.APNs.Send(ctx, m)
	}
	if r.FCM == nil {
		return errNoFCM
	}
	return r.FCM.Send(ctx, m)
}

// Open reports whether every configured backend that has a breaker is
// open, that is whether no push message can currently go out.
func (r *Router) Open() bool {
	seen := false
	for _, p := range []dispatch.Provider{r.APNs, r.FCM} {
		o, ok := p.(interface{ Open() bool })
		if !ok {
			if p != nil {
				return false
			}
			continue
		}
		if !o.Open() {
			return false
		}
		seen = true
	}
	return seen
}
