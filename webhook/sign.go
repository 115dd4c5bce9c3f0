package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// SecretPrefix starts every secret, as the Standard Webhooks specification
// writes them: whsec_<base64 of the key>.
const SecretPrefix = "whsec_"

// secretBytes is the size of a generated key (the specification asks for
// 24 to 64 bytes).
const secretBytes = 32

// NewSecret returns a new random secret, whsec_<base64 of 32 bytes>.
func NewSecret() string {
	b := make([]byte, secretBytes)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return SecretPrefix + base64.StdEncoding.EncodeToString(b)
}

// secretKey returns the key bytes of a whsec_ secret.
func secretKey(secret string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil || len(k) == 0 {
		return nil, fmt.Errorf("%w: secret is not whsec_<base64>", ErrInvalid)
	}
	return k, nil
}

// Standard Webhooks headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// Sign returns the webhook-signature header of a message: v1,<base64
// HMAC-SHA256 of "id.timestamp.body" under secret's key>.
func Sign(secret, id string, ts time.Time, body []byte) (string, error) {
	k, err := secretKey(secret)
	if err != nil {
		return "", err
	}
	return "v1," + signature(k, id, strconv.FormatInt(ts.Unix(), 10), body), nil
}

func signature(key []byte, id, ts string, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Verify checks the Standard Webhooks headers of a received request's
// body against secret: one of the space-separated v1 signatures must match
// and the timestamp must be within tolerance of now (0: not checked). It is
// what a receiver does; tests and the README use it.
func Verify(secret string, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	k, err := secretKey(secret)
	if err != nil {
		return err
	}
	id, ts := h.Get(HeaderID), h.Get(HeaderTimestamp)
	sec, err := strconv.ParseInt(ts, 10, 64)
	if id == "" || err != nil {
		return fmt.Errorf("webhook: missing or malformed %s or %s", HeaderID, HeaderTimestamp)
	}
	if d := now.Sub(time.Unix(sec, 0)); tolerance > 0 && (d > tolerance || d < -tolerance) {
		return fmt.Errorf("webhook: timestamp %s is %v away from now", ts, d)
	}
	want := signature(k, id, ts, body)
	for _, s := range strings.Fields(h.Get(HeaderSignature)) {
		v, sig, ok := strings.Cut(s, ",")
		if ok && v == "v1" && hmac.Equal([]byte(sig), []byte(want)) {
			return nil
		}
	}
	return fmt.Errorf("webhook: no valid v1 signature")
}
