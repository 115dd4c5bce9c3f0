package email

import (
	"strings"
	"testing"
)

func TestMessageIDRoundTrip(t *testing.T) {
	for _, id := range []string{"", "01J9Z8X7", "a.b", "with space", "50%", "<x@y>", "ünïcode", "a\r\nBcc: x@y", strings.Repeat("z", 128)} {
		mid := MessageID(id, "sluice")
		if strings.ContainsAny(mid[1:len(mid)-1], "<> \r\n\"()[]\\,;:") && !strings.HasSuffix(mid, "@sluice>") {
			t.Errorf("MessageID(%q) = %q is not a dot-atom", id, mid)
		}
		left := mid[1:strings.LastIndexByte(mid, '@')]
		for i := 0; i < len(left); i++ {
			if !isAtext(left[i]) && left[i] != '%' {
				t.Errorf("MessageID(%q) = %q has %q outside atext", id, mid, left[i])
			}
		}
		got, ok := IDFromMessageID(mid)
		if !ok || got != id {
			t.Errorf("IDFromMessageID(MessageID(%q)) = %q, %v", id, got, ok)
		}
	}
	for _, bad := range []string{"", "x", "<>", "<abc>", "<%zz@x>", "<%4@x>"} {
		if _, ok := IDFromMessageID(bad); ok {
			t.Errorf("IDFromMessageID(%q) accepted", bad)
		}
	}
}

func FuzzMessageID(f *testing.F) {
	f.Add("01J9Z8X7")
	f.Add("a%b.c")
	f.Fuzz(func(t *testing.T, id string) {
		got, ok := IDFromMessageID(MessageID(id, "sluice"))
		if !ok || got != id {
			t.Fatalf("round trip of %q gave %q, %v", id, got, ok)
		}
	})
}
