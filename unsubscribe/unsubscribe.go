// Package unsubscribe makes and checks the signed per-recipient links of
// the List-Unsubscribe header (RFC 2369) with one-click unsubscription
// (RFC 8058) that bulk email carries.
//
// A link is {PublicURL}/u/{token}. The token carries the tenant, the
// conversation and the keyed hash of the recipient's normalised address
// (suppression.Hasher, the same hash the suppression list stores), never
// the address itself, and a 128-bit HMAC-SHA256 tag under the deployment's
// unsubscribe key. Anyone holding the link can unsubscribe that one
// recipient from that one tenant, which is what the link is for; nobody
// can make a link for another recipient without the key. Links do not
// expire; they stop working when the unsubscribe key or the mask key
// changes.
package unsubscribe

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/sluicehq/sluice/suppression"
)

// Headers of a one-click unsubscribe (RFC 8058).
const (
	HeaderListUnsubscribe     = "List-Unsubscribe"
	HeaderListUnsubscribePost = "List-Unsubscribe-Post"
	// OneClick is the only value RFC 8058 allows in List-Unsubscribe-Post.
	OneClick = "List-Unsubscribe=One-Click"
	// PathPrefix is where the API answers the links.
	PathPrefix = "/u/"
)

// MinKeyBytes is the shortest unsubscribe key accepted.
const MinKeyBytes = 16

const (
	version = 1
	tagLen  = 16
	hashLen = 32
)

// ErrInvalidToken is returned for a token that is malformed or whose tag
// does not verify.
var ErrInvalidToken = errors.New("unsubscribe: invalid or forged link")

// Claim is what a valid token says.
type Claim struct {
	Tenant, Conversation string
	// Hash is the keyed hash of the recipient's normalised address.
	Hash [32]byte
	// Kind is the address kind (suppression.KindEmail: links are made for
	// email only).
	Kind string
}

// Signer makes and checks links. Safe for concurrent use.
type Signer struct {
	key  []byte
	h    *suppression.Hasher
	base string
}

// New returns a Signer signing with key (at least MinKeyBytes), hashing
// addresses with h, and making links under publicURL (an absolute https or
// http URL; "" makes a Signer that checks tokens but whose Headers are
// empty, for an API node without a public URL).
func New(key []byte, h *suppression.Hasher, publicURL string) (*Signer, error) {
	if len(key) < MinKeyBytes {
		return nil, fmt.Errorf("unsubscribe: key: want at least %d bytes, got %d", MinKeyBytes, len(key))
	}
	if h == nil {
		return nil, errors.New("unsubscribe: New needs the address hasher")
	}
	if publicURL != "" {
		u, err := url.Parse(publicURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("unsubscribe: public URL %q: want an absolute http(s) URL without query", publicURL)
		}
	}
	return &Signer{key: append([]byte(nil), key...), h: h, base: strings.TrimRight(publicURL, "/")}, nil
}

// DeriveKey returns the unsubscribe key derived from the mask key, for a
// deployment that sets no key of its own.
func DeriveKey(maskKey []byte) []byte {
	m := hmac.New(sha256.New, maskKey)
	m.Write([]byte("sluice unsubscribe key v1"))
	return m.Sum(nil)
}

// Token returns the token of (tenant, conversation, address).
func (s *Signer) Token(tenant, conversation, address string) string {
	sum, _ := s.h.Sum(address)
	return s.token(tenant, conversation, sum)
}

func (s *Signer) token(tenant, conversation string, sum [32]byte) string {
	b := make([]byte, 0, 3+len(tenant)+len(conversation)+hashLen+tagLen)
	b = append(b, version, byte(len(tenant)))
	b = append(b, tenant...)
	b = append(b, byte(len(conversation)))
	b = append(b, conversation...)
	b = append(b, sum[:]...)
	b = append(b, s.tag(b)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *Signer) tag(payload []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("sluice unsubscribe v1\x00"))
	m.Write(payload)
	return m.Sum(nil)[:tagLen]
}

// URL returns the link of (tenant, conversation, address), or "" without
// a public URL.
func (s *Signer) URL(tenant, conversation, address string) string {
	if s.base == "" {
		return ""
	}
	return s.base + PathPrefix + s.Token(tenant, conversation, address)
}

// Headers returns the List-Unsubscribe and List-Unsubscribe-Post headers
// of a bulk email to address, or nil without a public URL or for an
// address that is not an email address, or a tenant or conversation name
// too long to carry.
func (s *Signer) Headers(tenant, conversation, address string) map[string]string {
	if s.base == "" || len(tenant) > 255 || len(conversation) > 255 {
		return nil
	}
	if _, kind := suppression.Normalize(address); kind != suppression.KindEmail {
		return nil
	}
	return map[string]string{
		HeaderListUnsubscribe:     "<" + s.URL(tenant, conversation, address) + ">",
		HeaderListUnsubscribePost: OneClick,
	}
}

// Parse checks token and returns its claim.
func (s *Signer) Parse(token string) (Claim, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < 3+hashLen+tagLen || b[0] != version {
		return Claim{}, ErrInvalidToken
	}
	payload, tag := b[:len(b)-tagLen], b[len(b)-tagLen:]
	if !hmac.Equal(tag, s.tag(payload)) {
		return Claim{}, ErrInvalidToken
	}
	rest := payload[1:]
	tenant, rest, ok := field(rest)
	if !ok {
		return Claim{}, ErrInvalidToken
	}
	conv, rest, ok := field(rest)
	if !ok || len(rest) != hashLen {
		return Claim{}, ErrInvalidToken
	}
	c := Claim{Tenant: tenant, Conversation: conv, Kind: suppression.KindEmail}
	copy(c.Hash[:], rest)
	return c, nil
}

// field reads one length-prefixed string.
func field(b []byte) (string, []byte, bool) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return "", nil, false
	}
	n := int(b[0])
	return string(b[1 : 1+n]), b[1+n:], true
}
