package dispatch

import (
	"errors"

	"github.com/sluicehq/sluice/wire"
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
	Reason wire.Reason
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
// when the reason is [wire.ReasonUnknownChannel].
func (e *InvalidAddressError) Is(target error) bool {
	return target == ErrInvalidAddress ||
		(target == ErrUnknownChannel && e.Reason == wire.ReasonUnknownChannel)
}

// Unwrap returns [ErrInvalidAddress].
func (e *InvalidAddressError) Unwrap() error { return ErrInvalidAddress }

// ReasonOf returns the Reason of the first [*InvalidAddressError] in err's
// tree, or "" if there is none.
func ReasonOf(err error) wire.Reason {
	if e, ok := errors.AsType[*InvalidAddressError](err); ok {
		return e.Reason
	}
	return ""
}

// Validate checks addr as an address for channel ch and returns nil if it is
// acceptable, or an [*InvalidAddressError]. An unsupported channel yields the
// reason [wire.ReasonUnknownChannel].
func Validate(ch Channel, addr string) error {
	switch ch {
	case ChannelEmail:
		return ValidateEmail(addr)
	case ChannelSMS:
		return ValidatePhone(addr)
	case ChannelPush:
		return ValidatePushToken(addr)
	}
	return &InvalidAddressError{Channel: ch, Reason: wire.ReasonUnknownChannel, Detail: "channel is not email, sms or push"}
}

func invalid(ch Channel, r wire.Reason, detail string) error {
	return &InvalidAddressError{Channel: ch, Reason: r, Detail: detail}
}
