// Package natstest starts throwaway embedded JetStream servers for tests.
package natstest

import (
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/internal/natsrv"
)

// Start starts an embedded JetStream server on a free loopback port with a
// temporary store, stopped when the test ends, and returns a connection to it.
func Start(tb testing.TB) (*nats.Conn, string) {
	tb.Helper()
	s, err := natsrv.Start(natsrv.Config{Port: -1, StoreDir: tb.TempDir()})
	if err != nil {
		tb.Fatalf("start nats: %v", err)
	}
	tb.Cleanup(func() { natsrv.Stop(s) })
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		tb.Fatalf("connect nats: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc, s.ClientURL()
}
