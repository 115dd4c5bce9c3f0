package dispatch

import "errors"

// Reason is a stable, low-cardinality code that says why an address was
// rejected. It is used as a Prometheus label value and stored in the error
// log, so existing values must never change meaning.
type Reason string

// The reasons an address can be rejected for.
const (
	// ReasonEmpty: the address is the empty string.
	ReasonEmpty Reason = "empty"
	// ReasonSyntax: the address does not have the shape of an address for its
	// channel (for email: anything but the domain is malformed, including
	// control characters, whitespace and display names).
	ReasonSyntax Reason = "syntax"
	// ReasonTooLong: the address exceeds a length limit (email address 254
	// octets, email local part 64 octets, push token 4096 characters).
	ReasonTooLong Reason = "too_long"
	// ReasonBadDomain: the domain of an email address is malformed.
	ReasonBadDomain Reason = "bad_domain"
	// ReasonNotE164: an SMS address is not written in E.164 form.
	ReasonNotE164 Reason = "not_e164"
	// ReasonInvalidNumber: an SMS address is well formed E.164 but not a
	// valid number according to the numbering plan of its country.
	ReasonInvalidNumber Reason = "invalid_number"
	// ReasonBadToken: a push token has neither the APNs nor the FCM shape.
	ReasonBadToken Reason = "bad_token"
	// ReasonUnknownChannel: the address was given for an unsupported channel.
	ReasonUnknownChannel Reason = "unknown_channel"
)

// ErrInvalidAddress matches, through errors.Is, every [*InvalidAddressError].
var ErrInvalidAddress = errors.New("dispatch: invalid address")

// InvalidAddressError is returned for every rejected address. It is a
// permanent failure: retrying the same address cannot succeed.
//
// Neither Detail nor Error() contains the address or any part of it.
type InvalidAddressError struct {
	// Channel is the channel the address was validated for.
	Channel Channel
	// Reason is the stable reason code.
	Reason Reason
	// Detail is a fixed, human-readable phrase refining Reason; it never
	// contains input data.
	Detail string
}

// Error returns a message such as
// "dispatch: invalid email address: syntax: consecutive dots in local part".
func (e *InvalidAddressError) Error() string {
	s := "dispatch: invalid address"
	if e.Channel.Valid() {
		s = "dispatch: invalid " + string(e.Channel) + " address"
	}
	s += ": " + string(e.Reason)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Is reports whether target is [ErrInvalidAddress], or [ErrUnknownChannel]
// when the reason is [ReasonUnknownChannel].
func (e *InvalidAddressError) Is(target error) bool {
	return target == ErrInvalidAddress ||
		(target == ErrUnknownChannel && e.Reason == ReasonUnknownChannel)
}

// Unwrap returns [ErrInvalidAddress].
func (e *InvalidAddressError) Unwrap() error { return ErrInvalidAddress }

// ReasonOf returns the Reason of the first [*InvalidAddressError] in err's
// tree, or "" if there is none.
func ReasonOf(err error) Reason {
	if e, ok := errors.AsType[*InvalidAddressError](err); ok {
		return e.Reason
	}
	return ""
}

// Validate checks addr as an address for channel ch and returns nil if it is
// acceptable, or an [*InvalidAddressError]. An unsupported channel yields the
// reason [ReasonUnknownChannel].
func Validate(ch Channel, addr string) error {
	switch ch {
	case ChannelEmail:
		return ValidateEmail(addr)
	case ChannelSMS:
		return ValidatePhone(addr)
	case ChannelPush:
		return ValidatePushToken(addr)
	}
	return &InvalidAddressError{Channel: ch, Reason: ReasonUnknownChannel, Detail: "channel is not email, sms or push"}
}

func invalid(ch Channel, r Reason, detail string) error {
	return &InvalidAddressError{Channel: ch, Reason: r, Detail: detail}
}
