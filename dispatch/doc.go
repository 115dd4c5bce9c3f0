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
//
// # Providers and outcomes
//
// A [Provider] sends one rendered [Message]. Its error says what to do with
// the message, and is classified exactly once, by the provider:
//
//   - nil: delivered; Ack.
//   - [*RejectedError] (errors.Is [ErrRejected]): the provider refused this
//     recipient or payload for good; record with its Reason and terminate.
//   - [*UnavailableError] (errors.Is [ErrUnavailable]): the provider cannot
//     take messages for a while (breaker open, 429, rate limit);
//     NakWithDelay(RetryAfter), never counting toward a dead letter.
//   - context.Canceled: the worker is stopping; leave the message to
//     redelivery.
//   - anything else: transient (timeout, 5xx, connection error); retry
//     with backoff.
//
// The implementations live in subpackages: email (SMTP), sms (Twilio
// shape), push (FCM HTTP v1, APNs, and a router between them by token
// shape). providerset builds all of them from one configuration, each
// behind [Guard]; sink holds local servers that speak the same protocols,
// and providertest the conformance suite every provider passes against its
// sink.
//
// # Circuit breakers and rate limits
//
// [Guard] puts a provider behind a gobreaker circuit breaker and an
// optional token-bucket rate limit. Rejections count as successes (one bad
// address says nothing about the provider), cancellations count as
// nothing, everything else (timeouts, 5xx, connection errors, 429) as
// failures. [Guarded.Open] lets a scheduler stop fetching work for a
// provider whose breaker is open.
//
// # Idempotency
//
// Message.ID, derived from the activation, is the idempotency key of a
// send. Each provider puts it where its protocol carries one: the SMTP
// Message-ID <ID@sluice>, the I-Twilio-Idempotency-Token header, an
// Idempotency-Key header for FCM (which has none of its own), and apns-id
// for APNs. The sinks' ledgers count sends by it, so duplicates show.
//
// # Templates
//
// [ParseTemplate] parses a conversation's subject, text and HTML templates
// once (text/template, and html/template for HTML); [Template.Render] runs
// per message with the activation's variables; [TemplateCache] keeps one
// parsed version per conversation. Providers send Message.Subject and
// Message.Body when set, else a default text.
package dispatch
