package dispatch

import "errors"

// ErrNotSent is matched by the errors that prove a provider did not take
// the message: the connection was refused or never established, the
// provider answered before the message was handed over (an SMTP reply
// before the final dot, an HTTP 5xx that says the resource was not
// created), or the provider was never called (every [*UnavailableError]:
// breaker open, throttled, rate limited). Such a message can go to another
// provider at once without risk of being sent twice. An error that does not
// match it (a timeout or a connection lost after the message was written)
// leaves the send in doubt.
var ErrNotSent = errors.New("dispatch: provider did not take the message")

// NotSent wraps err, a transient failure, to say that the provider did not
// take the message (see [ErrNotSent]); errors.Is and errors.As still reach
// err. NotSent(nil) is nil.
func NotSent(err error) error {
	if err == nil {
		return nil
	}
	return &notSentError{err: err}
}

type notSentError struct{ err error }

func (e *notSentError) Error() string        { return e.err.Error() }
func (e *notSentError) Unwrap() error        { return e.err }
func (e *notSentError) Is(target error) bool { return target == ErrNotSent }

// provenNotSent reports whether err proves the provider did not take the
// message.
func provenNotSent(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotSent)
}
