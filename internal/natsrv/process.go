package natsrv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// Process is a nats-server run as its own process, as deployments run it:
// `sluice loadtest --nats-server` uses it so that the server's heap and
// garbage collection are not the measured worker's.
type Process struct {
	cmd      *exec.Cmd
	url      string
	storeDir string
	exited   chan struct{}
}

// StartProcess starts the nats-server binary at path with JetStream, on
// loopback, storing in cfg.StoreDir (cfg.Port: -1 or 0 picks a free port;
// MaxMemory and MaxStore are left to the server's defaults), and waits
// until it accepts connections.
func StartProcess(path string, cfg Config) (*Process, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("natsrv: StoreDir is required")
	}
	if err := os.MkdirAll(cfg.StoreDir, 0o755); err != nil {
		return nil, fmt.Errorf("natsrv: store dir: %w", err)
	}
	port := cfg.Port
	if port <= 0 {
		var err error
		if port, err = freePort(); err != nil {
			return nil, err
		}
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(path, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", cfg.StoreDir, "-n", "sluice-loadtest")
	if cfg.Logs {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("natsrv: %s: %w", path, err)
	}
	p := &Process{cmd: cmd, url: "nats://" + addr, storeDir: cfg.StoreDir, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return p, nil
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("natsrv: %s exited before accepting connections on %s", path, addr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("natsrv: %s not accepting connections on %s after 30s", path, addr)
		}
	}
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before the server binds it; the server then fails to start and
// StartProcess says so.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("natsrv: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ClientURL is the server's client URL.
func (p *Process) ClientURL() string { return p.url }

// StoreDir is the server's JetStream store directory.
func (p *Process) StoreDir() string { return p.storeDir }

// Pid is the server process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Stop asks the server to shut down (SIGTERM) and waits for it, killing it
// after 10s.
func (p *Process) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}
