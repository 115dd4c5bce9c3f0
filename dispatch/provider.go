package dispatch

import (
	"context"
	"errors"
	"fmt"
)

// Message is one rendered message for one recipient, handed to a Provider.
type Message struct {
	// ID is the stable idempotency key of the send, derived from the
	// activation id: a redelivered activation carries the same ID.
	ID           string
	Tenant       string
	Conversation string
	Channel      Channel
	// To is the validated recipient address.
	To   string
	Vars map[string]string
}

// Provider sends messages on one channel. Send returns nil once the provider
// has accepted the message, a *RejectedError when the provider refused this
// message for good (the recipient or payload is bad: retrying cannot help), and
// any other error for a transient failure (timeout, 5xx, connection refused).
type Provider interface {
	Send(ctx context.Context, m *Message) error
}

// ErrRejected is matched by every *RejectedError.
var ErrRejected = errors.New("dispatch: rejected by provider")

// RejectedError is a permanent, per-message refusal by a provider.
type RejectedError struct {
	Reason Reason
	Detail string
}

func (e *RejectedError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("dispatch: rejected by provider: %s", e.Reason)
	}
	return fmt.Sprintf("dispatch: rejected by provider: %s: %s", e.Reason, e.Detail)
}

// Is makes errors.Is(err, ErrRejected) hold.
func (e *RejectedError) Is(target error) bool { return target == ErrRejected }
