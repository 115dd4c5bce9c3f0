package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestSessions: a console session is a signed cookie (HttpOnly,
// SameSite=Strict) that carries the admin and operator scopes only; it is
// refused once expired, when tampered with, signed with another key, or when
// its API key is revoked; keys without the admin or operator scope open
// none; a change made with it needs its CSRF token.
func TestSessions(t *testing.T) {
	t.Parallel()
	now := time.Now()
	clock := func() time.Time { return now }
	sessions, err := NewSessions(SessionConfig{Key: []byte(strings.Repeat("k", 32)), TTL: time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	f := setup(t, func(d *CampaignDeps) { d.Sessions = sessions })
	auth := f.c.Auth()
	admin := f.key("acme", ScopeAdmin, ScopeSend)
	signIn := func(key string) (*http.Cookie, error) {
		t.Helper()
		w := httptest.NewRecorder()
		if _, err := auth.SignIn(w, httptest.NewRequest("POST", "/console/signin", nil), key); err != nil {
			return nil, err
		}
		cs := w.Result().Cookies()
		if len(cs) != 1 {
			t.Fatalf("cookies %v", cs)
		}
		return cs[0], nil
	}
	c, err := signIn(admin)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != SessionCookie || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.MaxAge <= 0 {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, path /, an expiry", c)
	}
	if strings.Contains(c.Value, admin) || strings.Contains(c.Value, strings.Split(admin, "_")[3]) {
		t.Error("the cookie holds the key's secret")
	}
	p, err := auth.Identify(consoleGet(c))
	if err != nil || p.Tenant != "acme" || !p.Has(ScopeAdmin) || p.Has(ScopeSend) || p.Actor() != "key:"+p.KeyID+"@acme" {
		t.Fatalf("Identify = %+v, %v; want acme's admin without send", p, err)
	}
	if _, err := auth.Identify(consoleGet(nil)); !errors.Is(err, ErrNoSession) {
		t.Errorf("no cookie: %v", err)
	}
	tampered := *c
	tampered.Value = strings.Replace(c.Value, ".", "x.", 1)
	if _, err := auth.Identify(consoleGet(&tampered)); !errors.Is(err, ErrSessionInvalid) {
		t.Errorf("tampered cookie: %v", err)
	}
	other, _ := NewSessions(SessionConfig{Key: []byte(strings.Repeat("o", 32)), Now: clock})
	forged, _ := other.issue(Principal{Tenant: "acme", KeyID: p.KeyID}, false)
	if _, err := auth.Identify(consoleGet(forged)); !errors.Is(err, ErrSessionInvalid) {
		t.Errorf("cookie signed with another key: %v", err)
	}
	for _, key := range []string{f.key("acme", ScopeSend, ScopeRead), "sk_acme_0123456789abcdef_" + strings.Repeat("0", 48)} {
		if _, err := signIn(key); err == nil {
			t.Errorf("sign-in with %s: no error", key[:8])
		}
	}
	if _, err := signIn(f.key("acme", ScopeRead)); !errors.Is(err, ErrConsoleScope) {
		t.Errorf("read key: %v, want ErrConsoleScope", err)
	}

	// A change needs the session's CSRF token, on the admin routes too.
	token := auth.CSRFToken(consoleGet(c))
	checkCSRF(t, f, c, token)
	if r := f.do(http.MethodGet, "/v1/admin/audit", "", nil, withCookie(c)); r.status != http.StatusOK {
		t.Errorf("GET with the session: %d %s", r.status, r.body)
	}

	// Expiry asks again; so does revoking the key.
	now = now.Add(time.Hour)
	if _, err := auth.Identify(consoleGet(c)); !errors.Is(err, ErrSessionExpired) {
		t.Errorf("after the TTL: %v, want ErrSessionExpired", err)
	}
	if r := f.do(http.MethodGet, "/v1/admin/audit", "", nil, withCookie(c)); r.status != http.StatusUnauthorized {
		t.Errorf("expired session on the API: %d", r.status)
	}
	now = now.Add(-time.Hour)
	revokeKey(t, f, "acme", p.KeyID)
	if _, err := auth.Identify(consoleGet(c)); !errors.Is(err, ErrSessionInvalid) {
		t.Errorf("revoked key's session: %v, want ErrSessionInvalid", err)
	}
	if _, err := NewSessions(SessionConfig{Key: []byte("short")}); err == nil {
		t.Error("a short key is accepted")
	}
}

// consoleGet is a request for the console carrying cookie c, if any.
func consoleGet(c *http.Cookie) *http.Request {
	r := httptest.NewRequest("GET", "/console/", nil)
	if c != nil {
		r.AddCookie(c)
	}
	return r
}

// checkCSRF: a change made with session c is refused without its CSRF
// token or with a forged one, and passes authentication with token.
func checkCSRF(t *testing.T, f *fixture, c *http.Cookie, token string) {
	t.Helper()
	for _, tc := range []struct {
		token string
		want  int
	}{{"", http.StatusForbidden}, {"forged", http.StatusForbidden}, {token, http.StatusOK}} {
		r := f.do(http.MethodPost, "/v1/admin/conversations/acme/none/pause", "", nil, withCookie(c), header(CSRFHeader, tc.token))
		if tc.want == http.StatusOK && r.status == http.StatusNotFound { // passed authentication: the conversation does not exist
			continue
		}
		if r.status != tc.want {
			t.Errorf("pause with token %q: %d %s, want %d", tc.token, r.status, r.body, tc.want)
		}
	}
}

// revokeKey revokes tenant's API key keyID.
func revokeKey(t *testing.T, f *fixture, tenant, keyID string) {
	t.Helper()
	keys, err := ListAPIKeys(t.Context(), f.db.Pool, tenant)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.ID == keyID {
			if _, err := RevokeAPIKey(t.Context(), f.db.Pool, k.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func withCookie(c *http.Cookie) reqOpt { return func(r *http.Request) { r.AddCookie(c) } }
