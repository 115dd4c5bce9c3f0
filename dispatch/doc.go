// Package dispatch validates recipient addresses and sends messages to channel
// providers (email, SMS and push), each provider behind its own circuit breaker.
//
// # Address validation
//
// Every activation's recipient is checked by [Validate] before any provider is
// called, so that malformed or empty addresses are classified as permanent
// failures without a network round trip. The per-channel validators are
// [ValidateEmail], [ValidatePhone] and [ValidatePushToken]; their exact rules
// are documented on each function.
//
// A rejected address always yields an [*InvalidAddressError]. Its [Reason] is a
// stable, low-cardinality code suitable for a Prometheus label and for the
// error log; its Detail is a fixed, human-readable phrase. Neither the error
// text nor the Detail ever contains the address or any part of it, because
// recipient addresses are personal data and error strings end up in logs. Use
// [ReasonOf] to extract the reason and errors.Is(err, [ErrInvalidAddress]) to
// test for the class.
//
// The validators are safe for concurrent use, hold no mutable state, never
// panic, and do not allocate for valid ASCII email addresses and valid push
// tokens; they are meant to run once per message on the hot path.
package dispatch
