package dispatch

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/sluicehq/sluice/wire"
	"golang.org/x/net/idna"
)

// Email length limits, in octets of the address as given (RFC 5321 §4.5.3.1
// and the 254-octet path limit of RFC 5321 erratum 1690).
const (
	maxEmailLen = 254
	maxLocalLen = 64
	maxLabelLen = 63
)

// ASCII character classes as 128-bit sets split into two uint64 halves:
// bit c of lo for c < 64, bit c-64 of hi for 64 <= c < 128. Constants, so
// there is no package-level state and no table to initialise.
const (
	digitBits  = (1<<10 - 1) << '0'
	letterBits = (1<<26-1)<<('A'-64) | (1<<26-1)<<('a'-64)

	// atext of RFC 5322 §3.2.3: ALPHA / DIGIT / "!#$%&'*+-/=?^_`{|}~".
	atextLo uint64 = digitBits | 1<<'!' | 1<<'#' | 1<<'$' | 1<<'%' | 1<<'&' |
		1<<'\'' | 1<<'*' | 1<<'+' | 1<<'-' | 1<<'/' | 1<<'=' | 1<<'?'
	atextHi uint64 = letterBits | 1<<('^'-64) | 1<<('_'-64) | 1<<('`'-64) |
		1<<('{'-64) | 1<<('|'-64) | 1<<('}'-64) | 1<<('~'-64)

	// LDH (letter, digit, hyphen) of RFC 1035 §2.3.1.
	ldhLo uint64 = digitBits | 1<<'-'
	ldhHi uint64 = letterBits
)

func inSet(lo, hi uint64, c byte) bool {
	switch {
	case c < 64:
		return lo>>c&1 == 1
	case c < 128:
		return hi>>(c-64)&1 == 1
	}
	return false
}

// idnaProfile converts internationalized domains to their ASCII (A-label)
// form with the UTS #46 lookup mapping (case folding, width and NFC
// normalization), the Bidi rule, label validation and DNS length checks.
// Hyphen placement is checked by checkEmailDomain instead, so that ASCII and
// internationalized domains follow exactly the same rule (the lookup profile
// would also reject labels such as "ab--cd", which exist in the DNS).
// A *idna.Profile is immutable once built, so sharing it is safe.
var idnaProfile = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.VerifyDNSLength(true),
	idna.Transitional(false),
	idna.CheckHyphens(false),
)

// Fixed details: they must never contain input data.
const (
	detailEmpty        = "address is empty"
	detailTooLong      = "address exceeds 254 octets"
	detailTooLongASCII = "address exceeds 254 octets once its domain is converted to ASCII"
	detailLocalTooLong = "local part exceeds 64 octets"
	detailSpace        = "leading or trailing whitespace"
	detailControl      = "control character"
	detailDisplayName  = "display names and angle brackets are not accepted"
	detailNoAt         = "missing @"
	detailEmptyLocal   = "local part is empty"
	detailLocalDot     = "local part starts or ends with a dot"
	detailLocalDots    = "consecutive dots in local part"
	detailLocalSpace   = "whitespace in local part"
	detailLocalChar    = "character not allowed in unquoted local part"
	detailLocalUTF8    = "invalid or non-printable UTF-8 in local part"
	detailEmptyQuoted  = "quoted local part is empty"
	detailUnterminated = "unterminated quoted local part"
	detailQuotedPair   = "invalid escape in quoted local part"
	detailAfterQuote   = "quoted local part not followed by @"
	detailDomainSyntax = "whitespace, quote, backslash, angle bracket or @ in domain"
	detailNoDomain     = "domain is empty"
	detailLiteral      = "address literals are not accepted"
	detailDomainChar   = "character not allowed in domain"
	detailEmptyLabel   = "empty domain label"
	detailLabelTooLong = "domain label exceeds 63 octets"
	detailLabelHyphen  = "domain label starts or ends with a hyphen"
	detailNoDot        = "domain has no dot"
	detailNumericTLD   = "top-level domain is all numeric"
	detailDomainUTF8   = "invalid UTF-8 in domain"
	detailIDN          = "invalid internationalized domain name"
)

// ValidateEmail reports whether addr is an acceptable email address for
// sending. It returns nil or an [*InvalidAddressError] for [ChannelEmail].
//
// The check is a practical subset of the RFC 5321 Mailbox / RFC 5322
// addr-spec, strict enough to catch garbage and header injection, lenient
// enough for every address people really use:
//
//   - The input must be a bare address: no display name ("Bob <b@x.org>"),
//     no angle brackets, no comments, no surrounding whitespace, and no
//     control character (NUL, CR, LF, TAB, DEL, ...) anywhere: all rejected
//     with [wire.ReasonSyntax].
//   - At most 254 octets in total and at most 64 octets of local part
//     ([wire.ReasonTooLong]); for an internationalized domain the limit also
//     applies with the domain in its ASCII (xn--) form.
//   - The local part is either a dot-atom (RFC 5322 atext, with no leading,
//     trailing or consecutive dots; "first.last+tag@x.org" is fine) or a
//     quoted string ("\"john smith\"@x.org"). A quoted string may contain
//     printable ASCII including spaces, the quoted pairs \" and \\ (any
//     backslash followed by a printable ASCII character), and printable
//     UTF-8; it must not be empty and must be the whole local part
//     (obsolete mixed forms such as "a".b are rejected).
//   - Internationalized local parts (RFC 6531) are accepted: besides atext,
//     any valid UTF-8 character that Unicode classifies as a letter, mark,
//     number, punctuation or symbol. Unicode spaces, format characters
//     (zero-width, bidi controls), private-use and unassigned code points,
//     C1 controls and U+FFFD are rejected. The local part is not
//     normalized.
//   - The domain must be a DNS host name with at least one dot (no bare
//     host names such as "localhost"), labels of 1 to 63 octets made of
//     letters, digits and hyphens, not starting or ending with a hyphen, and
//     a top-level label that is not all digits; a trailing root dot is
//     rejected. Internationalized domains ("bücher.de") are converted with
//     the IDNA lookup profile (UTS #46 non-transitional) and the ASCII form
//     is checked; ASCII labels starting with "xn--" must be valid Punycode.
//     The lookup mapping folds case and width, so "ＥＸＡＭＰＬＥ。com"
//     passes as example.com: a sender talking to a server without SMTPUTF8
//     must send the domain in that ASCII form, not as given.
//     Address literals ("user@[192.0.2.1]", "user@[IPv6:...]") are rejected:
//     bulk mail to a bare IP is never legitimate. Domain problems are
//     reported with [wire.ReasonBadDomain].
//
// Nothing is looked up in the DNS. ValidateEmail does not allocate for a
// valid address whose domain is plain ASCII.
func ValidateEmail(addr string) error {
	if addr == "" {
		return invalidEmail(wire.ReasonEmpty, detailEmpty)
	}
	if len(addr) > maxEmailLen {
		return invalidEmail(wire.ReasonTooLong, detailTooLong)
	}
	if isSpace(addr[0]) || isSpace(addr[len(addr)-1]) {
		return invalidEmail(wire.ReasonSyntax, detailSpace)
	}
	for i := 0; i < len(addr); i++ {
		if c := addr[i]; c < 0x20 || c == 0x7f {
			return invalidEmail(wire.ReasonSyntax, detailControl)
		}
	}
	if addr[len(addr)-1] == '>' {
		return invalidEmail(wire.ReasonSyntax, detailDisplayName)
	}

	var at int
	var err error
	if addr[0] == '"' {
		at, err = scanQuotedLocal(addr)
	} else {
		at, err = scanDotAtomLocal(addr)
	}
	if err != nil {
		return err
	}
	if at > maxLocalLen {
		return invalidEmail(wire.ReasonTooLong, detailLocalTooLong)
	}
	return checkEmailDomain(addr[at+1:], at)
}

func invalidEmail(r wire.Reason, detail string) error { return invalid(ChannelEmail, r, detail) }

func isSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\v', '\f', '\r':
		return true
	}
	return false
}

// allowedNonASCII reports whether r, decoded from a UTF-8 local part, is
// acceptable: valid and graphic, but no space of any kind.
func allowedNonASCII(r rune) bool {
	return r != utf8.RuneError && unicode.IsPrint(r)
}

// scanDotAtomLocal checks the dot-atom local part at the start of addr and
// returns the index of the @ that ends it.
func scanDotAtomLocal(addr string) (int, error) {
	prevDot := false
	for i := 0; i < len(addr); {
		c := addr[i]
		switch {
		case c == '@':
			switch {
			case i == 0:
				return 0, invalidEmail(wire.ReasonSyntax, detailEmptyLocal)
			case prevDot:
				return 0, invalidEmail(wire.ReasonSyntax, detailLocalDot)
			}
			return i, nil
		case c == '.':
			switch {
			case i == 0:
				return 0, invalidEmail(wire.ReasonSyntax, detailLocalDot)
			case prevDot:
				return 0, invalidEmail(wire.ReasonSyntax, detailLocalDots)
			}
			prevDot = true
			i++
		case c < utf8.RuneSelf:
			if !inSet(atextLo, atextHi, c) {
				return 0, invalidEmail(wire.ReasonSyntax, localCharDetail(c))
			}
			prevDot = false
			i++
		default:
			r, size := utf8.DecodeRuneInString(addr[i:])
			if !allowedNonASCII(r) {
				return 0, invalidEmail(wire.ReasonSyntax, detailLocalUTF8)
			}
			prevDot = false
			i += size
		}
	}
	return 0, invalidEmail(wire.ReasonSyntax, detailNoAt)
}

func localCharDetail(c byte) string {
	switch c {
	case ' ':
		return detailLocalSpace
	case '<', '>':
		return detailDisplayName
	}
	return detailLocalChar
}

// scanQuotedLocal checks the quoted-string local part at the start of addr
// (addr[0] is the opening quote) and returns the index of the @ that
// follows the closing quote.
func scanQuotedLocal(addr string) (int, error) {
	for i := 1; i < len(addr); {
		c := addr[i]
		switch {
		case c == '"':
			if i == 1 {
				return 0, invalidEmail(wire.ReasonSyntax, detailEmptyQuoted)
			}
			if i+1 >= len(addr) || addr[i+1] != '@' {
				return 0, invalidEmail(wire.ReasonSyntax, detailAfterQuote)
			}
			return i + 1, nil
		case c == '\\':
			if i+1 >= len(addr) {
				return 0, invalidEmail(wire.ReasonSyntax, detailUnterminated)
			}
			if n := addr[i+1]; n < 0x20 || n > 0x7e {
				return 0, invalidEmail(wire.ReasonSyntax, detailQuotedPair)
			}
			i += 2
		case c < utf8.RuneSelf:
			// Printable ASCII or space: controls were rejected up front.
			i++
		default:
			r, size := utf8.DecodeRuneInString(addr[i:])
			if !allowedNonASCII(r) {
				return 0, invalidEmail(wire.ReasonSyntax, detailLocalUTF8)
			}
			i += size
		}
	}
	return 0, invalidEmail(wire.ReasonSyntax, detailUnterminated)
}

// checkEmailDomain checks the domain of an address whose local part is
// localLen octets long.
func checkEmailDomain(domain string, localLen int) error {
	if domain == "" {
		return invalidEmail(wire.ReasonBadDomain, detailNoDomain)
	}
	if domain[0] == '[' {
		return invalidEmail(wire.ReasonBadDomain, detailLiteral)
	}
	needIDNA, err := checkDomainLabels(domain, true)
	if err != nil || !needIDNA {
		return err
	}
	if !utf8.ValidString(domain) {
		return invalidEmail(wire.ReasonBadDomain, detailDomainUTF8)
	}
	ascii, err := idnaProfile.ToASCII(domain)
	if err != nil {
		// The idna error quotes the domain: never pass it on.
		return invalidEmail(wire.ReasonBadDomain, detailIDN)
	}
	if localLen+1+len(ascii) > maxEmailLen {
		return invalidEmail(wire.ReasonTooLong, detailTooLongASCII)
	}
	if _, err := checkDomainLabels(ascii, false); err != nil {
		return err
	}
	// The ASCII form hides hyphens at the edges of a U-label ("-bücher" is
	// "xn---bcher-kva"): check them on the decoded labels.
	uni, err := idna.Punycode.ToUnicode(ascii)
	if err != nil {
		return invalidEmail(wire.ReasonBadDomain, detailIDN)
	}
	for start := 0; start <= len(uni); {
		end := strings.IndexByte(uni[start:], '.')
		if end < 0 {
			end = len(uni)
		} else {
			end += start
		}
		if label := uni[start:end]; label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return invalidEmail(wire.ReasonBadDomain, detailLabelHyphen)
		}
		start = end + 1
	}
	return nil
}

// checkDomainLabels checks that d is a dotted LDH host name. With idn set, a
// non-ASCII byte or an "xn--" label makes it report needIDNA instead of
// failing; the caller then converts d to ASCII and calls again with idn
// unset, so label checks are skipped once a non-ASCII byte has been seen.
// Whitespace, quotes, angle brackets and @ are syntax errors, not domain
// errors.
func checkDomainLabels(d string, idn bool) (needIDNA bool, err error) {
	start, dots := 0, 0
	allDigits := true
	for i := 0; i <= len(d); i++ {
		if i < len(d) && d[i] != '.' {
			c := d[i]
			switch {
			case inSet(ldhLo, ldhHi, c):
				allDigits = allDigits && '0' <= c && c <= '9'
			case c >= utf8.RuneSelf && idn:
				needIDNA = true
			case c == ' ' || c == '"' || c == '@' || c == '<' || c == '>' || c == '\\':
				return false, invalidEmail(wire.ReasonSyntax, detailDomainSyntax)
			default:
				// No other ASCII character survives IDNA either.
				return false, invalidEmail(wire.ReasonBadDomain, detailDomainChar)
			}
			continue
		}
		// End of a label.
		if i < len(d) {
			dots++
		}
		if !needIDNA {
			label := d[start:i]
			switch {
			case label == "":
				return false, invalidEmail(wire.ReasonBadDomain, detailEmptyLabel)
			case len(label) > maxLabelLen:
				return false, invalidEmail(wire.ReasonBadDomain, detailLabelTooLong)
			case label[0] == '-' || label[len(label)-1] == '-':
				return false, invalidEmail(wire.ReasonBadDomain, detailLabelHyphen)
			case idn && isACELabel(label):
				needIDNA = true
			}
		}
		if i < len(d) {
			start = i + 1
			allDigits = true
		}
	}
	switch {
	case needIDNA:
		return true, nil
	case dots == 0:
		return false, invalidEmail(wire.ReasonBadDomain, detailNoDot)
	case allDigits:
		return false, invalidEmail(wire.ReasonBadDomain, detailNumericTLD)
	}
	return false, nil
}

// isACELabel reports whether label has the "xn--" prefix of an IDNA A-label,
// in any case.
func isACELabel(label string) bool {
	return len(label) >= 4 && label[2] == '-' && label[3] == '-' &&
		(label[0]|0x20) == 'x' && (label[1]|0x20) == 'n'
}
