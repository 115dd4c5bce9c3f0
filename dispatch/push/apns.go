package push

import (
	"context"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/payload"
	"github.com/sideshow/apns2/token"
	"golang.org/x/net/http2"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/dispatch/internal/httpc"
	"github.com/sluicehq/sluice/wire"
)

// APNsConfig configures an [APNs] provider.
type APNsConfig struct {
	// Host is the APNs endpoint. Default apns2.HostProduction
	// ("https://api.push.apple.com"); apns2.HostDevelopment is the sandbox.
	Host string
	// AuthKey is the token-signing key: the contents of the .p8 file
	// (PKCS#8 PEM, ECDSA P-256). Required.
	AuthKey []byte
	// KeyID is the key's 10-character identifier and TeamID the developer
	// team's. Required.
	KeyID, TeamID string
	// Topic is the app's bundle ID (apns-topic). Required.
	Topic string
	// RootCAs are the roots trusted for Host. Default: the system roots.
	RootCAs *x509.CertPool
	// ThrottleRetryAfter is the RetryAfter of a 429 without a usable
	// Retry-After header (APNs sends none). Default 1s.
	ThrottleRetryAfter time.Duration
}

// APNs sends alert notifications through Apple's provider API over HTTP/2
// with token (JWT) authentication, using github.com/sideshow/apns2. It is
// safe for concurrent use; HTTP/2 multiplexes all sends over one
// connection, as Apple asks.
type APNs struct {
	cfg       APNsConfig
	client    *apns2.Client
	transport *http2.Transport
}

// NewAPNs returns an APNs provider for cfg. It does not connect until the
// first Send.
func NewAPNs(cfg APNsConfig) (*APNs, error) {
	switch {
	case len(cfg.AuthKey) == 0:
		return nil, errors.New("push: APNsConfig.AuthKey is required")
	case cfg.KeyID == "" || cfg.TeamID == "":
		return nil, errors.New("push: APNsConfig.KeyID and APNsConfig.TeamID are required")
	case cfg.Topic == "":
		return nil, errors.New("push: APNsConfig.Topic is required")
	case cfg.ThrottleRetryAfter < 0:
		return nil, errors.New("push: APNsConfig.ThrottleRetryAfter must not be negative")
	}
	key, err := token.AuthKeyFromBytes(cfg.AuthKey)
	if err != nil {
		return nil, fmt.Errorf("push: APNsConfig.AuthKey: %w", err)
	}
	if cfg.Host == "" {
		cfg.Host = apns2.HostProduction
	}
	if u, err := url.Parse(cfg.Host); err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("push: APNsConfig.Host %q: want https://host[:port]", cfg.Host)
	}
	if cfg.ThrottleRetryAfter == 0 {
		cfg.ThrottleRetryAfter = time.Second
	}
	tr := &http2.Transport{
		TLSClientConfig: &tls.Config{RootCAs: cfg.RootCAs},
		DialTLSContext: func(ctx context.Context, network, addr string, c *tls.Config) (net.Conn, error) {
			d := &tls.Dialer{NetDialer: &net.Dialer{KeepAlive: 15 * time.Second}, Config: c}
			return d.DialContext(ctx, network, addr)
		},
		ReadIdleTimeout: 15 * time.Second,
		PingTimeout:     15 * time.Second,
	}
	client := apns2.NewTokenClient(&token.Token{AuthKey: key, KeyID: cfg.KeyID, TeamID: cfg.TeamID})
	client.Host = strings.TrimRight(cfg.Host, "/")
	client.HTTPClient = &http.Client{Transport: retryAfterCapture{tr}}
	return &APNs{cfg: cfg, client: client, transport: tr}, nil
}

// Close closes idle connections.
func (a *APNs) Close() error {
	a.transport.CloseIdleConnections()
	return nil
}

// Send sends m as an alert with m.Subject as title and m.Body as body (or
// their defaults), apns-id [APNsID](m.ID).
func (a *APNs) Send(ctx context.Context, m *dispatch.Message) error {
	var retryAfter string
	ctx = context.WithValue(ctx, retryAfterKey{}, &retryAfter)
	res, err := a.client.PushWithContext(ctx, &apns2.Notification{
		DeviceToken: m.To,
		Topic:       a.cfg.Topic,
		ApnsID:      APNsID(m.ID),
		PushType:    apns2.PushTypeAlert,
		Priority:    apns2.PriorityHigh,
		Payload:     payload.NewPayload().AlertTitle(m.SubjectOrDefault()).AlertBody(m.BodyOrDefault()),
	})
	if err != nil {
		return fmt.Errorf("push: apns: %w", httpc.UnwrapURL(err))
	}
	if res.Sent() {
		return nil
	}
	detail := fmt.Sprintf("apns HTTP %d %s", res.StatusCode, res.Reason)
	switch {
	case res.StatusCode == http.StatusTooManyRequests:
		return &dispatch.UnavailableError{
			RetryAfter: dispatch.ParseRetryAfter(retryAfter, time.Now(), a.cfg.ThrottleRetryAfter),
			Cause:      errors.New("push: " + detail),
		}
	case res.StatusCode >= 500:
		return errors.New("push: " + detail)
	}
	switch res.Reason {
	case apns2.ReasonUnregistered, apns2.ReasonExpiredToken:
		return &dispatch.RejectedError{Reason: wire.ReasonUnregistered, Detail: "apns " + res.Reason}
	case apns2.ReasonBadDeviceToken, apns2.ReasonDeviceTokenNotForTopic:
		return &dispatch.RejectedError{Reason: wire.ReasonBadToken, Detail: "apns " + res.Reason}
	case apns2.ReasonPayloadTooLarge, apns2.ReasonPayloadEmpty:
		return &dispatch.RejectedError{Reason: wire.ReasonContentRejected, Detail: "apns " + res.Reason}
	}
	if res.StatusCode == http.StatusGone {
		return &dispatch.RejectedError{Reason: wire.ReasonUnregistered, Detail: "apns HTTP 410"}
	}
	return errors.New("push: " + detail)
}

// retryAfterKey carries a *string that retryAfterCapture fills with the
// Retry-After header of a 429, which apns2's Response does not expose.
type retryAfterKey struct{}

type retryAfterCapture struct{ next *http2.Transport }

func (t retryAfterCapture) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusTooManyRequests {
		if p, ok := r.Context().Value(retryAfterKey{}).(*string); ok {
			*p = resp.Header.Get("Retry-After")
		}
	}
	return resp, err
}

func (t retryAfterCapture) CloseIdleConnections() { t.next.CloseIdleConnections() }

// apnsNamespace is the namespace of the name-based UUIDs made by APNsID.
var apnsNamespace = [16]byte{0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}

// APNsID returns the apns-id of the message with idempotency key id. APNs
// requires a canonical UUID: an id that is one is used as is (lower case),
// any other id is mapped to the version 5 (SHA-1, name-based) UUID of
// "sluice:" + id in the RFC 4122 URL namespace, so the same id always gives
// the same apns-id.
func APNsID(id string) string {
	if isUUID(id) {
		return strings.ToLower(id)
	}
	h := sha1.New()
	h.Write(apnsNamespace[:])
	h.Write([]byte("sluice:" + id))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i]) {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
