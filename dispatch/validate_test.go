package dispatch

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/wire"
)

// validCase and invalidCase drive the table tests of every validator.
type invalidCase struct {
	name   string
	addr   string
	reason wire.Reason
}

func checkValid(t *testing.T, validate func(string) error, cases map[string]string) {
	t.Helper()
	for name, addr := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if err := validate(addr); err != nil {
				t.Fatalf("validate(%q) = %v, want nil", addr, err)
			}
		})
	}
}

func checkInvalid(t *testing.T, ch Channel, validate func(string) error, cases []invalidCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := validate(tc.addr)
			if err == nil {
				t.Fatalf("validate(%q) = nil, want reason %q", tc.addr, tc.reason)
			}
			checkInvalidError(t, err, ch)
			if got := ReasonOf(err); got != tc.reason {
				t.Fatalf("validate(%q) reason = %q (%v), want %q", tc.addr, got, err, tc.reason)
			}
		})
	}
}

// checkInvalidError asserts the contract every rejection honours: an
// *InvalidAddressError for the right channel, matched by ErrInvalidAddress,
// with a known reason and a fixed detail (so the address cannot leak into
// logs through it).
func checkInvalidError(t testing.TB, err error, ch Channel) {
	t.Helper()
	e, ok := errors.AsType[*InvalidAddressError](err)
	if !ok {
		t.Fatalf("error %T %v is not an *InvalidAddressError", err, err)
	}
	if e.Channel != ch {
		t.Fatalf("error channel = %q, want %q", e.Channel, ch)
	}
	if !knownReasons[e.Reason] {
		t.Fatalf("error reason %q is not a known reason", e.Reason)
	}
	if !knownDetails[e.Detail] {
		t.Fatalf("error detail %q is not one of the fixed details", e.Detail)
	}
	if want := "dispatch: invalid " + string(ch) + " address: " + string(e.Reason) + ": " + e.Detail; err.Error() != want {
		t.Fatalf("Error() = %q, want %q", err.Error(), want)
	}
	if !errors.Is(err, ErrInvalidAddress) {
		t.Fatal("errors.Is(err, ErrInvalidAddress) = false")
	}
}

var knownReasons = map[wire.Reason]bool{
	wire.ReasonEmpty: true, wire.ReasonSyntax: true, wire.ReasonTooLong: true, wire.ReasonBadDomain: true,
	wire.ReasonNotE164: true, wire.ReasonInvalidNumber: true, wire.ReasonBadToken: true, wire.ReasonUnknownChannel: true,
}

var knownDetails = map[string]bool{}

func init() {
	for _, d := range []string{
		detailEmpty, detailTooLong, detailTooLongASCII, detailLocalTooLong, detailSpace, detailControl,
		detailDisplayName, detailNoAt, detailEmptyLocal, detailLocalDot, detailLocalDots, detailLocalSpace,
		detailLocalChar, detailLocalUTF8, detailEmptyQuoted, detailUnterminated, detailQuotedPair,
		detailAfterQuote, detailDomainSyntax, detailNoDomain, detailLiteral, detailDomainChar,
		detailEmptyLabel, detailLabelTooLong, detailLabelHyphen, detailNoDot, detailNumericTLD,
		detailDomainUTF8, detailIDN,
		detailPhoneNoPlus, detailPhoneNonDigit, detailPhoneTooLong, detailPhoneTooShort, detailPhoneZero,
		detailPhoneUnparsable, detailPhoneInvalid,
		detailTokenTooLong, detailTokenSpace, detailTokenChar, detailTokenShape, detailTokenColon,
	} {
		knownDetails[d] = true
	}
}

func TestValidateEmailValid(t *testing.T) {
	t.Parallel()
	label63 := strings.Repeat("d", 63)
	checkValid(t, ValidateEmail, map[string]string{
		"simple":               "user@example.com",
		"short":                "x@y.io",
		"plus addressing":      "first.last+newsletter@example.com",
		"plus and subdomains":  "a+b+c@mail.eu.example.co.uk",
		"upper case":           "USER@EXAMPLE.COM",
		"apostrophe":           "o'reilly@example.ie",
		"all atext specials":   "!#$%&'*+-/=?^_`{|}~@example.com",
		"digits in labels":     "user@123.4example.com",
		"hyphens in labels":    "user@a-b.ex--ample.com",
		"hyphenated tld":       "user@example.c-m",
		"63 octet label":       "user@" + label63 + ".com",
		"64 octet local part":  strings.Repeat("l", 64) + "@example.com",
		"254 octets":           strings.Repeat("l", 64) + "@" + label63 + "." + label63 + "." + strings.Repeat("d", 57) + ".com",
		"idn domain":           "user@bücher.de",
		"idn domain upper":     "user@BÜCHER.de",
		"idn subdomain":        "user@mail.bücher.de",
		"idn with ldh labels":  "user@ab--cd.bücher.de",
		"idn symbol":           "user@☃.net",
		"ideographic dot":      "user@例子\u3002广告",
		"fullwidth domain":     "user@ＥＸＡＭＰＬＥ。com",
		"punycode domain":      "user@xn--bcher-kva.de",
		"utf8 local part":      "josé@example.com",
		"utf8 everything":      "用户@例子.广告",
		"cyrillic":             "почта@пример.рф",
		"quoted local part":    `"john smith"@example.com`,
		"quoted with escapes":  `"a\"b\\c"@example.com`,
		"quoted with at":       `"a@b"@example.com`,
		"quoted with specials": `"(comment?) <x>"@example.com`,
		"quoted utf8":          `"josé martín"@example.com`,
	})
}

func TestValidateEmailInvalid(t *testing.T) {
	t.Parallel()
	label63 := strings.Repeat("d", 63)
	// A domain that fits in 254 octets as UTF-8 but not as ASCII: each label
	// grows from 51 to 58 octets once Punycode encoded.
	idnLabel := strings.Repeat("a", 49) + "ü"
	longIDN := "l@" + strings.Repeat(idnLabel+".", 4) + "de"
	if len(longIDN) > 254 {
		t.Fatalf("test setup: long IDN address is %d octets", len(longIDN))
	}
	longIDN = strings.Repeat("l", 254-len(longIDN)) + longIDN

	checkInvalid(t, ChannelEmail, ValidateEmail, []invalidCase{
		{"empty", "", wire.ReasonEmpty},

		{"255 octets", strings.Repeat("l", 64) + "@" + label63 + "." + label63 + "." + strings.Repeat("d", 58) + ".com", wire.ReasonTooLong},
		{"huge", strings.Repeat("a", 10000) + "@example.com", wire.ReasonTooLong},
		{"65 octet local part", strings.Repeat("l", 65) + "@example.com", wire.ReasonTooLong},
		{"65 octet quoted local part", `"` + strings.Repeat("l", 63) + `"@example.com`, wire.ReasonTooLong},
		{"too long once ascii", longIDN, wire.ReasonTooLong},

		{"display name", "Bob <bob@example.com>", wire.ReasonSyntax},
		{"angle brackets", "<bob@example.com>", wire.ReasonSyntax},
		{"quoted display name", `"Bob" <bob@example.com>`, wire.ReasonSyntax},
		{"leading space", " user@example.com", wire.ReasonSyntax},
		{"trailing space", "user@example.com ", wire.ReasonSyntax},
		{"trailing newline", "user@example.com\n", wire.ReasonSyntax},
		{"trailing crlf", "user@example.com\r\n", wire.ReasonSyntax},
		{"header injection", "user@example.com\r\nBcc: victim@example.org", wire.ReasonSyntax},
		{"nul", "us\x00er@example.com", wire.ReasonSyntax},
		{"tab", "us\ter@example.com", wire.ReasonSyntax},
		{"del", "user@exam\x7fple.com", wire.ReasonSyntax},
		{"lf in quotes", "\"a\nb\"@example.com", wire.ReasonSyntax},
		{"no at", "user.example.com", wire.ReasonSyntax},
		{"only at", "@", wire.ReasonSyntax},
		{"empty local part", "@example.com", wire.ReasonSyntax},
		{"leading dot", ".user@example.com", wire.ReasonSyntax},
		{"trailing dot", "user.@example.com", wire.ReasonSyntax},
		{"consecutive dots", "us..er@example.com", wire.ReasonSyntax},
		{"space in local part", "us er@example.com", wire.ReasonSyntax},
		{"comma", "us,er@example.com", wire.ReasonSyntax},
		{"parenthesis comment", "user(comment)@example.com", wire.ReasonSyntax},
		{"backslash unquoted", `us\er@example.com`, wire.ReasonSyntax},
		{"two ats", "a@b@example.com", wire.ReasonSyntax},
		{"space in domain", "user@exa mple.com", wire.ReasonSyntax},
		{"empty quoted", `""@example.com`, wire.ReasonSyntax},
		{"unterminated quote", `"user@example.com`, wire.ReasonSyntax},
		{"dangling escape", `"user\`, wire.ReasonSyntax},
		{"escaped non-ascii", `"a\é"@example.com`, wire.ReasonSyntax},
		{"text after quote", `"a"b@example.com`, wire.ReasonSyntax},
		{"mixed obsolete form", `"a".b@example.com`, wire.ReasonSyntax},
		{"quote inside atom", `a"b"@example.com`, wire.ReasonSyntax},
		{"zero width space", "us\u200ber@example.com", wire.ReasonSyntax},
		{"no-break space", "us\u00a0er@example.com", wire.ReasonSyntax},
		{"bidi override in local", "\u202euser@example.com", wire.ReasonSyntax},
		{"c1 control", "us\u0085er@example.com", wire.ReasonSyntax},
		{"replacement char", "us\ufffder@example.com", wire.ReasonSyntax},
		{"invalid utf8 local", "us\xffer@example.com", wire.ReasonSyntax},
		{"truncated utf8 local", "jos\xc3@example.com", wire.ReasonSyntax},

		{"missing domain", "user@", wire.ReasonBadDomain},
		{"bare host", "user@localhost", wire.ReasonBadDomain},
		{"bare idn host", "user@bücher", wire.ReasonBadDomain},
		{"ipv4 literal", "user@[192.0.2.1]", wire.ReasonBadDomain},
		{"ipv6 literal", "user@[IPv6:2001:db8::1]", wire.ReasonBadDomain},
		{"bare ipv4", "user@192.0.2.1", wire.ReasonBadDomain},
		{"numeric tld", "user@example.123", wire.ReasonBadDomain},
		{"leading hyphen", "user@-example.com", wire.ReasonBadDomain},
		{"trailing hyphen", "user@example-.com", wire.ReasonBadDomain},
		{"tld hyphen", "user@example.com-", wire.ReasonBadDomain},
		{"idn leading hyphen", "user@-bücher.de", wire.ReasonBadDomain},
		{"underscore", "user@exa_mple.com", wire.ReasonBadDomain},
		{"leading domain dot", "user@.example.com", wire.ReasonBadDomain},
		{"double domain dot", "user@example..com", wire.ReasonBadDomain},
		{"root dot", "user@example.com.", wire.ReasonBadDomain},
		{"64 octet label", "user@" + label63 + "d.com", wire.ReasonBadDomain},
		{"bogus punycode", "user@xn--a.com", wire.ReasonBadDomain},
		{"ascii punycode", "user@xn--abc-.com", wire.ReasonBadDomain},
		{"upper bogus punycode", "user@XN--a.com", wire.ReasonBadDomain},
		{"bidi override in domain", "user@\u202eexample.com", wire.ReasonBadDomain},
		{"invalid utf8 domain", "user@b\xfccher.de", wire.ReasonBadDomain},
		{"line separator in idn", "user@bü\u2028cher.de", wire.ReasonBadDomain},
		{"no-break space in idn", "user@bü\u00a0cher.de", wire.ReasonBadDomain},
		{"idn trailing hyphen", "user@bücher-.de", wire.ReasonBadDomain},
		{"idn fullwidth hyphen", "user@\uff0dbücher.de", wire.ReasonBadDomain},
		{"idn ideographic dot hyphen", "user@bücher\u3002-de.com", wire.ReasonBadDomain},
		{"hyphen in punycode label", "user@xn---bcher-kva.de", wire.ReasonBadDomain},
		{"idn with underscore", "user@bü_cher.de", wire.ReasonBadDomain},
		{"comment in domain", "user@(c)example.com", wire.ReasonBadDomain},
	})
}

func TestValidatePhone(t *testing.T) {
	t.Parallel()
	checkValid(t, ValidatePhone, map[string]string{
		"us":              "+14155552671",
		"uk":              "+442071838750",
		"germany mobile":  "+4915123456789",
		"china mobile":    "+8613800138000",
		"france mobile":   "+33612345678",
		"australia":       "+61491570156",
		"niue 7 digits":   "+6834002",
		"saint helena":    "+29021234",
		"15 digit bounds": "+4915123456789",
	})
	checkInvalid(t, ChannelSMS, ValidatePhone, []invalidCase{
		{"empty", "", wire.ReasonEmpty},
		{"no plus", "14155552671", wire.ReasonNotE164},
		{"national format", "(415) 555-2671", wire.ReasonNotE164},
		{"spaces", "+1 415 555 2671", wire.ReasonNotE164},
		{"dashes", "+1-415-555-2671", wire.ReasonNotE164},
		{"parentheses", "+1(415)5552671", wire.ReasonNotE164},
		{"dots", "+1.415.555.2671", wire.ReasonNotE164},
		{"extension", "+14155552671;ext=12", wire.ReasonNotE164},
		{"trailing space", "+14155552671 ", wire.ReasonNotE164},
		{"leading space", " +14155552671", wire.ReasonNotE164},
		{"double plus", "++14155552671", wire.ReasonNotE164},
		{"plus only", "+", wire.ReasonNotE164},
		{"six digits", "+683400", wire.ReasonNotE164},
		{"sixteen digits", "+1234567890123456", wire.ReasonNotE164},
		{"huge", "+" + strings.Repeat("1", 5000), wire.ReasonNotE164},
		{"leading zero", "+04155552671", wire.ReasonNotE164},
		{"arabic-indic digits", "+١٤١٥٥٥٥٢٦٧١", wire.ReasonNotE164},
		{"fullwidth digits", "+１４１５５５５２６７１", wire.ReasonNotE164},
		{"tel uri", "tel:+14155552671", wire.ReasonNotE164},
		{"nul", "+1415555\x002671", wire.ReasonNotE164},
		{"us too short", "+1415555267", wire.ReasonInvalidNumber},
		{"us bad area code", "+10005552671", wire.ReasonInvalidNumber},
		{"unassigned country code", "+99912345678", wire.ReasonInvalidNumber},
		{"saint helena too short", "+2902123", wire.ReasonInvalidNumber},
		{"fifteen digits", "+123456789012345", wire.ReasonInvalidNumber},
	})
}

func TestValidatePushToken(t *testing.T) {
	t.Parallel()
	hex64 := "6e18f1989e5350ca1ba5a454290440a6799f57842363456190a19c10561f796c"
	fcm := "dGhpc2lzYW5maWRleGFtcGw:APA91b" + strings.Repeat("Ab3_-x", 22)
	checkValid(t, ValidatePushToken, map[string]string{
		"apns 64 hex":       hex64,
		"apns upper hex":    strings.ToUpper(hex64),
		"apns 160 hex":      strings.Repeat("a1", 80),
		"apns 200 hex":      strings.Repeat("f0", 100),
		"apns 108 hex":      strings.Repeat("0a", 54),
		"fcm token":         fcm,
		"legacy gcm id":     "APA91b" + strings.Repeat("Zz9-_", 28),
		"fcm 4096":          "APA91b" + strings.Repeat("x", 4090),
		"fcm no colon":      strings.Repeat("a", 100),
		"fid":               "cK1fgzS1RX2N3JbZqsvM4q",
		"fid underscores":   "f_-_-_-_-_-_-_-_-_-_-_",
		"legacy fid":        "dXh0Zm9vYm-",
		"odd hex is opaque": strings.Repeat("a", 101),
	})
	checkInvalid(t, ChannelPush, ValidatePushToken, []invalidCase{
		{"empty", "", wire.ReasonEmpty},
		{"4097", strings.Repeat("a", 4097), wire.ReasonTooLong},
		{"huge with spaces", strings.Repeat("a b", 5000), wire.ReasonTooLong},
		{"63 hex", hex64[:63], wire.ReasonBadToken},
		{"65 hex", hex64 + "a", wire.ReasonBadToken},
		{"62 hex", hex64[:62], wire.ReasonBadToken},
		{"apns with spaces", "<6e18f198 9e5350ca 1ba5a454 290440a6 799f5784 23634561 90a19c10 561f796c>", wire.ReasonBadToken},
		{"leading space", " " + hex64, wire.ReasonBadToken},
		{"trailing newline", hex64 + "\n", wire.ReasonBadToken},
		{"crlf in fcm", fcm[:80] + "\r\n" + fcm[80:], wire.ReasonBadToken},
		{"nul", hex64[:32] + "\x00" + hex64[32:], wire.ReasonBadToken},
		{"standard base64", strings.Repeat("ab+/", 30) + "==", wire.ReasonBadToken},
		{"dot", fcm + ".", wire.ReasonBadToken},
		{"non-ascii", fcm + "é", wire.ReasonBadToken},
		{"two colons", "abc:" + fcm, wire.ReasonBadToken},
		{"leading colon", ":" + fcm[23:], wire.ReasonBadToken},
		{"trailing colon", fcm + ":", wire.ReasonBadToken},
		{"only colon", ":", wire.ReasonBadToken},
		{"short opaque", strings.Repeat("a", 99), wire.ReasonBadToken},
		{"short with colon", "abc:def", wire.ReasonBadToken},
		{"fid bad prefix", "aK1fgzS1RX2N3JbZqsvM4q", wire.ReasonBadToken},
		{"fid 21", "cK1fgzS1RX2N3JbZqsvM4", wire.ReasonBadToken},
		{"fid 23", "cK1fgzS1RX2N3JbZqsvM4qq", wire.ReasonBadToken},
		{"fid with colon", "cK1fgzS1RX:N3JbZqsvM4q", wire.ReasonBadToken},
		{"email", "user@example.com", wire.ReasonBadToken},
	})
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ch     Channel
		addr   string
		reason wire.Reason // "" means valid
	}{
		{ChannelEmail, "user@example.com", ""},
		{ChannelEmail, "+14155552671", wire.ReasonSyntax},
		{ChannelSMS, "+14155552671", ""},
		{ChannelSMS, "user@example.com", wire.ReasonNotE164},
		{ChannelPush, strings.Repeat("ab", 32), ""},
		{ChannelPush, "", wire.ReasonEmpty},
		{"fax", "+14155552671", wire.ReasonUnknownChannel},
		{"", "user@example.com", wire.ReasonUnknownChannel},
		{"EMAIL", "user@example.com", wire.ReasonUnknownChannel},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s", tt.ch, tt.addr), func(t *testing.T) {
			t.Parallel()
			err := Validate(tt.ch, tt.addr)
			if got := ReasonOf(err); got != tt.reason {
				t.Fatalf("Validate(%q, %q) = %v, want reason %q", tt.ch, tt.addr, err, tt.reason)
			}
			if tt.reason == "" {
				return
			}
			if !errors.Is(err, ErrInvalidAddress) {
				t.Fatalf("errors.Is(%v, ErrInvalidAddress) = false", err)
			}
			if got, want := errors.Is(err, ErrUnknownChannel), tt.reason == wire.ReasonUnknownChannel; got != want {
				t.Fatalf("errors.Is(%v, ErrUnknownChannel) = %v, want %v", err, got, want)
			}
			if tt.addr != "" && strings.Contains(err.Error(), tt.addr) {
				t.Fatalf("error %q contains the address", err)
			}
		})
	}
}

func TestInvalidAddressError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  *InvalidAddressError
		want string
	}{
		{&InvalidAddressError{Channel: ChannelEmail, Reason: wire.ReasonSyntax, Detail: "missing @"},
			"dispatch: invalid email address: syntax: missing @"},
		{&InvalidAddressError{Channel: ChannelSMS, Reason: wire.ReasonNotE164},
			"dispatch: invalid sms address: not_e164"},
		{&InvalidAddressError{Channel: "fax\nforged log line", Reason: wire.ReasonUnknownChannel, Detail: "d"},
			"dispatch: invalid address: unknown_channel: d"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}

	wrapped := fmt.Errorf("worker: %w", ValidateEmail("nope"))
	if got := ReasonOf(wrapped); got != wire.ReasonSyntax {
		t.Errorf("ReasonOf(wrapped) = %q, want %q", got, wire.ReasonSyntax)
	}
	if !errors.Is(wrapped, ErrInvalidAddress) {
		t.Error("errors.Is(wrapped, ErrInvalidAddress) = false")
	}
	if errors.Is(wrapped, ErrUnknownChannel) {
		t.Error("errors.Is(wrapped syntax error, ErrUnknownChannel) = true")
	}
	if errors.Unwrap(ValidateEmail("")) != ErrInvalidAddress {
		t.Error("Unwrap does not return ErrInvalidAddress")
	}
	for _, err := range []error{nil, errors.New("other"), ErrInvalidAddress} {
		if got := ReasonOf(err); got != "" {
			t.Errorf("ReasonOf(%v) = %q, want empty", err, got)
		}
	}
}

// TestErrorsNeverContainAddress feeds addresses carrying a marker through
// every failure path and checks that the marker never reaches Error().
func TestErrorsNeverContainAddress(t *testing.T) {
	t.Parallel()
	const m = "zq7xk"
	inputs := []string{
		m, m + "@", "@" + m, m + "@" + m, "Bob <" + m + "@example.com>", m + "..x@example.com",
		m + "@" + m + "_.com", m + "@[" + m + "]", m + "@" + strings.Repeat(m, 60) + ".com",
		m + "@xn--" + m + ".com", m + "@bü" + m + "\u2028.de", `"` + m + `\é"@example.com`,
		"+" + m, "+1" + m, strings.Repeat(m, 1000), m + ":" + m, m + " " + m,
	}
	for _, in := range inputs {
		for _, ch := range []Channel{ChannelEmail, ChannelSMS, ChannelPush, Channel(m)} {
			err := Validate(ch, in)
			if err == nil {
				t.Errorf("Validate(%q, %q) = nil, want an error", ch, in)
				continue
			}
			if strings.Contains(err.Error(), m) {
				t.Errorf("Validate(%q, %q) error %q contains input", ch, in, err)
			}
		}
	}
}

func TestParseChannel(t *testing.T) {
	t.Parallel()
	for _, c := range []Channel{ChannelEmail, ChannelSMS, ChannelPush} {
		got, err := ParseChannel(string(c))
		if err != nil || got != c {
			t.Errorf("ParseChannel(%q) = %q, %v; want %q, nil", c, got, err, c)
		}
		if !c.Valid() {
			t.Errorf("%q.Valid() = false", c)
		}
	}
	for _, s := range []string{"", "EMAIL", " sms", "fax", "push\n", strings.Repeat("x", 1000)} {
		got, err := ParseChannel(s)
		if !errors.Is(err, ErrUnknownChannel) || got != "" {
			t.Errorf("ParseChannel(%q) = %q, %v; want ErrUnknownChannel", s, got, err)
		}
		if err != nil && len(err.Error()) > 200 {
			t.Errorf("ParseChannel error is %d bytes long", len(err.Error()))
		}
		if Channel(s).Valid() {
			t.Errorf("Channel(%q).Valid() = true", s)
		}
	}
}

// TestCharacterSets pins the bit-set constants to their RFC definitions.
func TestCharacterSets(t *testing.T) {
	t.Parallel()
	isAlnum := func(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' }
	for c := 0; c < 256; c++ {
		b := byte(c)
		if got, want := inSet(atextLo, atextHi, b), isAlnum(b) || strings.IndexByte("!#$%&'*+-/=?^_`{|}~", b) >= 0; got != want {
			t.Errorf("atext(%q) = %v, want %v", b, got, want)
		}
		if got, want := inSet(ldhLo, ldhHi, b), isAlnum(b) || b == '-'; got != want {
			t.Errorf("ldh(%q) = %v, want %v", b, got, want)
		}
		if got, want := inSet(fcmLo, fcmHi, b), isAlnum(b) || b == '-' || b == '_' || b == ':'; got != want {
			t.Errorf("fcm(%q) = %v, want %v", b, got, want)
		}
		if got, want := isHex(b), strings.IndexByte("0123456789abcdefABCDEF", b) >= 0; got != want {
			t.Errorf("isHex(%q) = %v, want %v", b, got, want)
		}
	}
}

// TestValidAddressesDoNotAllocate is not parallel: AllocsPerRun refuses to
// run alongside parallel tests.
func TestValidAddressesDoNotAllocate(t *testing.T) {
	tests := []struct {
		ch   Channel
		addr string
	}{
		{ChannelEmail, "first.last+tag@mail.example.com"},
		{ChannelEmail, `"john smith"@example.com`},
		{ChannelEmail, "josé@example.com"},
		{ChannelPush, strings.Repeat("ab", 32)},
		{ChannelPush, "dGhpc2lzYW5maWRleGFtcGw:APA91b" + strings.Repeat("Ab3_-x", 22)},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(100, func() { _ = Validate(tt.ch, tt.addr) }); n != 0 {
			t.Errorf("Validate(%q, %q) allocates %v times, want 0", tt.ch, tt.addr, n)
		}
	}
}

func BenchmarkValidateEmail(b *testing.B) {
	cases := []struct{ name, addr string }{
		{"ascii", "jane.doe@example.com"},
		{"plus_subdomain", "first.last+newsletter@mail.eu.example.co.uk"},
		{"utf8_local", "josé.martín@example.com"},
		{"quoted", `"john smith"@example.com`},
		{"idn", "user@bücher.de"},
		{"invalid_empty", ""},
		{"invalid_syntax", "Bob <bob@example.com>"},
		{"invalid_domain", "user@localhost"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = ValidateEmail(c.addr)
			}
		})
	}
}

func BenchmarkValidatePhone(b *testing.B) {
	for _, c := range []struct{ name, addr string }{
		{"valid", "+14155552671"},
		{"not_e164", "+1 415 555 2671"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = ValidatePhone(c.addr)
			}
		})
	}
}

func BenchmarkValidatePushToken(b *testing.B) {
	for _, c := range []struct{ name, addr string }{
		{"apns", strings.Repeat("ab", 32)},
		{"fcm", "dGhpc2lzYW5maWRleGFtcGw:APA91b" + strings.Repeat("Ab3_-x", 22)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = ValidatePushToken(c.addr)
			}
		})
	}
}
