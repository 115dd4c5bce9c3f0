package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"time"

	"github.com/sluicehq/sluice/orchestrator/control"
)

// Breaker is a provider's circuit breaker as the heartbeat reports it
// (*dispatch.Guarded is one).
type Breaker interface {
	// Name is the provider's name: smtp, twilio, fcm, apns.
	Name() string
	// State is closed, half-open or open.
	State() string
}

// startHeartbeat announces the process in the control bucket now and every
// HeartbeatInterval until stopHeartbeat (control.Heartbeat), and purges the
// heartbeats of processes gone for an hour.
func (n *Node) startHeartbeat(ctx context.Context) {
	n.hb = control.Heartbeat{
		ID: processID(), PID: os.Getpid(), Version: n.cfg.Version, Env: n.cfg.Env,
		StartedAt:       time.Now().UTC().Truncate(time.Millisecond),
		IntervalSeconds: n.cfg.HeartbeatInterval.Seconds(),
	}
	n.hb.Host, _ = os.Hostname()
	if n.cfg.API {
		n.hb.Roles = append(n.hb.Roles, "api")
	}
	if n.cfg.Worker {
		n.hb.Roles = append(n.hb.Roles, "worker")
	}
	n.beat(ctx)
	loopCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	n.stopHeartbeat = func() { cancel(); <-done }
	go func() {
		defer close(done)
		t := time.NewTicker(n.cfg.HeartbeatInterval)
		defer t.Stop()
		for i := 1; ; i++ {
			select {
			case <-loopCtx.Done():
				return
			case <-t.C:
			}
			n.beat(loopCtx)
			if i%60 == 0 {
				if gone, err := n.Control.ForgetGone(loopCtx); err != nil {
					n.log.Warn("purging old heartbeats failed", "err", err)
				} else if len(gone) > 0 {
					n.log.Info("purged the heartbeats of processes gone for an hour", "ids", gone)
				}
			}
		}
	}()
}

// beat announces the process's current state.
func (n *Node) beat(ctx context.Context) {
	hb := n.hb
	if n.Service != nil {
		for _, l := range n.Service.Load() {
			hb.Lanes = append(hb.Lanes, control.LaneLoad{Lane: string(l.Lane), Workers: l.Workers, InFlight: l.InFlight})
		}
	}
	if n.ErrorLog != nil {
		hb.ErrorLogMode = string(n.ErrorLog.Mode().Name)
		hb.ErrorLogBreaker = n.ErrorLog.BreakerState()
	}
	for _, b := range n.cfg.Breakers {
		hb.Providers = append(hb.Providers, control.ProviderState{Name: b.Name(), Breaker: b.State()})
	}
	bctx, cancel := context.WithTimeout(ctx, n.cfg.HeartbeatInterval)
	defer cancel()
	if err := n.Control.Announce(bctx, hb); err != nil && ctx.Err() == nil {
		n.log.Warn("heartbeat not announced", "id", hb.ID, "err", err)
	}
}

// retire stops the heartbeat and removes it: a cleanly stopped process is
// gone at once.
func (n *Node) retire() {
	if n.stopHeartbeat == nil {
		return
	}
	n.stopHeartbeat()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := n.Control.Retire(ctx, n.hb.ID); err != nil {
		n.log.Warn("heartbeat not retired; it is reported gone after a few intervals", "id", n.hb.ID, "err", err)
	}
}

// processID names this process in the control bucket: its host name made a
// key token, and a random suffix (two processes on one host, a restart).
func processID() string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, host)
	if len(host) > 40 {
		host = host[:40]
	}
	if host == "" {
		host = "host"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return host + "-" + hex.EncodeToString(b)
}
