// Package httpc builds the pooled HTTP clients of the HTTP providers and
// reads their replies within bounds.
package httpc

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"time"
)

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
