package dispatch

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/wire"
)

// Message is one rendered message for one recipient, handed to a Provider.
type Message struct {
	// ID is the stable idempotency key of the send, derived from the
	// activation id: a redelivered activation carries the same ID. Providers
	// put it where their protocol carries an idempotency key (SMTP
	// Message-ID, an HTTP header, the APNs apns-id), so that a duplicate send
	// is recognisable downstream.
	ID           string
	Tenant       string
	Conversation string
	Channel      Channel
	// To is the validated recipient address.
	To   string
	Vars map[string]string
	// Subject and Body are the rendered subject and plain-text body (see
	// [Template]); when empty, providers send [Message.DefaultSubject] and
	// [Message.DefaultBody]. SMS sends Body only; push uses Subject as the
	// notification title.
	Subject, Body string
	// HTML is the rendered HTML body, used by email only; empty means a
	// plain-text email.
	HTML string
	// Headers are further headers, used by email only (List-Unsubscribe and
	// List-Unsubscribe-Post on bulk email). A header the provider writes
	// itself (From, To, Subject, Message-ID, ...) or a value unfit for one
	// header line is left out.
	Headers map[string]string
}

// SubjectOrDefault returns m.Subject, or a fixed default when it is empty.
func (m *Message) SubjectOrDefault() string {
	if m.Subject != "" {
		return m.Subject
	}
	return "Message from sluice"
}

// BodyOrDefault returns m.Body, or when it is empty a default body naming
// the message id followed by the variables as "key: value" lines in key
// order. The default exists so that `sluice dev` and tests send something
// readable before conversations carry templates.
func (m *Message) BodyOrDefault() string {
	if m.Body != "" {
		return m.Body
	}
	var b strings.Builder
	b.WriteString("sluice message ")
	b.WriteString(m.ID)
	for _, k := range slices.Sorted(maps.Keys(m.Vars)) {
		b.WriteString("\n")
		b.WriteString(k)
		b.WriteString(": ")
		b.WriteString(m.Vars[k])
	}
	return b.String()
}

// Provider sends messages on one channel. Send returns:
//
//   - nil once the provider has accepted the message;
//   - a *[RejectedError] (matching [ErrRejected]) when the provider refused
//     this message for good: the recipient or payload is bad and retrying
//     cannot help. The message is terminated after recording;
//   - a *[UnavailableError] (matching [ErrUnavailable]) when the provider
//     cannot take messages for a while: its circuit breaker is open, it
//     answered 429 or a throttling reply, or the rate limit would make the
//     send wait past the context's deadline. The message is retried after
//     RetryAfter and the failure never counts toward a dead letter;
//   - context.Canceled (possibly wrapped) when ctx was canceled;
//   - any other error for a transient failure (timeout, 5xx, connection
//     refused or reset): the message is retried with backoff.
type Provider interface {
	Send(ctx context.Context, m *Message) error
}

// ErrRejected is matched by every *RejectedError.
var ErrRejected = errors.New("dispatch: rejected by provider")

// RejectedError is a permanent, per-message refusal by a provider.
//
// Detail never contains the provider's free text, which may quote the
// recipient address: it names the protocol code only (for example
// "smtp 550 5.1.1" or "twilio error 21211").
type RejectedError struct {
	Reason wire.Reason
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

// ErrUnavailable is matched by every *UnavailableError.
var ErrUnavailable = errors.New("dispatch: provider unavailable")

// UnavailableError says that a provider cannot take messages for a while.
// The message itself is fine: retry it after RetryAfter, without counting
// the attempt against it.
type UnavailableError struct {
	// Provider names the provider (the [GuardConfig] Name, such as "smtp").
	Provider string
	// RetryAfter is how long to wait before sending again: the remaining
	// open time of the circuit breaker plus jitter, the provider's
	// Retry-After, or the rate limiter's wait. Always > 0.
	RetryAfter time.Duration
	// Cause is the underlying error, if any.
	Cause error
}

func (e *UnavailableError) Error() string {
	s := "dispatch: provider unavailable"
	if e.Provider != "" {
		s = "dispatch: provider " + e.Provider + " unavailable"
	}
	s += ", retry after " + e.RetryAfter.String()
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

// Is makes errors.Is(err, ErrUnavailable) hold.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// Unwrap returns Cause.
func (e *UnavailableError) Unwrap() error { return e.Cause }

// ParseRetryAfter reads an HTTP Retry-After header value, either a number
// of seconds or an HTTP date (relative to now). It returns def when the
// value is absent, malformed or not in the future.
func ParseRetryAfter(v string, now time.Time, def time.Duration) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return def
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 || secs > int64(24*time.Hour/time.Second) {
			return def
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return def
}
