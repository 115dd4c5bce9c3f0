package control

import "context"

// KeyIntake holds whether the API accepts new activations.
const KeyIntake = "intake"

// IntakeStatus is the value of the intake key. The zero value, intake
// running, is the default.
type IntakeStatus struct {
	// Paused makes the API answer 503 with Retry-After to new activations;
	// workers keep draining what is queued.
	Paused bool `json:"paused"`
}

var intakeKind = kind[IntakeStatus]{}

// Intake returns the intake setting (running, Revision 0, if never set).
func (s *Store) Intake(ctx context.Context) (Setting[IntakeStatus], error) {
	return get(ctx, s, intakeKind, KeyIntake)
}

// SetIntake pauses or resumes intake for the whole fleet, audited as
// SetErrorLogMode is, and returns the setting it replaced.
func (s *Store) SetIntake(ctx context.Context, v IntakeStatus, actor string) (old IntakeStatus, err error) {
	o, _, err := s.setIntake(ctx, v, actor)
	return o.Value, err
}

func (s *Store) setIntake(ctx context.Context, v IntakeStatus, actor string) (old, cur Setting[IntakeStatus], err error) {
	return update(ctx, s, intakeKind, KeyIntake, actor, func(Setting[IntakeStatus]) (IntakeStatus, error) {
		return v, nil
	})
}

// WatchIntake calls fn with the intake setting at once, then with every
// change, from one goroutine, until ctx ends (it then returns nil).
func (s *Store) WatchIntake(ctx context.Context, fn func(Setting[IntakeStatus])) error {
	return watchOne(ctx, s, intakeKind, KeyIntake, fn)
}
