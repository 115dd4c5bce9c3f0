package suppression

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
)

// Kinds of normalised addresses, the values of suppressions.kind.
const (
	KindEmail = "email"
	KindPhone = "phone"
	KindToken = "token"
)

// MinKeyBytes is the shortest mask key a Hasher accepts (the error log's
// minimum).
const MinKeyBytes = 16

// Normalize returns the form of address that is hashed, and its kind:
// surrounding white space removed; an email address (it has an @)
// lower-cased; an E.164 number (it starts with +) and a push token kept as
// they are.
func Normalize(address string) (normalised, kind string) {
	a := strings.TrimSpace(address)
	switch {
	case strings.Contains(a, "@"):
		return strings.ToLower(a), KindEmail
	case strings.HasPrefix(a, "+"):
		return a, KindPhone
	}
	return a, KindToken
}

// Hasher computes the keyed hash of normalised addresses. Safe for
// concurrent use.
type Hasher struct {
	pool sync.Pool // of hash.Hash (HMAC-SHA256 under the key)
}

// NewHasher returns a Hasher for key, at least MinKeyBytes long.
func NewHasher(key []byte) (*Hasher, error) {
	if len(key) < MinKeyBytes {
		return nil, fmt.Errorf("suppression: the mask key must be at least %d bytes (got %d)", MinKeyBytes, len(key))
	}
	k := append([]byte(nil), key...)
	h := &Hasher{}
	h.pool.New = func() any { return hmac.New(sha256.New, k) }
	return h, nil
}

// Sum returns the HMAC-SHA256 of address's normal form, and that form's
// kind.
func (h *Hasher) Sum(address string) (sum [32]byte, kind string) {
	n, kind := Normalize(address)
	m := h.pool.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(n))
	m.Sum(sum[:0])
	h.pool.Put(m)
	return sum, kind
}

// ErrEmptyAddress is returned for an address that is empty once trimmed.
var ErrEmptyAddress = errors.New("suppression: empty address")

// short is the in-memory key of a hash: its first 8 bytes.
func short(sum []byte) uint64 { return binary.BigEndian.Uint64(sum[:8]) }
