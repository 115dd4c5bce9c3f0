package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Heartbeats: every process (API, worker or both) announces itself under
// worker.<id> of the bucket every HeartbeatInterval, a Setting[Heartbeat]
// whose At is the time of the beat; a clean stop purges the key. A reader
// judges liveness from timestamps, not from a key TTL (which needs a NATS
// server with per-message TTLs and would hide a worker the moment it
// missed one beat): a heartbeat older than HeartbeatGoneAfter is reported
// gone, and the announcing processes purge keys silent for
// HeartbeatForgetAfter (a process killed with SIGKILL leaves its key
// behind).
const (
	workerPrefix = "worker."
	// HeartbeatInterval is how often a process announces itself.
	HeartbeatInterval = 5 * time.Second
	// HeartbeatGoneAfter is the age past which a heartbeat means its
	// process is gone: three missed beats.
	HeartbeatGoneAfter = 3 * HeartbeatInterval
	// HeartbeatForgetAfter is the age past which a gone process's key is
	// purged.
	HeartbeatForgetAfter = time.Hour
)

// Heartbeat is what a process announces about itself.
type Heartbeat struct {
	// ID names the process: its host and a random suffix chosen at start.
	ID      string `json:"id"`
	Host    string `json:"host"`
	PID     int    `json:"pid"`
	Version string `json:"version"`
	Env     string `json:"env"`
	// Roles are "api" and/or "worker".
	Roles     []string  `json:"roles"`
	StartedAt time.Time `json:"started_at"`
	// IntervalSeconds is the process's announcement interval.
	IntervalSeconds float64 `json:"interval_seconds"`
	// Lanes is the worker's load per lane (worker role only).
	Lanes []LaneLoad `json:"lanes,omitempty"`
	// ErrorLogMode is the mode the worker applies; ErrorLogBreaker its error
	// log writer's breaker: closed, half-open or open (batches spill).
	ErrorLogMode    string `json:"errorlog_mode,omitempty"`
	ErrorLogBreaker string `json:"errorlog_breaker,omitempty"`
	// Providers are the worker's provider breakers.
	Providers []ProviderState `json:"providers,omitempty"`
}

// LaneLoad is a worker's load in one lane.
type LaneLoad struct {
	Lane     string `json:"lane"`
	Workers  int    `json:"workers"`
	InFlight int    `json:"in_flight"`
}

// ProviderState is one provider's breaker as a worker sees it.
type ProviderState struct {
	Name    string `json:"name"`
	Breaker string `json:"breaker"`
}

// WorkerStatus is a heartbeat as a reader sees it.
type WorkerStatus struct {
	Heartbeat
	// LastSeen is the time of the last beat; AgeSeconds its age when read.
	LastSeen   time.Time `json:"last_seen"`
	AgeSeconds float64   `json:"age_seconds"`
	// Live is false once the heartbeat is older than HeartbeatGoneAfter.
	Live bool `json:"live"`
}

// HeartbeatKey returns the key of a process's heartbeat; id must be a valid
// key token ([A-Za-z0-9_-], as wire.ValidToken).
func HeartbeatKey(id string) string { return workerPrefix + id }

// Announce writes hb's heartbeat, timed now.
func (s *Store) Announce(ctx context.Context, hb Heartbeat) error {
	data, err := json.Marshal(Setting[Heartbeat]{Value: hb, By: hb.ID, At: s.now().UTC().Truncate(time.Millisecond)})
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, HeartbeatKey(hb.ID), data); err != nil {
		return fmt.Errorf("control: announce %s: %w", hb.ID, err)
	}
	return nil
}

// Retire purges a process's heartbeat: it is gone at once, not after
// HeartbeatGoneAfter.
func (s *Store) Retire(ctx context.Context, id string) error {
	if err := s.kv.Purge(ctx, HeartbeatKey(id)); err != nil {
		return fmt.Errorf("control: retire %s: %w", id, err)
	}
	return nil
}

// Workers returns every announced process, live or gone, by id.
func (s *Store) Workers(ctx context.Context) ([]WorkerStatus, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, workerPrefix+">")
	if err != nil {
		return nil, fmt.Errorf("control: list heartbeats: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	now := s.now()
	out := []WorkerStatus{}
	for _, key := range keys {
		e, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // retired meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("control: get %s: %w", key, err)
		}
		var st Setting[Heartbeat]
		if err := json.Unmarshal(e.Value(), &st); err != nil {
			s.log.Warn("control: unreadable heartbeat skipped", "key", key, "revision", e.Revision(), "err", err)
			continue
		}
		st.Value.ID = strings.TrimPrefix(key, workerPrefix) // the key decides
		age := now.Sub(st.At)
		out = append(out, WorkerStatus{Heartbeat: st.Value, LastSeen: st.At, AgeSeconds: age.Seconds(), Live: age <= HeartbeatGoneAfter})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// ForgetGone purges the heartbeats older than HeartbeatForgetAfter and
// returns their ids.
func (s *Store) ForgetGone(ctx context.Context) ([]string, error) {
	ws, err := s.Workers(ctx)
	if err != nil {
		return nil, err
	}
	var gone []string
	for _, w := range ws {
		if w.AgeSeconds > HeartbeatForgetAfter.Seconds() {
			if err := s.Retire(ctx, w.ID); err != nil {
				return gone, err
			}
			gone = append(gone, w.ID)
		}
	}
	return gone, nil
}
