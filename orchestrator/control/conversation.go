package control

import (
	"context"
	"fmt"

	"github.com/sluicehq/sluice/wire"
)

// conversationPrefix starts the key of each conversation's state:
// conversation.<tenant>.<conversation>.
const conversationPrefix = "conversation."

// ConversationState is what the workers do with a conversation's messages.
type ConversationState string

// The states.
const (
	// StateActive: messages flow. The default.
	StateActive ConversationState = "active"
	// StatePaused: queued messages are kept, not fetched; resuming continues
	// them.
	StatePaused ConversationState = "paused"
	// StateStopped: the conversation is over and its queued messages are
	// purged, counted as purged. Final: a stopped conversation cannot be
	// resumed or paused.
	StateStopped ConversationState = "stopped"
	// StateQuarantined: paused automatically because too many of its messages
	// were invalid; an operator resumes or stops it.
	StateQuarantined ConversationState = "quarantined"
)

// Valid reports whether st is one of the states.
func (st ConversationState) Valid() bool {
	switch st {
	case StateActive, StatePaused, StateStopped, StateQuarantined:
		return true
	}
	return false
}

// ConversationStatus is the value of a conversation.<tenant>.<conversation>
// key.
type ConversationStatus struct {
	State ConversationState `json:"state"`
	// Reason says why, in words: an operator's note, the quarantine's ratio.
	Reason string `json:"reason,omitempty"`
}

// maxReason bounds a state's reason.
const maxReason = 1024

var conversationKind = kind[ConversationStatus]{
	def: ConversationStatus{State: StateActive},
	check: func(v ConversationStatus) error {
		if !v.State.Valid() {
			return fmt.Errorf("conversation state %q: want active, paused, stopped or quarantined", v.State)
		}
		if len(v.Reason) > maxReason {
			return fmt.Errorf("conversation reason longer than %d bytes", maxReason)
		}
		return nil
	},
}

// ConversationKey returns the key of a conversation's state, or an error
// wrapping ErrInvalid if tenant or conversation is not a valid id.
func ConversationKey(tenant, conversation string) (string, error) {
	if !wire.ValidToken(tenant) {
		return "", fmt.Errorf("%w: tenant id %q: want 1 to 64 of [A-Za-z0-9_-]", ErrInvalid, tenant)
	}
	if !wire.ValidToken(conversation) {
		return "", fmt.Errorf("%w: conversation id %q: want 1 to 64 of [A-Za-z0-9_-]", ErrInvalid, conversation)
	}
	return conversationPrefix + tenant + "." + conversation, nil
}

// Conversation returns a conversation's state (active, Revision 0, if never
// set).
func (s *Store) Conversation(ctx context.Context, tenant, conversation string) (Setting[ConversationStatus], error) {
	key, err := ConversationKey(tenant, conversation)
	if err != nil {
		return Setting[ConversationStatus]{}, err
	}
	return get(ctx, s, conversationKind, key)
}

// SetConversation changes a conversation's state for the whole fleet,
// audited as SetErrorLogMode is, and returns the status it replaced. A
// stopped conversation stays stopped: any change to it fails with ErrStopped
// (setting stopped again is allowed and changes nothing but the reason).
func (s *Store) SetConversation(ctx context.Context, tenant, conversation string, v ConversationStatus, actor string) (old ConversationStatus, err error) {
	key, err := ConversationKey(tenant, conversation)
	if err != nil {
		return ConversationStatus{}, err
	}
	o, _, err := update(ctx, s, conversationKind, key, actor, func(old Setting[ConversationStatus]) (ConversationStatus, error) {
		if old.Value.State == StateStopped && v.State != StateStopped {
			return ConversationStatus{}, fmt.Errorf("%w: %s/%s", ErrStopped, tenant, conversation)
		}
		return v, nil
	})
	return o.Value, err
}

// ConversationUpdate is one conversation's state, as WatchConversations
// delivers it.
type ConversationUpdate struct {
	Tenant       string
	Conversation string
	Setting[ConversationStatus]
}

// WatchConversations calls fn, from one goroutine until ctx ends (it then
// returns nil), for each conversation that has a state, then for every
// change. synced, if not nil, is called once after the current states were
// delivered: conversations not delivered by then are active. A deleted key
// is delivered as active.
func (s *Store) WatchConversations(ctx context.Context, fn func(ConversationUpdate), synced func()) error {
	return watch(ctx, s, conversationKind, conversationPrefix+">", func(key string, st Setting[ConversationStatus], _ bool) {
		tenant, conversation, ok := ConversationOfKey(key)
		if !ok {
			s.log.Warn("control: skipping a malformed conversation key", "key", key)
			return
		}
		fn(ConversationUpdate{Tenant: tenant, Conversation: conversation, Setting: st})
	}, synced)
}
