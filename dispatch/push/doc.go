// Package push sends push notifications through Firebase Cloud Messaging's
// HTTP v1 API ([FCM]) and Apple's APNs provider API over HTTP/2 with token
// authentication ([APNs]), and routes each message to one of them by the
// shape of its token ([Router]).
//
// # Routing
//
// An APNs device token is hex: an even number, 64 to 200, of hex digits
// (see dispatch.ValidatePushToken). Anything else that passed validation is
// an FCM registration token or Firebase installation ID. FCM tokens are
// base64url and contain a ':' or non-hex letters in practice, so the split
// is unambiguous for tokens issued by the two services. A Router with only
// one backend sends the other kind of token nowhere and returns a transient
// error naming the missing backend, so the messages wait for the
// configuration to be fixed rather than being dropped.
//
// # Outcomes
//
// FCM: UNREGISTERED is rejected as unregistered; SENDER_ID_MISMATCH and
// INVALID_ARGUMENT about the token as bad_token; other INVALID_ARGUMENT as
// content_rejected; 429 (QUOTA_EXCEEDED) is unavailable with the
// Retry-After header, else Config.ThrottleRetryAfter (60s, Google's minimum
// for a 429 without Retry-After); 5xx, auth errors (401, 403
// PERMISSION_DENIED, THIRD_PARTY_AUTH_ERROR), the token endpoint's errors,
// connection errors and timeouts are transient.
//
// APNs: 410 Unregistered and ExpiredToken are rejected as unregistered;
// BadDeviceToken and DeviceTokenNotForTopic as bad_token; PayloadTooLarge
// and PayloadEmpty as content_rejected; 429 is unavailable (APNs sends no
// Retry-After, so Config.ThrottleRetryAfter, unless a proxy or the sink
// adds one); 5xx and the configuration errors (BadTopic, InvalidProviderToken,
// ...) are transient.
//
// # Idempotency
//
// FCM's v1 API has no idempotency key: the message ID travels in an
// Idempotency-Key header that Google ignores and the local sink keys its
// ledger on. APNs has apns-id, a UUID it echoes and reports errors by; the
// message ID becomes one through [APNsID] (the ID itself if it is a UUID,
// else a name-based UUID of it), and the sink keys its ledger on apns-id.
package push
