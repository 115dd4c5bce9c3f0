package api

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// SessionCookie is the name of the console's session cookie.
const SessionCookie = "sluice_session"

// CSRFHeader carries the session's CSRF token on every change made with the
// session cookie (POST, PUT, PATCH, DELETE); CSRFField is the form field of
// the console's own forms.
const (
	CSRFHeader = "X-CSRF-Token"
	CSRFField  = "csrf"
)

// DefaultSessionTTL is SessionConfig.TTL's default: a working day.
const DefaultSessionTTL = 8 * time.Hour

// MinSessionKey is the shortest session key accepted, in bytes.
const MinSessionKey = 32

// Session errors, as Auth.Identify returns them.
var (
	// ErrNoSession: the request carries no session cookie.
	ErrNoSession = errors.New("api: not signed in")
	// ErrSessionExpired: the session was valid but is past its expiry.
	ErrSessionExpired = errors.New("api: the session expired; sign in again")
	// ErrSessionInvalid: the cookie is malformed, signed with another key,
	// or its API key was revoked or lost its scope.
	ErrSessionInvalid = errors.New("api: the session is not valid; sign in again")
)

// SessionConfig configures console sessions.
type SessionConfig struct {
	// Key signs the session cookies (HMAC-SHA256), at least MinSessionKey
	// bytes. Every API node of a deployment must have the same key, so that a
	// session opened on one is valid on all (behind a load balancer).
	// Required.
	Key []byte
	// TTL is how long a session lasts after sign-in. Default
	// DefaultSessionTTL.
	TTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Sessions issues and checks signed, expiring session cookies. Nothing is
// stored on the server: the cookie holds the API key's id, tenant, a random
// session id and the expiry, signed with the deployment's key. Every use
// looks the key up again (Auth), so revoking the API key ends its sessions.
type Sessions struct {
	key []byte
	ttl time.Duration
	now func() time.Time
}

// NewSessions checks cfg and returns its Sessions.
func NewSessions(cfg SessionConfig) (*Sessions, error) {
	if len(cfg.Key) < MinSessionKey {
		return nil, fmt.Errorf("api: SessionConfig.Key must be at least %d bytes, not %d", MinSessionKey, len(cfg.Key))
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultSessionTTL
	}
	if cfg.TTL < 0 {
		return nil, fmt.Errorf("api: SessionConfig.TTL must be positive, not %v", cfg.TTL)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sessions{key: cfg.Key, ttl: cfg.TTL, now: cfg.Now}, nil
}

// session is the signed content of a session cookie.
type session struct {
	Version int    `json:"v"`
	KeyID   string `json:"kid"`
	Tenant  string `json:"t,omitempty"`
	ID      string `json:"sid"`
	Expires int64  `json:"exp"`
}

// issue returns the cookie of a new session for p.
func (s *Sessions) issue(p Principal, secure bool) (*http.Cookie, error) {
	sid := make([]byte, 16)
	if _, err := rand.Read(sid); err != nil {
		return nil, err
	}
	exp := s.now().Add(s.ttl)
	payload, err := json.Marshal(session{Version: 1, KeyID: p.KeyID, Tenant: p.Tenant,
		ID: base64.RawURLEncoding.EncodeToString(sid), Expires: exp.Unix()})
	if err != nil {
		return nil, err
	}
	body := base64.RawURLEncoding.EncodeToString(payload)
	return s.cookie(body+"."+s.sign("session", body), exp, secure), nil
}

// cookie is the session cookie holding value: HttpOnly, SameSite=Strict,
// for the whole site (the console calls the /v1/admin/ routes with it).
func (s *Sessions) cookie(value string, exp time.Time, secure bool) *http.Cookie {
	c := &http.Cookie{Name: SessionCookie, Value: value, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: secure}
	if value == "" {
		c.MaxAge = -1
	} else {
		c.Expires = exp
		c.MaxAge = int(time.Until(exp).Seconds())
	}
	return c
}

// sign is the HMAC of what under the purpose, so that a session's
// signature never serves as its CSRF token or the reverse.
func (s *Sessions) sign(purpose, what string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(purpose + "\x00" + what))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// parse returns the session of r's cookie.
func (s *Sessions) parse(r *http.Request) (session, error) {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return session{}, ErrNoSession
	}
	body, sig, ok := strings.Cut(c.Value, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(s.sign("session", body))) {
		return session{}, ErrSessionInvalid
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return session{}, ErrSessionInvalid
	}
	var ss session
	if err := json.Unmarshal(raw, &ss); err != nil || ss.Version != 1 || ss.KeyID == "" || ss.ID == "" {
		return session{}, ErrSessionInvalid
	}
	if s.now().Unix() >= ss.Expires {
		return session{}, ErrSessionExpired
	}
	return ss, nil
}

// csrf is the CSRF token of a session: derived from its id, so it needs no
// storage and differs for every session.
func (s *Sessions) csrf(ss session) string { return s.sign("csrf", ss.ID) }

// checkCSRF reports whether r, a change made with session ss, carries the
// session's token (header or form field).
func (s *Sessions) checkCSRF(r *http.Request, ss session) bool {
	got := r.Header.Get(CSRFHeader)
	if got == "" && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		got = r.PostFormValue(CSRFField)
	}
	return got != "" && hmac.Equal([]byte(got), []byte(s.csrf(ss)))
}

// safeMethod reports whether m changes nothing (no CSRF token needed).
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// secureRequest reports whether r came over HTTPS, directly or through a
// proxy that says so: the cookie is then marked Secure.
func secureRequest(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}
