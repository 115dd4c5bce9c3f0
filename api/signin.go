package api

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
)

// ConsoleScopes are the scopes a console session carries, of those its key
// has: a session administers, it never sends or reads campaigns through the
// campaign API, whatever else its key may do.
var ConsoleScopes = []Scope{ScopeAdmin, ScopeOperator}

// ErrConsoleScope is SignIn's refusal of a valid key that has neither the
// admin nor the operator scope.
var ErrConsoleScope = errors.New("api: the console needs an operator key or a tenant key with the admin scope")

// ErrNoSessions is SignIn's error when this server opens no sessions.
var ErrNoSessions = errors.New("api: this server has no console sessions configured")

// consolePrincipal narrows p to the console's scopes; ok is false if none
// is left.
func consolePrincipal(p Principal) (Principal, bool) {
	p.Scopes = slices.DeleteFunc(slices.Clone(p.Scopes), func(s Scope) bool { return !slices.Contains(ConsoleScopes, s) })
	return p, len(p.Scopes) > 0
}

// SignIn verifies key and, if it is an operator key or a tenant key with
// the admin scope, sets the session cookie on w and returns the session's
// principal (the key's, narrowed to ConsoleScopes). Errors wrap
// ErrKeyRefused, ErrKeyStore, ErrConsoleScope or ErrNoSessions.
func (a *Auth) SignIn(w http.ResponseWriter, r *http.Request, key string) (Principal, error) {
	if a.sessions == nil {
		return Principal{}, ErrNoSessions
	}
	p, err := a.verify(r.Context(), key)
	if err != nil {
		a.failures.WithLabelValues(authInvalid).Inc()
		return Principal{}, err
	}
	p, ok := consolePrincipal(p)
	if !ok {
		a.failures.WithLabelValues(authScope).Inc()
		return Principal{}, ErrConsoleScope
	}
	c, err := a.sessions.issue(p, secureRequest(r))
	if err != nil {
		return Principal{}, fmt.Errorf("api: open a session: %w", err)
	}
	http.SetCookie(w, c)
	a.log.Info("console sign-in", "actor", p.Actor())
	return p, nil
}

// SignOut clears the session cookie. The cookie itself stays valid until
// its expiry if someone kept a copy; revoking the API key ends it at once.
func (a *Auth) SignOut(w http.ResponseWriter, r *http.Request) {
	if a.sessions != nil {
		http.SetCookie(w, a.sessions.cookie("", a.sessions.now(), secureRequest(r)))
	}
}

// Identify returns who a console page acts for: the session's principal,
// else (under `sluice dev`) the dev identity. The error is ErrNoSession,
// ErrSessionExpired, ErrSessionInvalid (the page asks to sign in) or wraps
// ErrKeyStore.
func (a *Auth) Identify(r *http.Request) (Principal, error) {
	p, _, err := a.session(r)
	if err == nil || errors.Is(err, ErrKeyStore) {
		return p, err
	}
	if a.devTenant != "" {
		return a.devPrincipal(), nil
	}
	return Principal{}, err
}

// CSRFToken returns the CSRF token of r's session ("" without one: the dev
// identity needs none).
func (a *Auth) CSRFToken(r *http.Request) string {
	if a.sessions == nil {
		return ""
	}
	ss, err := a.sessions.parse(r)
	if err != nil {
		return ""
	}
	return a.sessions.csrf(ss)
}

// CheckCSRF reports whether r, a change, may proceed: it carries its
// session's CSRF token, or it has no session and this is `sluice dev`.
func (a *Auth) CheckCSRF(r *http.Request) bool {
	if a.sessions != nil {
		if ss, err := a.sessions.parse(r); err == nil {
			return a.sessions.checkCSRF(r, ss)
		}
	}
	return a.devTenant != ""
}

// session returns the principal of r's session cookie, looking its API key
// up again: a revoked key, or one that lost its console scopes, ends the
// session. While the key store cannot be asked, an operator's session is
// accepted if its key was verified within OperatorKeyGrace (as its key
// would be), any other fails with ErrKeyStore.
func (a *Auth) session(r *http.Request) (Principal, session, error) {
	if a.sessions == nil {
		return Principal{}, session{}, ErrNoSession
	}
	ss, err := a.sessions.parse(r)
	if err != nil {
		return Principal{}, session{}, err
	}
	row, found, err := a.loadKey(r.Context(), ss.KeyID)
	if err != nil {
		if p, ok := a.recentOperatorID(ss.KeyID); ok && ss.Tenant == "" {
			p, _ = consolePrincipal(p)
			return p, ss, nil
		}
		return Principal{}, session{}, fmt.Errorf("%w: %w", ErrKeyStore, err)
	}
	if !found || !row.is(ss.Tenant == "", ss.Tenant) {
		return Principal{}, session{}, ErrSessionInvalid
	}
	full := row.principal(ss.Tenant, ss.KeyID)
	if full.Operator() && len(row.hash) == sha256.Size {
		a.rememberOperator(ss.KeyID, [sha256.Size]byte(row.hash), full)
	}
	p, ok := consolePrincipal(full)
	if !ok {
		return Principal{}, session{}, ErrSessionInvalid
	}
	return p, ss, nil
}
