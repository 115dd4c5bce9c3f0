package dispatch

import "github.com/sluicehq/sluice/wire"

// Push token shapes.
const (
	// APNs device tokens are sent to APNs as hex strings. They were 32 bytes
	// (64 hex digits) for years, but Apple documents them as variable length
	// ("do not hard-code their size"), tokens of 54 and 80 bytes have been
	// reported in production, and Apple announced at WWDC 2015 that they may
	// grow to 100 bytes. Accept whole bytes from 32 to 100.
	minAPNsHex = 64
	maxAPNsHex = 200

	// Firebase installation IDs (FIDs) are 17 bytes with a 0b0111 prefix,
	// base64url encoded and cut to 22 characters, so they start with one of
	// "cdef" (the Firebase JS SDK checks /^[cdef][\w-]{21}$/). FIDs migrated
	// from a legacy Instance ID are the same encoding of 8 bytes: 11
	// characters. Since 2026 the Firebase SDKs register devices by FID and
	// the FCM v1 send API accepts it in place of a registration token.
	fidLen       = 22
	legacyFIDLen = 11

	// FCM registration tokens (and legacy GCM registration ids) are opaque
	// URL-safe strings, typically 140 to 200 characters and occasionally
	// over 350. There is no documented maximum; 4096 is a generous cap that
	// still bounds what reaches the provider and the error log.
	minFCMLen = 100
	maxFCMLen = 4096
)

// fcmLo and fcmHi are the base64url alphabet plus ':' (see inSet).
const (
	fcmLo uint64 = digitBits | 1<<'-' | 1<<':'
	fcmHi uint64 = letterBits | 1<<('_'-64)
)

const (
	detailTokenTooLong = "token exceeds 4096 characters"
	detailTokenSpace   = "whitespace or control character in token"
	detailTokenChar    = "character not allowed in token"
	detailTokenShape   = "token is not an APNs hex token, a Firebase installation ID or an FCM registration token"
	detailTokenColon   = "token has a misplaced or repeated ':'"
)

// ValidatePushToken reports whether addr is an acceptable push token. It
// returns nil or an [*InvalidAddressError] for [ChannelPush].
//
// Three shapes are accepted, so that one push channel serves both platforms:
//
//   - an APNs device token: an even number, 64 to 200, of hex digits in
//     either case (32 to 100 bytes; Apple documents tokens as variable
//     length, 64 hex digits is only the historical size);
//   - a Firebase installation ID (FID), which FCM accepts as a send target:
//     22 characters of [A-Za-z0-9_-] starting with one of "cdef", or 11 for
//     an FID migrated from a legacy Instance ID;
//   - an FCM registration token: 100 to 4096 characters of [A-Za-z0-9_-]
//     with at most one ':' that is neither first nor last. This covers
//     current tokens ("<instance id>:APA91b...") and legacy GCM registration
//     ids ("APA91b...", no colon); tokens are otherwise treated as opaque.
//
// Anything longer than 4096 characters is rejected with [wire.ReasonTooLong];
// any other mismatch, including surrounding whitespace, line breaks and the
// '+', '/' and '=' of standard base64, with [wire.ReasonBadToken].
// ValidatePushToken does not allocate for a valid token.
func ValidatePushToken(addr string) error {
	n := len(addr)
	switch {
	case n == 0:
		return invalidPush(wire.ReasonEmpty, detailEmpty)
	case n > maxFCMLen:
		return invalidPush(wire.ReasonTooLong, detailTokenTooLong)
	}
	colon := -1
	hex := true
	for i := 0; i < n; i++ {
		c := addr[i]
		switch {
		case c == ':':
			if colon >= 0 || i == 0 || i == n-1 {
				return invalidPush(wire.ReasonBadToken, detailTokenColon)
			}
			colon = i
			hex = false
		case inSet(fcmLo, fcmHi, c):
			hex = hex && isHex(c)
		case c <= ' ' || c == 0x7f:
			return invalidPush(wire.ReasonBadToken, detailTokenSpace)
		default:
			return invalidPush(wire.ReasonBadToken, detailTokenChar)
		}
	}
	switch {
	case hex && n >= minAPNsHex && n <= maxAPNsHex && n%2 == 0:
		return nil // APNs
	case (n == fidLen || n == legacyFIDLen) && colon < 0 && 'c' <= addr[0] && addr[0] <= 'f':
		return nil // FID
	case n >= minFCMLen:
		return nil // FCM registration token
	}
	return invalidPush(wire.ReasonBadToken, detailTokenShape)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'f'
}

func invalidPush(r wire.Reason, detail string) error { return invalid(ChannelPush, r, detail) }
