// Package httpc builds the pooled HTTP clients of the HTTP providers and
// reads their replies within bounds.
package httpc

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Headers naming the tenant and conversation of a message, for proxies, logs
// and the sinks' per-conversation counts; the real APIs ignore them.
const (
	HeaderTenant       = "X-Sluice-Tenant"
	HeaderConversation = "X-Sluice-Conversation"
)

// SetIdentity sets the idempotency header (the API's own name for it) to id,
// and the tenant and conversation headers when they are known.
func SetIdentity(h http.Header, idempotencyHeader, id, tenant, conversation string) {
	h.Set(idempotencyHeader, id)
	if tenant != "" {
		h.Set(HeaderTenant, tenant)
	}
	if conversation != "" {
		h.Set(HeaderConversation, conversation)
	}
}

// UnwrapURL drops the *url.Error wrapper, whose text repeats the URL (and
// for APNs the device token).
func UnwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// DefaultMaxConns bounds an HTTP provider's connections to its API when its
// configuration leaves MaxConns 0.
const DefaultMaxConns = 16

// Client is a provider's client: c when its configuration set one, else
// New's with maxConns connections (DefaultMaxConns when 0).
func Client(c *http.Client, maxConns int, tlsConfig *tls.Config) *http.Client {
	if c != nil {
		return c
	}
	if maxConns == 0 {
		maxConns = DefaultMaxConns
	}
	return New(maxConns, tlsConfig)
}

// New returns a client whose connections to one host are bounded by
// maxConns and kept alive between requests. It has no overall timeout: each
// request's context bounds it.
func New(maxConns int, tlsConfig *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConfig,
		ForceAttemptHTTP2:     true,
		MaxConnsPerHost:       maxConns,
		MaxIdleConns:          maxConns,
		MaxIdleConnsPerHost:   maxConns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}}
}

// ReadBody reads at most limit bytes of resp's body and drains a little
// more, so that the connection can be reused.
func ReadBody(resp *http.Response, limit int64) []byte {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, limit))
	io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
	return b
}

// DialFailed reports whether err is a failure to open the connection
// (refused, unreachable, DNS, a dial timeout): the request was never
// written, so the server cannot have acted on it.
func DialFailed(err error) bool {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return true
	}
	var de *net.DNSError
	return errors.As(err, &de)
}
