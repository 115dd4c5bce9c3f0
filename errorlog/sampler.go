package errorlog

import (
	"sync"
	"time"
)

// sampler decides, in sample mode, which events keep their row: per
// (conversation, reason), the first First of each Window, then one in Then.
// It is per process; the fleet keeps roughly workers × First rows per window.
type sampler struct {
	mu      sync.Mutex
	windows map[sampleKey]*sampleWindow
	swept   time.Time
}

type sampleKey struct{ conversation, reason string }

type sampleWindow struct {
	start time.Time
	n     int
}

func newSampler() *sampler { return &sampler{windows: map[sampleKey]*sampleWindow{}} }

func (s *sampler) reset() {
	s.mu.Lock()
	clear(s.windows)
	s.mu.Unlock()
}

func (s *sampler) keep(conversation, reason string, now time.Time, m Mode) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.swept) > m.Window {
		// Forget windows that ended, so the map holds only active keys.
		for k, w := range s.windows {
			if now.Sub(w.start) >= m.Window {
				delete(s.windows, k)
			}
		}
		s.swept = now
	}
	k := sampleKey{conversation, reason}
	w := s.windows[k]
	if w == nil || now.Sub(w.start) >= m.Window {
		w = &sampleWindow{start: now}
		s.windows[k] = w
	}
	w.n++
	if w.n <= m.First {
		return true
	}
	return m.Then > 0 && (w.n-m.First)%m.Then == 0
}
