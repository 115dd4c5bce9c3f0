package sink

import (
	"fmt"
	"net"
)

// listenLoopback listens on addr, which must be a loopback address
// (default 127.0.0.1:0, a free port): the sinks never listen elsewhere.
func listenLoopback(addr string) (net.Listener, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("sink: listen address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("sink: listen address %q: sinks listen on loopback addresses only", addr)
	}
	return net.Listen("tcp", addr)
}
