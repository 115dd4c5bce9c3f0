package webhook

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"syscall"
)

// internal reports whether addr is an address a webhook must not reach
// outside dev: loopback, private (RFC 1918, fc00::/7), link-local,
// unspecified, multicast, CGNAT (100.64.0.0/10) or an IPv4-mapped one of
// them.
func internal(addr netip.Addr) bool {
	addr = addr.Unmap()
	return addr.IsLoopback() || addr.IsPrivate() || addr.IsLinkLocalUnicast() || addr.IsLinkLocalMulticast() ||
		addr.IsInterfaceLocalMulticast() || addr.IsMulticast() || addr.IsUnspecified() ||
		netip.MustParsePrefix("100.64.0.0/10").Contains(addr)
}

// CheckURL checks an endpoint's URL: absolute http(s), no credentials, at
// most 2048 bytes; unless allowInternal, its host must resolve (with r,
// nil: net.DefaultResolver) to public addresses only.
func CheckURL(ctx context.Context, raw string, allowInternal bool, r *net.Resolver) error {
	u, err := url.Parse(raw)
	switch {
	case len(raw) > 2048:
		return fmt.Errorf("%w: url: at most 2048 bytes", ErrInvalid)
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Fragment != "":
		return fmt.Errorf("%w: url: want an absolute http(s) URL without credentials or fragment", ErrInvalid)
	case allowInternal:
		return nil
	}
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupNetIP(ctx, "ip", u.Hostname())
	if err != nil {
		return fmt.Errorf("%w: url: host %q does not resolve: %v", ErrInvalid, u.Hostname(), err)
	}
	for _, a := range addrs {
		if internal(a) {
			return fmt.Errorf("%w: url: host %q resolves to %s, a loopback or private address (allowed in dev and test only)", ErrInvalid, u.Hostname(), a)
		}
	}
	return nil
}

// dialControl is the net.Dialer Control hook that refuses, at connect time,
// an internal address (a name that resolved to a public address at
// registration may not any more).
func dialControl(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("webhook: refusing to connect to %q: %w", address, err)
	}
	if internal(ap.Addr()) {
		return fmt.Errorf("webhook: refusing to connect to %s, a loopback or private address", ap.Addr())
	}
	return nil
}
