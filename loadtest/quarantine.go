package loadtest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/ctxtime"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/control"
)

// Quarantiner is the quarantine step of an incident run. The run polls
// Quarantined for each burst conversation once a second; once a
// conversation is quarantined, the run records when and how many of its
// messages were processed before, then calls Stop, which stops the
// conversation and purges its queued messages, returning how many were
// purged (they count as purged in the accounting). Once the whole burst is
// published the run calls Stop again for each quarantined conversation, to
// purge what was published after the first stop; a stop is repeatable.
type Quarantiner interface {
	// Quarantined reports whether the conversation is quarantined and
	// since when (zero if unknown). It must be safe for concurrent use with
	// Stop on other conversations.
	Quarantined(ctx context.Context, tenant, conversation string) (at time.Time, ok bool, err error)
	Stop(ctx context.Context, tenant, conversation string) (purged int64, err error)
}

// QuarantineTarget is what a Quarantiner may act on: the mode's NATS and
// control plane.
type QuarantineTarget struct {
	JS      jetstream.JetStream
	Control *control.Store
	// Running is set for a running sluice (not the run's own stack): its
	// workers sweep stopped conversations and would purge messages the run
	// never counts, so a Quarantiner should purge without stopping.
	Running bool
}

// Quarantine states of the report.
const (
	// QuarantineOff: a comparison, which always runs without quarantine, or
	// a run without a quarantine step (Config.Quarantine nil).
	QuarantineOff = "off"
	// QuarantineOn: the step ran; see each mode's quarantine_events.
	QuarantineOn = "on"
)

// quarantineState is the report's quarantine state of cfg.
func quarantineState(cfg *Config) string {
	switch {
	case cfg.Compare || cfg.Quarantine == nil:
		return QuarantineOff
	default:
		return QuarantineOn
	}
}

// ControlQuarantine is the Quarantiner of sluice's control plane: a
// conversation is quarantined when its state is quarantined; Stop sets it
// stopped (every worker stops fetching it within a second), waits settle
// for sends already begun (control.DefaultStopSettle when 0), then purges its
// queued messages (orchestrator.PurgeConversation), as POST
// /v1/admin/conversations/{tenant}/{id}/stop does. On a running target
// (QuarantineTarget.Running) it leaves the state quarantined, which holds
// the conversation just as well, and only purges: the target's sweep of
// stopped conversations would purge messages the run could not count.
func ControlQuarantine(settle time.Duration) func(QuarantineTarget) Quarantiner {
	if settle == 0 {
		settle = control.DefaultStopSettle
	}
	return func(t QuarantineTarget) Quarantiner { return &controlQuarantine{t: t, settle: settle} }
}

type controlQuarantine struct {
	t      QuarantineTarget
	settle time.Duration

	mu      sync.Mutex
	stopped map[string]bool
}

func (q *controlQuarantine) Quarantined(ctx context.Context, tenant, conversation string) (time.Time, bool, error) {
	st, err := q.t.Control.Conversation(ctx, tenant, conversation)
	if err != nil {
		return time.Time{}, false, err
	}
	if q.t.Running {
		// Any hold of a running target's is reported, so that Stop can
		// refuse the ones the run must not purge.
		return st.At, st.Value.State != control.StateActive, nil
	}
	return st.At, st.Value.State == control.StateQuarantined, nil
}

func (q *controlQuarantine) Stop(ctx context.Context, tenant, conversation string) (int64, error) {
	if q.t.Running {
		st, err := q.t.Control.Conversation(ctx, tenant, conversation)
		if err != nil {
			return 0, err
		}
		if st.Value.State != control.StateQuarantined {
			// Paused or stopped by someone else: not the run's to purge.
			return refuseHeld{q.t}.Stop(ctx, tenant, conversation)
		}
	}
	q.mu.Lock()
	if q.stopped == nil {
		q.stopped = map[string]bool{}
	}
	first := !q.stopped[conversation]
	q.mu.Unlock()
	if first {
		if !q.t.Running {
			_, err := q.t.Control.SetConversation(ctx, tenant, conversation,
				control.ConversationStatus{State: control.StateStopped, Reason: "sluice loadtest: stopped after quarantine"}, "sluice loadtest")
			if err != nil {
				return 0, fmt.Errorf("loadtest: stop %s/%s: %w", tenant, conversation, err)
			}
		}
		q.mu.Lock()
		q.stopped[conversation] = true
		q.mu.Unlock()
		if err := ctxtime.Sleep(ctx, q.settle); err != nil {
			return 0, err
		}
	}
	n, err := orchestrator.PurgeConversation(ctx, q.t.JS, tenant, conversation)
	return int64(n), err
}

// refuseHeld is the quarantine step of a run against a running target
// without one: a conversation the target holds (quarantined by its workers,
// or paused or stopped by an operator) would never drain, so the run ends at
// once with an error saying so instead of waiting for Timeout.
type refuseHeld struct{ t QuarantineTarget }

func (r refuseHeld) Quarantined(ctx context.Context, tenant, conversation string) (time.Time, bool, error) {
	st, err := r.t.Control.Conversation(ctx, tenant, conversation)
	if err != nil {
		return time.Time{}, false, err
	}
	return st.At, st.Value.State != control.StateActive, nil
}

func (r refuseHeld) Stop(ctx context.Context, tenant, conversation string) (int64, error) {
	st, err := r.t.Control.Conversation(ctx, tenant, conversation)
	if err != nil {
		return 0, err
	}
	advice := "run with --quarantine auto to purge what the target quarantines, or turn the target's quarantine off (sluice serve --quarantine-ratio 0)"
	switch st.Value.State {
	case control.StatePaused:
		advice = fmt.Sprintf("someone paused it; resume it (sluice ctl conversation resume %s %s) or run again", tenant, conversation)
	case control.StateStopped:
		advice = "someone stopped it, which is final; run again"
	}
	return 0, fmt.Errorf("loadtest: the target holds conversation %s/%s (%s: %s), so it would never drain; %s",
		tenant, conversation, st.Value.State, st.Value.Reason, advice)
}
