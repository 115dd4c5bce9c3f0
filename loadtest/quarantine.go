package loadtest

import "context"

// Quarantiner is the quarantine step of an incident run. The run polls
// Quarantined for each burst conversation once a second; once a
// conversation is quarantined, the run records when and how many of its
// messages were processed before, then calls Stop, which stops the
// conversation and purges its queued messages, returning how many were
// purged (they count as purged in the accounting).
//
// No implementation ships yet: conversation stop with purge is being built
// in orchestrator/control. A run without one reports quarantine "not
// available".
type Quarantiner interface {
	Quarantined(ctx context.Context, tenant, conversation string) (bool, error)
	Stop(ctx context.Context, tenant, conversation string) (purged int64, err error)
}

// Quarantine states of the report.
const (
	QuarantineNotAvailable = "not available"
	QuarantineOff          = "off"
	QuarantineOn           = "on"
)

// quarantineFor returns the quarantiner of a run (nil in comparisons) and
// the report's state.
func quarantineFor(cfg *Config) (Quarantiner, string) {
	switch {
	case cfg.Compare:
		return nil, QuarantineOff
	case cfg.Quarantine == nil:
		return nil, QuarantineNotAvailable
	default:
		return cfg.Quarantine, QuarantineOn
	}
}
