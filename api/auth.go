package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Principal is who a request acts for: the tenant and scopes of its API key.
type Principal struct {
	// Tenant is the key's tenant: "" for an operator key, the DevTenant for
	// the keyless dev identity.
	Tenant string
	// KeyID is the public id of the key ("dev" for the DevTenant); safe to log.
	KeyID string
	// Name is the key's name (who holds it), as created.
	Name   string
	Scopes []Scope
}

// Has reports whether p has scope s.
func (p Principal) Has(s Scope) bool { return slices.Contains(p.Scopes, s) }

// Operator reports whether p may use the fleet-wide controls and act on
// every tenant's conversations: an operator key, or the keyless dev identity.
func (p Principal) Operator() bool { return p.Has(ScopeOperator) }

// Actor is how the control plane's audit names p: "key:<id>@<tenant>" for a
// tenant's key (and "key:dev@<tenant>" for the dev identity),
// "operator:<id> (<name>)" for an operator key.
func (p Principal) Actor() string {
	if p.Tenant != "" {
		return "key:" + p.KeyID + "@" + p.Tenant
	}
	if p.Name == "" {
		return "operator:" + p.KeyID
	}
	return "operator:" + p.KeyID + " (" + p.Name + ")"
}

type principalKey struct{}

// PrincipalFrom returns the principal that Auth.RequireScope put in ctx.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// WithPrincipal returns ctx carrying p, for handlers called without
// RequireScope (tests, in-process callers).
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// OperatorKeyGrace is how long after its last verification an operator
// key is still accepted while the key store (PostgreSQL) cannot be reached,
// so that `sluice ctl status` works during a database outage. No key can
// be revoked meanwhile from a process that cannot reach the database; a
// revocation made elsewhere takes effect here when the database answers
// again, or after the grace.
const OperatorKeyGrace = time.Hour

// maxVerified bounds the operator keys remembered for OperatorKeyGrace.
const maxVerified = 256

// verifiedKey is an operator key that the key store accepted.
type verifiedKey struct {
	sum [sha256.Size]byte
	p   Principal
	at  time.Time
}

// Auth authenticates requests by API key.
type Auth struct {
	pool      *pgxpool.Pool
	devTenant string
	log       *slog.Logger
	failures  *prometheus.CounterVec
	timeout   time.Duration
	now       func() time.Time

	sessions *Sessions // nil: no console sessions

	mu       sync.Mutex
	verified map[string]verifiedKey // operator keys by id
}

// AuthConfig configures an Auth.
type AuthConfig struct {
	// Pool holds the api_keys table. Required.
	Pool *pgxpool.Pool
	// DevTenant, when set, lets requests without an Authorization header act
	// as this tenant with every scope, the operator's included. For `sluice
	// dev` only.
	DevTenant string
	// Logger receives authentication failures at debug level, with the key
	// id, never the key. Default: discard.
	Logger *slog.Logger
	// Registerer receives sluice_api_auth_failures_total. Default: none.
	Registerer prometheus.Registerer
	// Sessions, when set, opens console sessions (Auth.SignIn): a request
	// without an Authorization header is then authenticated by its session
	// cookie, and a change made so needs the session's CSRF token. Default:
	// none (keys only).
	Sessions *Sessions
}

// NewAuth returns an Auth.
func NewAuth(cfg AuthConfig) (*Auth, error) {
	if cfg.Pool == nil {
		return nil, errors.New("api: AuthConfig.Pool is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Auth{
		pool: cfg.Pool, devTenant: cfg.DevTenant, log: cfg.Logger, timeout: 5 * time.Second, sessions: cfg.Sessions,
		now: time.Now, verified: map[string]verifiedKey{},
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sluice", Subsystem: "api", Name: "auth_failures_total",
			Help: "Requests refused by authentication (missing, malformed, unknown, revoked key) or authorization (scope).",
		}, []string{"reason"}),
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(a.failures); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// Authentication failure reasons, the values of the reason label.
const (
	authMissing   = "missing"
	authMalformed = "malformed"
	authInvalid   = "invalid"
	authScope     = "scope"
	authCSRF      = "csrf"
)

// RequireScope returns h guarded by authentication and scope: without a
// valid key the answer is 401, without the scope 403, both as problem
// documents. h finds the Principal with PrincipalFrom.
func (a *Auth) RequireScope(scope Scope, h http.Handler) http.Handler {
	return a.RequireAnyScope([]Scope{scope}, h)
}

// RequireAnyScope is RequireScope for a route that any of scopes opens (a
// tenant's admin key or an operator key).
func (a *Auth) RequireAnyScope(scopes []Scope, h http.Handler) http.Handler {
	names := make([]string, len(scopes))
	for i, s := range scopes {
		names[i] = string(s)
	}
	list := strings.Join(names, " or ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := a.authenticate(w, r)
		if !ok {
			return
		}
		if !slices.ContainsFunc(scopes, p.Has) {
			a.failures.WithLabelValues(authScope).Inc()
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice", error="insufficient_scope", scope="`+strings.Join(names, " ")+`"`)
			problem(w, http.StatusForbidden, ProblemForbidden, "Insufficient scope",
				"this API key lacks the "+list+" scope")
			return
		}
		h.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

// Key verification errors.
var (
	// ErrKeyRefused: the key is malformed, unknown, revoked, or not what its
	// shape says (a tenant key whose row has another tenant).
	ErrKeyRefused = errors.New("api: the API key is not valid")
	// ErrKeyStore: the key store (PostgreSQL) could not be asked.
	ErrKeyStore = errors.New("api: the key store is unavailable; retry shortly")
	// errKeyMalformed is ErrKeyRefused for a key without the shape of one.
	errKeyMalformed = fmt.Errorf("%w (malformed)", ErrKeyRefused)
)

// authenticate finds the principal of r, or writes the 401 (or 403, 503)
// answer: an Authorization header's key, else the console's session
// cookie (a change needing the session's CSRF token), else the dev identity.
func (a *Auth) authenticate(w http.ResponseWriter, r *http.Request) (Principal, bool) {
	header := r.Header.Get("Authorization")
	if header == "" {
		return a.authenticateSession(w, r)
	}
	scheme, key, found := strings.Cut(header, " ")
	key = strings.TrimSpace(key)
	if !found || !strings.EqualFold(scheme, "Bearer") || key == "" {
		a.unauthorized(w, authMalformed, `Bearer realm="sluice", error="invalid_request"`,
			"the Authorization header must be: Bearer <key>")
		return Principal{}, false
	}
	p, err := a.verify(r.Context(), key)
	switch {
	case errors.Is(err, ErrKeyStore):
		unavailable(w)
		return Principal{}, false
	case errors.Is(err, errKeyMalformed):
		a.unauthorized(w, authMalformed, `Bearer realm="sluice", error="invalid_token"`, "the API key is not valid")
		return Principal{}, false
	case err != nil:
		a.unauthorized(w, authInvalid, `Bearer realm="sluice", error="invalid_token"`, "the API key is not valid")
		return Principal{}, false
	}
	return p, true
}

// authenticateSession is authenticate for a request without an
// Authorization header.
func (a *Auth) authenticateSession(w http.ResponseWriter, r *http.Request) (Principal, bool) {
	p, ss, err := a.session(r)
	switch {
	case err == nil:
		if !safeMethod(r.Method) && !a.sessions.checkCSRF(r, ss) {
			a.failures.WithLabelValues(authCSRF).Inc()
			problem(w, http.StatusForbidden, ProblemForbidden, "CSRF token missing or wrong",
				"a change made with the console's session needs its CSRF token in the "+CSRFHeader+" header")
			return Principal{}, false
		}
		return p, true
	case errors.Is(err, ErrKeyStore):
		unavailable(w)
		return Principal{}, false
	case a.devTenant != "":
		return a.devPrincipal(), true
	case errors.Is(err, ErrNoSession):
		a.unauthorized(w, authMissing, `Bearer realm="sluice"`,
			"send an API key as Authorization: Bearer <key> (sluice ctl apikey create)")
	default:
		a.unauthorized(w, authInvalid, `Bearer realm="sluice"`, err.Error())
	}
	return Principal{}, false
}

// devPrincipal is the keyless identity of `sluice dev`.
func (a *Auth) devPrincipal() Principal {
	return Principal{Tenant: a.devTenant, KeyID: "dev", Name: "dev", Scopes: append(slices.Clone(AllScopes), ScopeOperator)}
}

func unavailable(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "2")
	problem(w, http.StatusServiceUnavailable, ProblemUnavailable, "", "the key store is unavailable; retry shortly")
}

// keyRow is a key's api_keys row.
type keyRow struct {
	tenant  *string // NULL: an operator key
	name    string
	hash    []byte
	scopes  []string
	revoked *time.Time
}

// loadKey reads the row of key id; found is false for an unknown id, err
// is the store's failure only.
func (a *Auth) loadKey(ctx context.Context, id string) (row keyRow, found bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	err = a.pool.QueryRow(ctx, `SELECT tenant, name, hash, scopes, revoked_at FROM api_keys WHERE id = $1`, id).
		Scan(&row.tenant, &row.name, &row.hash, &row.scopes, &row.revoked)
	if errors.Is(err, pgx.ErrNoRows) {
		return keyRow{}, false, nil
	}
	return row, err == nil, err
}

// is reports whether the row is a live key of the kind the key's shape
// says: an operator key's row has no tenant and only the operator scope, a
// tenant key's row the key's tenant.
func (row keyRow) is(operator bool, tenant string) bool {
	if row.revoked != nil {
		return false
	}
	if operator {
		return row.tenant == nil && slices.Equal(row.scopes, []string{string(ScopeOperator)})
	}
	return row.tenant != nil && *row.tenant == tenant
}

func (row keyRow) principal(tenant, id string) Principal {
	p := Principal{Tenant: tenant, KeyID: id, Name: row.name, Scopes: make([]Scope, len(row.scopes))}
	for i, s := range row.scopes {
		p.Scopes[i] = Scope(s)
	}
	return p
}

// verify checks a key against the key store and returns its principal;
// the error wraps ErrKeyRefused or ErrKeyStore. An operator key verified
// within OperatorKeyGrace is accepted while the store cannot be asked.
func (a *Auth) verify(ctx context.Context, key string) (Principal, error) {
	pk, ok := parseKey(key)
	if !ok {
		return Principal{}, errKeyMalformed
	}
	row, found, err := a.loadKey(ctx, pk.id)
	if err != nil {
		if p, ok := a.recentOperator(pk.id, key); ok {
			a.log.Warn("key store unreachable: accepted an operator key verified within the grace", "key_id", pk.id, "grace", OperatorKeyGrace, "err", err)
			return p, nil
		}
		a.log.Warn("api key lookup failed", "key_id", pk.id, "err", err)
		return Principal{}, fmt.Errorf("%w: %w", ErrKeyStore, err)
	}
	sum := sha256.Sum256([]byte(key))
	hash := row.hash
	if len(hash) != len(sum) {
		hash = make([]byte, len(sum)) // unknown id: compare anyway, so timing says nothing
	}
	match := subtle.ConstantTimeCompare(sum[:], hash) == 1
	if !match || !row.is(pk.operator, pk.tenant) {
		a.log.Debug("api key refused", "key_id", pk.id, "known", found, "revoked", row.revoked != nil)
		return Principal{}, ErrKeyRefused
	}
	p := row.principal(pk.tenant, pk.id)
	if p.Operator() {
		a.rememberOperator(pk.id, sum, p)
	}
	return p, nil
}

// rememberOperator keeps an operator key the key store accepted, for
// recentOperator.
func (a *Auth) rememberOperator(id string, sum [sha256.Size]byte, p Principal) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.verified == nil {
		a.verified = map[string]verifiedKey{}
	}
	if _, ok := a.verified[id]; !ok && len(a.verified) >= maxVerified {
		oldest := ""
		for k, v := range a.verified {
			if oldest == "" || v.at.Before(a.verified[oldest].at) {
				oldest = k
			}
		}
		delete(a.verified, oldest)
	}
	a.verified[id] = verifiedKey{sum: sum, p: p, at: a.now()}
}

// remembered returns the operator key id if the key store accepted it
// within OperatorKeyGrace.
func (a *Auth) remembered(id string) (verifiedKey, bool) {
	a.mu.Lock()
	v, ok := a.verified[id]
	a.mu.Unlock()
	return v, ok && a.now().Sub(v.at) <= OperatorKeyGrace
}

// recentOperator returns the principal of an operator key that the key
// store accepted within OperatorKeyGrace, if key is that key.
func (a *Auth) recentOperator(id, key string) (Principal, bool) {
	v, ok := a.remembered(id)
	sum := sha256.Sum256([]byte(key))
	if !ok || subtle.ConstantTimeCompare(sum[:], v.sum[:]) != 1 {
		return Principal{}, false
	}
	return v.p, true
}

// recentOperatorID is recentOperator for a session, which holds the key's
// id, not the key.
func (a *Auth) recentOperatorID(id string) (Principal, bool) {
	v, ok := a.remembered(id)
	return v.p, ok
}

func (a *Auth) unauthorized(w http.ResponseWriter, reason, challenge, detail string) {
	a.failures.WithLabelValues(reason).Inc()
	w.Header().Set("WWW-Authenticate", challenge)
	problem(w, http.StatusUnauthorized, ProblemUnauthenticated, "Unauthenticated", detail)
}
