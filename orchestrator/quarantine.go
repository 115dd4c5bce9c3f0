package orchestrator

import (
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// QuarantineConfig configures automatic quarantine: a circuit breaker per
// conversation that pauses it when too many of its recent messages have
// invalid addresses.
type QuarantineConfig struct {
	// Ratio is the share of invalid addresses, over the last Window messages
	// of a conversation seen by this worker, above which it is quarantined:
	// 0.5 quarantines a conversation with more than half of its last Window
	// messages invalid. 0 turns quarantine off.
	Ratio float64
	// Window is how many of a conversation's latest messages the ratio is
	// taken over; no decision is made before a conversation has Window
	// messages. Default 1000.
	Window int
	// MaxConversations bounds the conversations tracked at once (each costs
	// about Window/8 bytes); beyond it the windows start over. Default 10000.
	MaxConversations int
}

func (c *QuarantineConfig) setDefaults() {
	if c.Window == 0 {
		c.Window = 1000
	}
	if c.MaxConversations == 0 {
		c.MaxConversations = 10000
	}
}

func (c *QuarantineConfig) validate() error {
	switch {
	case c.Ratio < 0 || c.Ratio >= 1:
		return fmt.Errorf("orchestrator: QuarantineConfig.Ratio must be from 0 (off) to below 1, not %v", c.Ratio)
	case c.Window < 10:
		return fmt.Errorf("orchestrator: QuarantineConfig.Window must be at least 10, not %d", c.Window)
	case c.MaxConversations < 1:
		return errors.New("orchestrator: QuarantineConfig.MaxConversations must be at least 1")
	}
	return nil
}

// QuarantineFunc quarantines a conversation, for the whole fleet (the
// control plane); reason says why in words. It is called from its own
// goroutine, once per trip.
type QuarantineFunc func(tenant, conversation, reason string, ratio float64)

// window is one conversation's last messages: a ring of bits, 1 for invalid.
type window struct {
	bits    []uint64
	next    int // position of the next observation
	filled  int // observations held, up to the window's size
	invalid int // 1 bits among them
	tripped bool
}

// quarantine watches each conversation's invalid ratio and trips once per
// conversation until the conversation is made active again.
type quarantine struct {
	cfg     QuarantineConfig
	trip    QuarantineFunc
	tripped prometheus.Counter

	mu   sync.Mutex
	wins map[string]*window // by "<tenant>.<conversation>"
}

// observe records one message's address check. A nil quarantine does
// nothing.
func (q *quarantine) observe(tenant, conversation string, invalid bool) {
	if q == nil {
		return
	}
	key := tenant + "." + conversation
	q.mu.Lock()
	w := q.wins[key]
	if w == nil {
		if len(q.wins) >= q.cfg.MaxConversations {
			q.wins = make(map[string]*window)
		}
		w = &window{bits: make([]uint64, (q.cfg.Window+63)/64)}
		q.wins[key] = w
	}
	i, bit := w.next/64, uint64(1)<<(w.next%64)
	if w.filled == q.cfg.Window && w.bits[i]&bit != 0 {
		w.invalid--
	}
	if invalid {
		w.bits[i] |= bit
		w.invalid++
	} else {
		w.bits[i] &^= bit
	}
	w.next = (w.next + 1) % q.cfg.Window
	w.filled = min(w.filled+1, q.cfg.Window)
	fire := false
	var ratio float64
	if !w.tripped && w.filled == q.cfg.Window {
		ratio = float64(w.invalid) / float64(q.cfg.Window)
		fire = ratio > q.cfg.Ratio
		w.tripped = fire
	}
	q.mu.Unlock()
	if fire {
		q.tripped.Inc()
		reason := fmt.Sprintf("automatic quarantine: %.1f%% of the last %d messages had invalid addresses (threshold %.1f%%)",
			100*ratio, q.cfg.Window, 100*q.cfg.Ratio)
		go q.trip(tenant, conversation, reason, ratio)
	}
}

// reset starts a conversation's window over (it was resumed).
func (q *quarantine) reset(tenant, conversation string) {
	if q == nil {
		return
	}
	q.mu.Lock()
	delete(q.wins, tenant+"."+conversation)
	q.mu.Unlock()
}

// SetQuarantine turns on automatic quarantine with cfg, calling trip when a
// conversation's invalid ratio passes cfg.Ratio; call it before Start.
// Nothing happens with cfg.Ratio 0. A conversation trips once; when the
// control state brings it back to active (Controls.SetConversation), its
// window starts over.
func (s *Service) SetQuarantine(cfg QuarantineConfig, trip QuarantineFunc) error {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	if cfg.Ratio == 0 || trip == nil {
		return nil
	}
	q := &quarantine{cfg: cfg, trip: trip, tripped: s.m.quarantined, wins: make(map[string]*window)}
	s.pipe.quarantine = q
	s.controls.mu.Lock()
	s.controls.onActive = q.reset
	s.controls.mu.Unlock()
	return nil
}
