package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/errorlog"
)

// KeyErrorLogMode holds the error log's mode.
const KeyErrorLogMode = "errorlog.mode"

// defaultActor is the actor of the mode Open writes at first start.
const defaultActor = "default"

func (s *Store) errorLogKind() kind[errorlog.Mode] {
	return kind[errorlog.Mode]{def: s.defaultMode, check: errorlog.Mode.Validate}
}

// normalizeMode stores what a mode means: sample mode with its parameters
// made explicit (so the audit trail says what was in effect even if the
// defaults change), the other modes without parameters, which they ignore.
func normalizeMode(m errorlog.Mode) errorlog.Mode {
	if m.Name == errorlog.ModeSample {
		return m.WithDefaults()
	}
	return errorlog.Mode{Name: m.Name}
}

// initErrorLogMode writes the default mode if no mode is set.
func (s *Store) initErrorLogMode(ctx context.Context) error {
	_, cur, err := update(ctx, s, s.errorLogKind(), KeyErrorLogMode, defaultActor, func(old Setting[errorlog.Mode]) (errorlog.Mode, error) {
		if old.Revision != 0 {
			return errorlog.Mode{}, errAlreadySet{old}
		}
		return s.defaultMode, nil
	})
	var set errAlreadySet
	switch {
	case errors.As(err, &set):
		if set.old.Value != s.defaultMode {
			s.log.Info("control: error-log mode already set; the configured default applies only at first start",
				"mode", set.old.Value.String(), "by", set.old.By, "default", s.defaultMode.String())
		}
		return nil
	case err == nil, errors.Is(err, ErrAudit): // update logged the audit failure
		s.log.Info("control: error-log mode set to the default at first start", "mode", cur.Value.String())
		return nil
	default:
		return err
	}
}

// errAlreadySet stops initErrorLogMode's update when a mode is set.
type errAlreadySet struct{ old Setting[errorlog.Mode] }

func (errAlreadySet) Error() string { return "control: already set" }

// ErrorLogMode returns the error log's current mode, or the default mode if
// none is set.
func (s *Store) ErrorLogMode(ctx context.Context) (errorlog.Mode, error) {
	st, err := get(ctx, s, s.errorLogKind(), KeyErrorLogMode)
	return st.Value, err
}

// SetErrorLogMode changes the error log's mode for the whole fleet and
// returns the mode it replaced. m is validated; sample mode is stored with
// its parameters made explicit (WithDefaults), the other modes without
// parameters. The change is written to the bucket first (compare-and-set,
// retried on conflict), then audited in control_audit; if only the audit
// fails, the mode is changed and the error wraps ErrAudit.
func (s *Store) SetErrorLogMode(ctx context.Context, m errorlog.Mode, actor string) (old errorlog.Mode, err error) {
	o, _, err := s.setErrorLogMode(ctx, m, actor)
	return o.Value, err
}

func (s *Store) setErrorLogMode(ctx context.Context, m errorlog.Mode, actor string) (old, cur Setting[errorlog.Mode], err error) {
	if err := m.Validate(); err != nil {
		return Setting[errorlog.Mode]{}, Setting[errorlog.Mode]{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	m = normalizeMode(m)
	return update(ctx, s, s.errorLogKind(), KeyErrorLogMode, actor, func(Setting[errorlog.Mode]) (errorlog.Mode, error) {
		return m, nil
	})
}

// WatchErrorLogMode calls fn with the current mode at once, then with every
// new mode, from one goroutine, until ctx ends (it then returns nil). fn
// should return quickly: later changes wait for it.
func (s *Store) WatchErrorLogMode(ctx context.Context, fn func(errorlog.Mode)) error {
	return watchOne(ctx, s, s.errorLogKind(), KeyErrorLogMode, func(st Setting[errorlog.Mode]) {
		fn(st.Value)
	})
}

// ErrorLogStatus is the error log's mode with its last change: the body of
// GET /v1/admin/errorlog and of the answer to PUT. In JSON the mode's fields
// are inline:
//
//	{"mode": "sample", "first": 100, "then": 1000, "window": "1m0s",
//	 "updated_by": "alice", "updated_at": "2026-11-21T08:45:46Z", "revision": 7,
//	 "previous": {"mode": "full"}}
type ErrorLogStatus struct {
	Mode errorlog.Mode
	// UpdatedBy and UpdatedAt say who set Mode and when; empty and zero if
	// the mode was never set (it is then the default).
	UpdatedBy string
	UpdatedAt time.Time
	// Revision is the KV revision of the mode, 0 if never set.
	Revision uint64
	// Previous is the mode before the last change, if the bucket's history
	// still holds it.
	Previous *errorlog.Mode
}

type errorLogStatusJSON struct {
	Name      errorlog.ModeName `json:"mode"`
	First     int               `json:"first,omitempty"`
	Then      int               `json:"then,omitempty"`
	Window    string            `json:"window,omitempty"`
	UpdatedBy string            `json:"updated_by,omitempty"`
	UpdatedAt *time.Time        `json:"updated_at,omitempty"`
	Revision  uint64            `json:"revision"`
	Previous  *errorlog.Mode    `json:"previous,omitempty"`
}

// MarshalJSON writes the mode's fields inline.
func (st ErrorLogStatus) MarshalJSON() ([]byte, error) {
	j := errorLogStatusJSON{
		Name: st.Mode.Name, First: st.Mode.First, Then: st.Mode.Then,
		UpdatedBy: st.UpdatedBy, Revision: st.Revision, Previous: st.Previous,
	}
	if st.Mode.Window != 0 {
		j.Window = st.Mode.Window.String()
	}
	if !st.UpdatedAt.IsZero() {
		j.UpdatedAt = &st.UpdatedAt
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (st *ErrorLogStatus) UnmarshalJSON(b []byte) error {
	var j errorLogStatusJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*st = ErrorLogStatus{
		Mode:      errorlog.Mode{Name: j.Name, First: j.First, Then: j.Then},
		UpdatedBy: j.UpdatedBy,
		Revision:  j.Revision,
		Previous:  j.Previous,
	}
	if j.UpdatedAt != nil {
		st.UpdatedAt = *j.UpdatedAt
	}
	if j.Window != "" {
		d, err := time.ParseDuration(j.Window)
		if err != nil {
			return fmt.Errorf("control: window: %w", err)
		}
		st.Mode.Window = d
	}
	return nil
}

// ErrorLogStatus returns the current mode and its last change, read from the
// bucket's history.
func (s *Store) ErrorLogStatus(ctx context.Context) (ErrorLogStatus, error) {
	k := s.errorLogKind()
	entries, err := s.kv.History(ctx, KeyErrorLogMode)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return ErrorLogStatus{Mode: k.def}, nil
	}
	if err != nil {
		return ErrorLogStatus{}, fmt.Errorf("control: history of %s: %w", KeyErrorLogMode, err)
	}
	// Newest first: the current value, then the one it replaced. A deletion
	// stands for the default.
	var found []Setting[errorlog.Mode]
	for i := len(entries) - 1; i >= 0 && len(found) < 2; i-- {
		e := entries[i]
		if e.Operation() != jetstream.KeyValuePut {
			found = append(found, Setting[errorlog.Mode]{Value: k.def})
			continue
		}
		st, err := decode(k, e)
		if err != nil {
			return ErrorLogStatus{}, err
		}
		found = append(found, st)
	}
	if len(found) == 0 {
		return ErrorLogStatus{Mode: k.def}, nil
	}
	cur := found[0]
	out := ErrorLogStatus{Mode: cur.Value, UpdatedBy: cur.By, UpdatedAt: cur.At, Revision: cur.Revision}
	if len(found) == 2 {
		out.Previous = &found[1].Value
	}
	return out, nil
}

// ChangeErrorLogMode is SetErrorLogMode answering with the new status: the
// mode, who set it and when, and the mode it replaced.
func (s *Store) ChangeErrorLogMode(ctx context.Context, m errorlog.Mode, actor string) (ErrorLogStatus, error) {
	old, cur, err := s.setErrorLogMode(ctx, m, actor)
	if err != nil {
		return ErrorLogStatus{}, err
	}
	prev := old.Value
	return ErrorLogStatus{Mode: cur.Value, UpdatedBy: cur.By, UpdatedAt: cur.At, Revision: cur.Revision, Previous: &prev}, nil
}
