package unsubscribe_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/suppression"
	"github.com/sluicehq/sluice/unsubscribe"
)

func signer(t *testing.T, key string) *unsubscribe.Signer {
	t.Helper()
	h, err := suppression.NewHasher([]byte("mask-key-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := unsubscribe.New([]byte(key), h, "https://mail.example.com/")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTokenRoundTrip: a link names its tenant, conversation and the hash
// the suppression list stores for the address (in any spelling), never
// the address; a changed byte, another key or junk is refused.
func TestTokenRoundTrip(t *testing.T) {
	t.Parallel()
	s := signer(t, "unsubscribe-key-0123")
	h, _ := suppression.NewHasher([]byte("mask-key-0123456789"))
	hd := s.Headers("acme", "news", "Ann@Example.com")
	link := hd[unsubscribe.HeaderListUnsubscribe]
	if !strings.HasPrefix(link, "<https://mail.example.com/u/") || !strings.HasSuffix(link, ">") || hd[unsubscribe.HeaderListUnsubscribePost] != unsubscribe.OneClick {
		t.Fatalf("headers %v", hd)
	}
	if strings.Contains(strings.ToLower(link), "ann") {
		t.Errorf("link %s carries the address", link)
	}
	tok := strings.TrimSuffix(strings.TrimPrefix(link, "<https://mail.example.com/u/"), ">")
	c, err := s.Parse(tok)
	want, _ := h.Sum("ann@example.com")
	if err != nil || c.Tenant != "acme" || c.Conversation != "news" || c.Hash != want {
		t.Fatalf("Parse = %+v, %v", c, err)
	}
	flipped := []byte(tok)
	flipped[len(flipped)/2] ^= 1
	for name, bad := range map[string]string{"flipped": string(flipped), "empty": "", "junk": "not-a-token", "truncated": tok[:20]} {
		if _, err := s.Parse(bad); !errors.Is(err, unsubscribe.ErrInvalidToken) {
			t.Errorf("%s: %v, want ErrInvalidToken", name, err)
		}
	}
	if _, err := signer(t, "another-key-0123456").Parse(tok); !errors.Is(err, unsubscribe.ErrInvalidToken) {
		t.Errorf("another key: %v, want ErrInvalidToken", err)
	}
	if hd := s.Headers("acme", "news", "+15550001"); hd != nil {
		t.Errorf("headers for a phone number: %v", hd)
	}
}

// FuzzParse: Parse never panics, whatever the token.
func FuzzParse(f *testing.F) {
	h, _ := suppression.NewHasher([]byte("mask-key-0123456789"))
	s, _ := unsubscribe.New([]byte("unsubscribe-key-0123"), h, "")
	f.Add(s.Token("acme", "news", "a@example.com"))
	f.Add("AQRhY21l")
	f.Fuzz(func(t *testing.T, tok string) {
		_, _ = s.Parse(tok)
	})
}
