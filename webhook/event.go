package webhook

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/jsensure"
	"github.com/sluicehq/sluice/wire"
)

// The events an endpoint may ask for: the message outcomes, and what
// happens to a conversation.
const (
	EventDelivered   = string(wire.OutcomeDelivered)
	EventInvalid     = string(wire.OutcomeInvalid)
	EventFailed      = string(wire.OutcomeFailed)
	EventSuppressed  = string(wire.OutcomeSuppressed)
	EventExpired     = string(wire.OutcomeExpired)
	EventQuarantined = "quarantined"
	EventPurged      = string(wire.OutcomePurged)
)

// Events lists every event name, in the order the API documents them.
var eventNames = []string{EventDelivered, EventInvalid, EventFailed, EventSuppressed, EventExpired, EventQuarantined, EventPurged}

// EventNames returns every event an endpoint may ask for.
func EventNames() []string { return slices.Clone(eventNames) }

// ValidEvent reports whether name is an event an endpoint may ask for.
func ValidEvent(name string) bool { return slices.Contains(eventNames, name) }

// Event is one delivery-status event, as stored in the stream and as sent
// in a webhook's body (data.events[]).
type Event struct {
	// ID identifies the event: <activation>:<outcome> for a message's
	// outcome (the same for a redelivered message), a unique id for a
	// conversation's.
	ID string `json:"id"`
	// Type is the event name (EventDelivered ...).
	Type         string `json:"type"`
	Tenant       string `json:"tenant"`
	Conversation string `json:"conversation"`
	Activation   string `json:"activation,omitempty"`
	Channel      string `json:"channel,omitempty"`
	Reason       string `json:"reason,omitempty"`
	// Count is the number of messages a purge removed.
	Count uint64    `json:"count,omitempty"`
	At    time.Time `json:"at"`
}

// StreamName is the JetStream stream of events.
const StreamName = "SLUICE_WEBHOOK_EVENTS"

// subjectPrefix starts every event's subject: sluice.webhook.<tenant>.<event>.
const subjectPrefix = "sluice.webhook."

// StreamMaxAge is how long events are kept: how far back replay reaches,
// and how long an endpoint's undelivered events wait.
const StreamMaxAge = 7 * 24 * time.Hour

// StreamDuplicates is the stream's duplicate window: an event published
// again within it (a message redelivered after its count committed) is
// stored once.
const StreamDuplicates = 10 * time.Minute

// Subject is the subject of tenant's events of one type.
func Subject(tenant, event string) string { return subjectPrefix + tenant + "." + event }

// ErrInvalid is returned (wrapped) for input that can never be accepted.
var ErrInvalid = errors.New("webhook: invalid")

// checkToken refuses a tenant that cannot be a subject token.
func checkToken(tenant string) error {
	if tenant == "" || strings.ContainsAny(tenant, ".*> \t\r\n") {
		return fmt.Errorf("%w: tenant %q cannot be a subject token", ErrInvalid, tenant)
	}
	return nil
}

// EnsureStream creates the stream of events if it is missing, or brings
// an existing one to its configuration (jsensure.Stream), with replicas
// (0: 1).
func EnsureStream(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.Stream, error) {
	st, err := jsensure.Stream(ctx, js, jetstream.StreamConfig{
		Name:        StreamName,
		Description: "sluice delivery-status events for webhooks (sluice.webhook.<tenant>.<event>)",
		Subjects:    []string{subjectPrefix + "*.*"},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      StreamMaxAge,
		Duplicates:  StreamDuplicates,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	return st, nil
}
