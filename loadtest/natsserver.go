package loadtest

import (
	"fmt"
	"os"

	"github.com/sluicehq/sluice/internal/natsrv"
)

// natsServer is one NATS server of the self-contained stack (a mode's, a
// ceiling's): embedded in this process, or, with Config.NATSServer, a
// nats-server process of its own, as deployments run it, so that the
// server's heap and garbage collection are not this process's.
type natsServer struct {
	url  string
	pid  int // the separate process's, 0 when embedded
	stop func()
}

// startNATS starts a server storing in dir; stop also removes dir.
func startNATS(cfg *Config, dir string) (*natsServer, error) {
	if cfg.NATSServer != "" {
		p, err := natsrv.StartProcess(cfg.NATSServer, natsrv.Config{StoreDir: dir})
		if err != nil {
			return nil, fmt.Errorf("loadtest: nats-server: %w", err)
		}
		return &natsServer{url: p.ClientURL(), pid: p.Pid(), stop: func() { p.Stop(); _ = os.RemoveAll(dir) }}, nil
	}
	s, err := natsrv.Start(natsrv.Config{Port: -1, StoreDir: dir})
	if err != nil {
		return nil, fmt.Errorf("loadtest: nats: %w", err)
	}
	return &natsServer{url: s.ClientURL(), stop: func() { natsrv.Stop(s); _ = os.RemoveAll(dir) }}, nil
}

// cpu is the separate server process's CPU seconds so far, 0 when
// embedded (its CPU is this process's).
func (n *natsServer) cpu() float64 {
	if n == nil || n.pid == 0 {
		return 0
	}
	_, cpu, _ := procStat(n.pid)
	return cpu
}
