// Package natsrv runs an embedded NATS server with JetStream, for `sluice dev`,
// `sluice loadtest` and the tests.
//
// Production deployments run nats-server as its own process (see deploy/); the
// embedded server is the same code (github.com/nats-io/nats-server/v2) started
// in-process, listening on loopback only.
package natsrv

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config configures an embedded server.
type Config struct {
	// Host to listen on. Default "127.0.0.1": the embedded server never
	// listens beyond loopback.
	Host string
	// Port to listen on. 0 means the NATS default 4222; -1 picks a free port.
	Port int
	// StoreDir is the JetStream file store directory. Required.
	StoreDir string
	// MaxMemory bounds JetStream memory storage. Default 256 MiB.
	MaxMemory int64
	// MaxStore bounds JetStream file storage. Default 16 GiB.
	MaxStore int64
	// Logs enables the server's own log output on stderr. Default off.
	Logs bool
}

// Start starts an embedded server and waits until it accepts connections.
func Start(cfg Config) (*server.Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("natsrv: StoreDir is required")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.MaxMemory == 0 {
		cfg.MaxMemory = 256 << 20
	}
	if cfg.MaxStore == 0 {
		cfg.MaxStore = 16 << 30
	}
	if err := os.MkdirAll(cfg.StoreDir, 0o755); err != nil {
		return nil, fmt.Errorf("natsrv: store dir: %w", err)
	}
	opts := &server.Options{
		ServerName:         "sluice-embedded",
		Host:               cfg.Host,
		Port:               cfg.Port,
		JetStream:          true,
		StoreDir:           cfg.StoreDir,
		JetStreamMaxMemory: cfg.MaxMemory,
		JetStreamMaxStore:  cfg.MaxStore,
		NoSigs:             true,
		NoLog:              !cfg.Logs,
		MaxPayload:         1 << 20,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsrv: %w", err)
	}
	if cfg.Logs {
		s.ConfigureLogger()
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("natsrv: server on %s:%d not ready after 30s (port in use?)", cfg.Host, cfg.Port)
	}
	return s, nil
}

// Stop shuts the server down and waits for it to finish.
func Stop(s *server.Server) {
	s.Shutdown()
	s.WaitForShutdown()
}
