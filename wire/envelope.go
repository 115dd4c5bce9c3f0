package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// SchemaVersion is the envelope version this build writes and reads.
const SchemaVersion = 1

// Activation is the versioned JSON envelope of one message for one recipient.
type Activation struct {
	// Version is the envelope schema version; see SchemaVersion.
	Version int `json:"v"`
	// ID identifies the activation; it is the Nats-Msg-Id of the publish and
	// the idempotency key of the send.
	ID           string `json:"id"`
	Tenant       string `json:"tenant"`
	Conversation string `json:"conversation"`
	Lane         Lane   `json:"lane"`
	Channel      string `json:"channel"`
	// To is the recipient address: an email address, an E.164 number or a
	// push token, according to Channel.
	To string `json:"to"`
	// Vars are the template variables for this recipient.
	Vars       map[string]string `json:"vars,omitempty"`
	EnqueuedAt time.Time         `json:"enqueued_at"`
	// ExpiresAt, when set, is the time after which the message must not be
	// sent: a worker that takes it later counts it expired. Optional.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// Expired reports whether a carries an expiry that is not after now.
func (a *Activation) Expired(now time.Time) bool {
	return a.ExpiresAt != nil && !now.Before(*a.ExpiresAt)
}

// Subject returns the subject the activation is published on.
func (a *Activation) Subject() string {
	return Subject(a.Lane, a.Tenant, a.Conversation)
}

// ErrBadEnvelope is matched by every *EnvelopeError.
var ErrBadEnvelope = errors.New("wire: bad envelope")

// EnvelopeError says why a message could not be decoded into an Activation.
type EnvelopeError struct {
	Reason Reason
	Detail string
}

func (e *EnvelopeError) Error() string {
	return fmt.Sprintf("wire: bad envelope: %s: %s", e.Reason, e.Detail)
}

// Is makes errors.Is(err, ErrBadEnvelope) hold.
func (e *EnvelopeError) Is(target error) bool { return target == ErrBadEnvelope }

// wireActivation keeps Vars raw so that its size is checked before it is
// decoded into a map.
type wireActivation struct {
	Version      int             `json:"v"`
	ID           string          `json:"id"`
	Tenant       string          `json:"tenant"`
	Conversation string          `json:"conversation"`
	Lane         Lane            `json:"lane"`
	Channel      string          `json:"channel"`
	To           string          `json:"to"`
	Vars         json.RawMessage `json:"vars,omitempty"`
	EnqueuedAt   time.Time       `json:"enqueued_at"`
	ExpiresAt    *time.Time      `json:"expires_at,omitempty"`
}

// Decode parses an envelope. maxVars bounds the encoded size in bytes of the
// template variables (0: no bound). The channel is not checked here: an unknown
// channel is an address-validation outcome of package dispatch.
func Decode(data []byte, maxVars int) (*Activation, error) {
	return decode(data, maxVars, true)
}

// decode is Decode, through encoding/json alone unless fast.
func decode(data []byte, maxVars int, fast bool) (*Activation, error) {
	var w wireActivation // on the stack: only the slow path's copy escapes
	fast = fast && decodeFast(data, &w)
	if !fast {
		slow := new(wireActivation)
		if err := json.Unmarshal(data, slow); err != nil {
			return nil, &EnvelopeError{Reason: ReasonUndecodable, Detail: trimDetail(err.Error())}
		}
		w = *slow
	}
	if w.Version != SchemaVersion {
		return nil, &EnvelopeError{Reason: ReasonUnknownSchema, Detail: fmt.Sprintf("version %d, this build reads %d", w.Version, SchemaVersion)}
	}
	switch {
	case w.ID == "":
		return nil, &EnvelopeError{Reason: ReasonMissingField, Detail: "id"}
	case !ValidToken(w.Tenant):
		return nil, &EnvelopeError{Reason: ReasonMissingField, Detail: "tenant: want 1-64 of [A-Za-z0-9_-]"}
	case !ValidToken(w.Conversation):
		return nil, &EnvelopeError{Reason: ReasonMissingField, Detail: "conversation: want 1-64 of [A-Za-z0-9_-]"}
	case !w.Lane.Valid():
		return nil, &EnvelopeError{Reason: ReasonMissingField, Detail: "lane: want transactional or bulk"}
	case len(w.ID) > 128:
		return nil, &EnvelopeError{Reason: ReasonMissingField, Detail: "id: longer than 128 bytes"}
	}
	a := &Activation{
		Version: w.Version, ID: w.ID, Tenant: w.Tenant, Conversation: w.Conversation,
		Lane: w.Lane, Channel: w.Channel, To: w.To, EnqueuedAt: w.EnqueuedAt, ExpiresAt: w.ExpiresAt,
	}
	if len(w.Vars) > 0 && string(w.Vars) != "null" {
		if maxVars > 0 && len(w.Vars) > maxVars {
			return a, &EnvelopeError{Reason: ReasonVarsTooLarge, Detail: fmt.Sprintf("%d bytes, limit %d", len(w.Vars), maxVars)}
		}
		if fast {
			a.Vars, fast = decodeVarsFast(w.Vars)
		}
		if !fast {
			if err := json.Unmarshal(w.Vars, &a.Vars); err != nil {
				return a, &EnvelopeError{Reason: ReasonUndecodable, Detail: "vars: want an object of strings"}
			}
		}
	}
	return a, nil
}

// DefaultMaxVarsBytes is the default bound of the encoded template
// variables of one activation (Config.MaxVarsBytes): a larger map is
// recorded as vars_too_large by the workers, and refused by the API.
const DefaultMaxVarsBytes = 8 << 10

// VarsSize is the encoded size in bytes of vars in an envelope, what Decode
// bounds with maxVars (0 for no vars).
func VarsSize(vars map[string]string) int {
	if len(vars) == 0 {
		return 0
	}
	b, _ := json.Marshal(vars) // a map of strings always encodes
	return len(b)
}

// Encode returns the JSON envelope of a, filling Version.
func Encode(a *Activation) ([]byte, error) {
	a.Version = SchemaVersion
	if b, ok := encodeFast(a); ok {
		return b, nil
	}
	return json.Marshal(a)
}

func trimDetail(s string) string {
	if len(s) > 200 {
		return s[:200]
	}
	return s
}
