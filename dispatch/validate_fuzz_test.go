package dispatch

import (
	"errors"
	"net/mail"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sluicehq/sluice/wire"
)

// checkDeterministic validates addr twice and fails unless both results are
// identical; it returns the first.
func checkDeterministic(t *testing.T, validate func(string) error, addr string) error {
	t.Helper()
	err1, err2 := validate(addr), validate(addr)
	if (err1 == nil) != (err2 == nil) {
		t.Fatalf("non-deterministic result: %v then %v", err1, err2)
	}
	if err1 != nil {
		var e1, e2 *InvalidAddressError
		if !errors.As(err1, &e1) || !errors.As(err2, &e2) || *e1 != *e2 {
			t.Fatalf("non-deterministic error: %v then %v", err1, err2)
		}
	}
	return err1
}

func FuzzValidateEmail(f *testing.F) {
	for _, s := range []string{
		"user@example.com", "first.last+tag@mail.example.co.uk", "o'reilly@example.ie",
		"!#$%&'*+-/=?^_`{|}~@example.com", "user@bücher.de", "user@xn--bcher-kva.de", "用户@例子.广告",
		"user@例子\u3002广告", `"john smith"@example.com`, `"a\"b\\c"@example.com`, `"a@b"@example.com`,
		"", " user@example.com", "Bob <bob@example.com>", "user@example.com\r\nBcc: x@y.z",
		"us..er@example.com", "user@localhost", "user@[192.0.2.1]", "user@192.0.2.1", "user@-x.com",
		"user@xn--a.com", "user@\u202eexample.com", "us\xffer@example.com", `"unterminated@example.com`,
		`""@example.com`, "a@b@c.com", "user@-bücher.de", "user@\uff0dbücher.de",
		strings.Repeat("l", 64) + "@" + strings.Repeat("d", 63) + ".com",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		err := checkDeterministic(t, ValidateEmail, addr)
		if err != nil {
			checkInvalidError(t, err, ChannelEmail)
			return
		}
		if len(addr) > maxEmailLen {
			t.Fatalf("accepted %d octets", len(addr))
		}
		if !utf8.ValidString(addr) {
			t.Fatal("accepted invalid UTF-8")
		}
		at := strings.LastIndexByte(addr, '@')
		if at < 1 || at > maxLocalLen {
			t.Fatalf("accepted local part of %d octets", at)
		}
		local, domain := addr[:at], addr[at+1:]
		quoted := local[0] == '"'
		for i, r := range addr {
			if r < 0x20 || r == 0x7f || (0x80 <= r && r < 0xa0) {
				t.Fatalf("accepted control character %U", r)
			}
			if r == ' ' && (!quoted || i > at) {
				t.Fatal("accepted a space outside quotes")
			}
		}
		if !strings.Contains(domain, ".") && !strings.ContainsRune(domain, '\u3002') &&
			!strings.ContainsRune(domain, '\uff0e') && !strings.ContainsRune(domain, '\uff61') {
			t.Fatal("accepted a domain without a dot")
		}
		if strings.ContainsAny(domain, "[]") {
			t.Fatal("accepted an address literal")
		}
		// net/mail is an independent, more permissive RFC 5322 parser:
		// anything accepted here must parse there as the same bare address.
		parsed, perr := mail.ParseAddress(addr)
		if perr != nil {
			t.Fatalf("accepted, but net/mail rejects it: %v", perr)
		}
		if parsed.Name != "" {
			t.Fatal("accepted an address with a display name")
		}
		if !quoted && parsed.Address != addr {
			t.Fatalf("net/mail reads it as %q", parsed.Address)
		}
	})
}

func FuzzValidatePhone(f *testing.F) {
	for _, s := range []string{
		"+14155552671", "+442071838750", "+8613800138000", "+6834002", "+29021234",
		"", "+", "14155552671", "+1 415 555 2671", "+1(415)5552671", "+04155552671",
		"+1234567890123456", "+1415555267", "+99912345678", "+١٤١٥٥٥٥٢٦٧١", "+1415555\x002671",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		err := checkDeterministic(t, ValidatePhone, addr)
		if err != nil {
			checkInvalidError(t, err, ChannelSMS)
			if r := ReasonOf(err); r != wire.ReasonEmpty && r != wire.ReasonNotE164 && r != wire.ReasonInvalidNumber {
				t.Fatalf("reason %q is not an SMS reason", r)
			}
			return
		}
		digits, ok := strings.CutPrefix(addr, "+")
		if !ok || len(digits) < minE164Digits || len(digits) > maxE164Digits || digits[0] == '0' {
			t.Fatal("accepted a string that is not E.164")
		}
		for i := 0; i < len(digits); i++ {
			if digits[i] < '0' || digits[i] > '9' {
				t.Fatal("accepted a non-digit")
			}
		}
	})
}

func FuzzValidatePushToken(f *testing.F) {
	for _, s := range []string{
		strings.Repeat("ab", 32), strings.Repeat("A1", 80), "cK1fgzS1RX2N3JbZqsvM4q", "dXh0Zm9vYm-",
		"dGhpc2lzYW5maWRleGFtcGw:APA91b" + strings.Repeat("Ab3_-x", 22), "APA91b" + strings.Repeat("z", 140),
		"", " ", ":", "a:b", strings.Repeat("ab", 32) + "\n", strings.Repeat("ab+/", 30) + "==",
		strings.Repeat("a", 99), "aK1fgzS1RX2N3JbZqsvM4q", "<6e18f198 9e5350ca>",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		err := checkDeterministic(t, ValidatePushToken, addr)
		if err != nil {
			checkInvalidError(t, err, ChannelPush)
			if r := ReasonOf(err); r != wire.ReasonEmpty && r != wire.ReasonTooLong && r != wire.ReasonBadToken {
				t.Fatalf("reason %q is not a push reason", r)
			}
			if (len(addr) > maxFCMLen) != (ReasonOf(err) == wire.ReasonTooLong) {
				t.Fatalf("reason %q for %d characters", ReasonOf(err), len(addr))
			}
			return
		}
		if len(addr) < legacyFIDLen || len(addr) > maxFCMLen {
			t.Fatalf("accepted %d characters", len(addr))
		}
		if strings.Count(addr, ":") > 1 || addr[0] == ':' || addr[len(addr)-1] == ':' {
			t.Fatal("accepted a misplaced colon")
		}
		for i := 0; i < len(addr); i++ {
			if c := addr[i]; !inSet(fcmLo, fcmHi, c) {
				t.Fatalf("accepted byte %q", c)
			}
		}
	})
}
