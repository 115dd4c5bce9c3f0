package dispatch

import (
	"errors"
	"fmt"
)

// Channel is a delivery channel. Its values are stable: they appear in
// messages, metric labels and the error log.
type Channel string

// The supported channels.
const (
	ChannelEmail Channel = "email"
	ChannelSMS   Channel = "sms"
	ChannelPush  Channel = "push"
)

// ErrUnknownChannel is wrapped by the error [ParseChannel] returns for a
// string that names no channel.
var ErrUnknownChannel = errors.New("dispatch: unknown channel")

// maxEchoedChannel bounds how much of an unknown channel name is echoed back
// in an error, so that junk input cannot blow up a log line.
const maxEchoedChannel = 32

// ParseChannel returns the Channel named by s. Matching is exact and
// case-sensitive ("email", "sms", "push"), like the values stored in messages
// and metric labels. For any other s the error wraps [ErrUnknownChannel].
func ParseChannel(s string) (Channel, error) {
	if c := Channel(s); c.Valid() {
		return c, nil
	}
	if len(s) > maxEchoedChannel {
		s = s[:maxEchoedChannel] + "..."
	}
	return "", fmt.Errorf("%w %q (want %q, %q or %q)", ErrUnknownChannel, s, ChannelEmail, ChannelSMS, ChannelPush)
}

// Valid reports whether c is one of the supported channels.
func (c Channel) Valid() bool {
	switch c {
	case ChannelEmail, ChannelSMS, ChannelPush:
		return true
	}
	return false
}
