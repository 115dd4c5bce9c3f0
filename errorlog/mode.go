package errorlog

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ModeName selects which events keep a detail row. Counters are exact in
// every mode.
type ModeName string

// The modes.
const (
	// ModeFull writes every event's row, in batches with COPY.
	ModeFull ModeName = "full"
	// ModeSample writes, per (conversation, reason), the first First events of
	// each Window, then one in Then.
	ModeSample ModeName = "sample"
	// ModeOff writes no rows: exact counters and metrics only.
	ModeOff ModeName = "off"
	// ModeSync writes one INSERT per event before Record returns: the legacy
	// design that stalled a platform, kept for side-by-side comparison and for
	// users who need every row durable before the ack.
	ModeSync ModeName = "sync"
)

// Mode is the error log's run-time setting, as stored in the control plane.
type Mode struct {
	Name ModeName `json:"mode"`
	// First is how many events per (conversation, reason) and window keep
	// their row in sample mode. Default 100.
	First int `json:"first,omitempty"`
	// Then keeps one in Then of the events beyond First, in sample mode.
	// Default 1000.
	Then int `json:"then,omitempty"`
	// Window is the sampling window. Default 1m.
	Window time.Duration `json:"-"`
}

// DefaultMode is the mode of a deployment that never set one: full.
var DefaultMode = Mode{Name: ModeFull}

// WithDefaults fills the sampling parameters left zero.
func (m Mode) WithDefaults() Mode {
	if m.First == 0 {
		m.First = 100
	}
	if m.Then == 0 {
		m.Then = 1000
	}
	if m.Window == 0 {
		m.Window = time.Minute
	}
	return m
}

// Validate reports a mode that cannot be applied, naming the field.
func (m Mode) Validate() error {
	switch m.Name {
	case ModeFull, ModeSample, ModeOff, ModeSync:
	default:
		return fmt.Errorf("errorlog: mode %q: want full, sample, off or sync", m.Name)
	}
	switch {
	case m.First < 0:
		return errors.New("errorlog: mode first must be 0 or more")
	case m.Then < 0:
		return errors.New("errorlog: mode then must be 0 or more")
	case m.Window < 0:
		return errors.New("errorlog: mode window must be positive")
	}
	return nil
}

func (m Mode) String() string {
	if m.Name != ModeSample {
		return string(m.Name)
	}
	d := m.WithDefaults()
	return fmt.Sprintf("sample (first %d per %v, then 1 in %d)", d.First, d.Window, d.Then)
}

type modeJSON struct {
	Name   ModeName `json:"mode"`
	First  int      `json:"first,omitempty"`
	Then   int      `json:"then,omitempty"`
	Window string   `json:"window,omitempty"`
}

// MarshalJSON writes Window as a Go duration string ("1m0s").
func (m Mode) MarshalJSON() ([]byte, error) {
	j := modeJSON{Name: m.Name, First: m.First, Then: m.Then}
	if m.Window != 0 {
		j.Window = m.Window.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (m *Mode) UnmarshalJSON(b []byte) error {
	var j modeJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*m = Mode{Name: j.Name, First: j.First, Then: j.Then}
	if j.Window != "" {
		d, err := time.ParseDuration(j.Window)
		if err != nil {
			return fmt.Errorf("errorlog: mode window: %w", err)
		}
		m.Window = d
	}
	return nil
}

// ParseModeName returns the mode named s.
func ParseModeName(s string) (ModeName, error) {
	m := Mode{Name: ModeName(s)}
	if err := m.Validate(); err != nil {
		return "", err
	}
	return m.Name, nil
}
