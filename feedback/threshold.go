package feedback

import (
	"fmt"
	"time"
)

// Defaults of [Thresholds], in the spirit of the mailbox providers' rules
// for bulk senders (Gmail and Yahoo, 2024: keep spam complaints below
// 0.3 %; a hard-bounce rate above a few percent marks a list that was not
// kept clean).
const (
	ComplaintRatioDefault  = 0.003
	HardBounceRatioDefault = 0.05
	MinDeliveredDefault    = 1000
	WindowDefault          = 24 * time.Hour
)

// Thresholds decide when a conversation is paused for its feedback. The
// shares are the feedback counted over the last Window against the
// conversation's messages delivered in the same Window (per minute, both),
// judged once at least MinDelivered were delivered in it (so that the first
// few reports of a campaign cannot pause it).
type Thresholds struct {
	// ComplaintRatio pauses a conversation whose complaints exceed this
	// share of its delivered messages. Default ComplaintRatioDefault (0.3 %);
	// negative: off.
	ComplaintRatio float64
	// HardBounceRatio pauses a conversation whose hard bounces exceed this
	// share. Default HardBounceRatioDefault (5 %); negative: off.
	HardBounceRatio float64
	// MinDelivered is the number of delivered messages below which no
	// share is judged. Default MinDeliveredDefault (1000).
	MinDelivered int64
	// Window is how far back feedback and deliveries are counted. Default
	// WindowDefault (24 hours: a mailbox provider's daily rate).
	Window time.Duration
}

// SetDefaults fills the zero fields with their defaults.
func (t *Thresholds) SetDefaults() {
	if t.ComplaintRatio == 0 {
		t.ComplaintRatio = ComplaintRatioDefault
	}
	if t.HardBounceRatio == 0 {
		t.HardBounceRatio = HardBounceRatioDefault
	}
	if t.MinDelivered == 0 {
		t.MinDelivered = MinDeliveredDefault
	}
	if t.Window == 0 {
		t.Window = WindowDefault
	}
}

// Validate checks the thresholds, naming the field at fault.
func (t *Thresholds) Validate() error {
	switch {
	case t.ComplaintRatio > 1:
		return fmt.Errorf("feedback: Thresholds.ComplaintRatio %v: want at most 1", t.ComplaintRatio)
	case t.HardBounceRatio > 1:
		return fmt.Errorf("feedback: Thresholds.HardBounceRatio %v: want at most 1", t.HardBounceRatio)
	case t.MinDelivered < 0:
		return fmt.Errorf("feedback: Thresholds.MinDelivered %d: must not be negative", t.MinDelivered)
	case t.Window < 0:
		return fmt.Errorf("feedback: Thresholds.Window %v: must be positive (0 means the default)", t.Window)
	}
	return nil
}

// Exceeded returns why a conversation with counts c and delivered
// messages, both over the Window, should be paused, or "" if it should not.
func (t Thresholds) Exceeded(c Counts, delivered int64) string {
	if delivered < max(t.MinDelivered, 1) {
		return ""
	}
	share := func(n int64) float64 { return float64(n) / float64(delivered) }
	switch {
	case t.ComplaintRatio >= 0 && share(c.Complaints) > t.ComplaintRatio:
		return fmt.Sprintf("complaint rate %.2f%% of %d delivered in the last %v passes %.2f%%", 100*share(c.Complaints), delivered, t.Window, 100*t.ComplaintRatio)
	case t.HardBounceRatio >= 0 && share(c.HardBounces) > t.HardBounceRatio:
		return fmt.Sprintf("hard-bounce rate %.2f%% of %d delivered in the last %v passes %.2f%%", 100*share(c.HardBounces), delivered, t.Window, 100*t.HardBounceRatio)
	}
	return ""
}
