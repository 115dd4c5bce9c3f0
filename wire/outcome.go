package wire

// Outcome is what became of one activation. Delivered, Invalid, Failed,
// Suppressed, Expired and Purged are final, and each activation ends in
// exactly one of them: at rest, for every conversation,
//
//	accepted = delivered + invalid + failed + suppressed + expired + purged
//
// Retried and Deferred are not outcomes of the activation but of one
// attempt (it was NakWithDelay'd and comes back); they appear only as values
// of the outcome label of sluice_messages_total.
type Outcome string

// The outcomes.
const (
	// OutcomeDelivered: a provider accepted the message.
	OutcomeDelivered Outcome = "delivered"
	// OutcomeInvalid: the message itself cannot be sent (a bad address, an
	// undecodable envelope); sending it again can never help.
	OutcomeInvalid Outcome = "invalid"
	// OutcomeFailed: the provider refused the message (an unknown
	// recipient, an unregistered token, rejected content, a template that
	// does not render), or it ran out of delivery attempts.
	OutcomeFailed Outcome = "failed"
	// OutcomeSuppressed: the recipient is on the tenant's suppression list.
	OutcomeSuppressed Outcome = "suppressed"
	// OutcomeExpired: the message waited longer than its conversation allows.
	OutcomeExpired Outcome = "expired"
	// OutcomePurged: removed from the queue by a stop.
	OutcomePurged Outcome = "purged"

	// OutcomeRetried: one attempt failed transiently; the message comes back.
	OutcomeRetried Outcome = "retried"
	// OutcomeDeferred: the provider was unavailable (breaker open, 429, rate
	// limit); the message comes back when it is.
	OutcomeDeferred Outcome = "deferred"
)

// Outcomes lists the final outcomes, in the order of the identity.
var Outcomes = []Outcome{OutcomeDelivered, OutcomeInvalid, OutcomeFailed, OutcomeSuppressed, OutcomeExpired, OutcomePurged}

// Reason is a stable, low-cardinality code that says why a message was not
// delivered. Reasons are metric label values and are stored in the error
// log with the outcome they mean, so an existing value never changes
// meaning.
type Reason string

// Reasons for an envelope that cannot be processed (poison messages).
const (
	ReasonUndecodable     Reason = "undecodable"
	ReasonUnknownSchema   Reason = "unknown_schema"
	ReasonMissingField    Reason = "missing_field"
	ReasonSubjectMismatch Reason = "subject_mismatch"
	ReasonVarsTooLarge    Reason = "vars_too_large"
)

// Reasons an address is invalid for its channel (package dispatch's
// validators).
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
	// valid number according to the numbering plan of its country (also
	// Twilio's 21211, an invalid 'To' number).
	ReasonInvalidNumber Reason = "invalid_number"
	// ReasonBadToken: a push token has neither the APNs nor the FCM shape, or
	// FCM or APNs refused it as malformed (INVALID_ARGUMENT on the token,
	// SENDER_ID_MISMATCH, BadDeviceToken, DeviceTokenNotForTopic).
	ReasonBadToken Reason = "bad_token"
	// ReasonUnknownChannel: the address was given for an unsupported channel.
	ReasonUnknownChannel Reason = "unknown_channel"
)

// Reasons for a provider's refusal of one message (dispatch.RejectedError),
// and for running out of attempts.
const (
	// ReasonRecipientRejected: the mail relay refused the recipient (SMTP 5xx
	// on RCPT, such as 550 5.1.1 "user unknown" or 553 "mailbox name not
	// allowed").
	ReasonRecipientRejected Reason = "recipient_rejected"
	// ReasonContentRejected: the provider refused the payload (SMTP 5xx after
	// DATA, Twilio body errors, FCM INVALID_ARGUMENT on the message, APNs
	// PayloadTooLarge).
	ReasonContentRejected Reason = "content_rejected"
	// ReasonUnreachable: the number cannot be reached from this account
	// (Twilio 21612, 21408).
	ReasonUnreachable Reason = "unreachable"
	// ReasonNotMobile: the number cannot receive SMS (Twilio 21614).
	ReasonNotMobile Reason = "not_mobile"
	// ReasonUnsubscribed: the recipient opted out (Twilio 21610, STOP).
	ReasonUnsubscribed Reason = "unsubscribed"
	// ReasonUnregistered: the push token is no longer registered (FCM
	// UNREGISTERED, APNs 410 Unregistered).
	ReasonUnregistered Reason = "unregistered"
	// ReasonTemplate: the message's template could not be rendered with its
	// variables (a variable is missing, for example).
	ReasonTemplate Reason = "template_error"
	// ReasonMaxDeliveries: the message failed transiently on every one of
	// its allowed attempts.
	ReasonMaxDeliveries Reason = "max_deliveries"
)

// Reasons a message was not sent although it could have been.
const (
	// ReasonSuppressed: the recipient is on the tenant's suppression list
	// (a provider refused it permanently before, it unsubscribed, or the
	// tenant added it by hand).
	ReasonSuppressed Reason = "suppressed"
	// ReasonExpired: the message was taken after its expires_at.
	ReasonExpired Reason = "expired"
)

// suppressingReasons are the provider refusals that put the recipient on
// its tenant's suppression list: sending to it again can never succeed.
var suppressingReasons = map[Reason]bool{
	ReasonRecipientRejected: true, ReasonUnregistered: true, ReasonUnsubscribed: true, ReasonInvalidNumber: true,
}

// Suppresses reports whether a provider's refusal for reason r (a
// dispatch.RejectedError's) means the recipient is to be suppressed: SMTP
// 5.1.1 and other 5xx on RCPT, FCM UNREGISTERED, APNs 410 Unregistered,
// Twilio 21610 (unsubscribed) and 21211 (invalid number).
func Suppresses(r Reason) bool { return suppressingReasons[r] }

// invalidReasons are the reasons whose outcome is invalid: the message
// itself can never be sent.
var invalidReasons = map[Reason]bool{
	ReasonUndecodable: true, ReasonUnknownSchema: true, ReasonMissingField: true,
	ReasonSubjectMismatch: true, ReasonVarsTooLarge: true,
	ReasonEmpty: true, ReasonSyntax: true, ReasonTooLong: true, ReasonBadDomain: true,
	ReasonNotE164: true, ReasonInvalidNumber: true, ReasonBadToken: true, ReasonUnknownChannel: true,
}

// OutcomeOf is the one place that says which outcome a reason means: the
// reasons of a bad envelope or a bad address are invalid; suppressed and
// expired are their own outcomes; a provider's
// refusal and running out of attempts are failed. A reason this build does
// not know (a provider's new code) is failed: the provider, not the
// message's shape, refused it. The pipeline decides a message's outcome
// with it and stores the outcome with the count; readers read the stored
// outcome and never call it on a stored reason.
func OutcomeOf(r Reason) Outcome {
	switch {
	case invalidReasons[r]:
		return OutcomeInvalid
	case r == ReasonSuppressed:
		return OutcomeSuppressed
	case r == ReasonExpired:
		return OutcomeExpired
	}
	return OutcomeFailed
}
