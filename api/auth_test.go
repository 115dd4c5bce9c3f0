package api

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestAuth: no key 401, a bad or revoked key 401, a key without the scope
// 403, another tenant's conversation 404; all as problem documents.
func TestAuth(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	sendA := f.key("tenant-a", ScopeSend)
	readA := f.key("tenant-a", ScopeRead)
	bothB := f.key("tenant-b", ScopeSend, ScopeRead)
	f.conversation(sendA, "secret-plans")
	revoked := f.key("tenant-a", ScopeSend, ScopeRead)
	ks, err := ListAPIKeys(ctx, f.db.Pool, "tenant-a")
	if err != nil || len(ks) != 3 {
		t.Fatalf("list = %v, %v", ks, err)
	}
	if _, err := RevokeAPIKey(ctx, f.db.Pool, ks[2].ID); err != nil {
		t.Fatal(err)
	}
	pk, _ := parseKey(sendA)
	forged := "sk_tenant-a_" + pk.id + "_" + strings.Repeat("0", 48)          // the right id, a wrong secret
	otherTenant := "sk_tenant-b_" + strings.TrimPrefix(sendA, "sk_tenant-a_") // the right secret, another tenant
	asOperator := "sko_" + strings.TrimPrefix(sendA, "sk_tenant-a_")          // a tenant key passed off as an operator's
	op := f.operatorKey("ops")
	opAsTenant := "sk_tenant-a_" + strings.TrimPrefix(op, "sko_") // an operator key passed off as a tenant's

	get := func(key string) response { return f.do(http.MethodGet, "/v1/conversations/secret-plans", key, nil) }
	send := func(key string) response {
		return f.activate(key, "secret-plans", "", strings.NewReader(`[{"to":"a@example.com"}]`), false)
	}
	cases := []struct {
		name   string
		r      response
		status int
		typ    string
	}{
		{"no key", get(""), 401, ProblemUnauthenticated},
		{"not bearer", f.do(http.MethodGet, "/v1/conversations/secret-plans", "", nil, header("Authorization", "Basic "+sendA)), 401, ProblemUnauthenticated},
		{"garbage key", get("sk_nope"), 401, ProblemUnauthenticated},
		{"wrong secret", get(forged), 401, ProblemUnauthenticated},
		{"secret under another tenant", get(otherTenant), 401, ProblemUnauthenticated},
		{"revoked key", get(revoked), 401, ProblemUnauthenticated},
		{"tenant key as operator key", f.do(http.MethodGet, "/v1/admin/intake", asOperator, nil), 401, ProblemUnauthenticated},
		{"operator key as tenant key", get(opAsTenant), 401, ProblemUnauthenticated},
		{"operator reads a tenant's conversation", get(op), 403, ProblemForbidden},
		{"send key reads", get(sendA), 403, ProblemForbidden},
		{"read key sends", send(readA), 403, ProblemForbidden},
		{"read key creates", f.postJSON("/v1/conversations", readA, map[string]any{}), 403, ProblemForbidden},
		{"other tenant reads", get(bothB), 404, ProblemNotFound},
		{"other tenant sends", send(bothB), 404, ProblemNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.r.problem(t, tc.status, tc.typ)
			if tc.status == 401 && !strings.HasPrefix(tc.r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("401 without a Bearer challenge: %q", tc.r.header.Get("WWW-Authenticate"))
			}
			if tc.status == 403 && !strings.Contains(tc.r.header.Get("WWW-Authenticate"), "insufficient_scope") {
				t.Fatalf("403 challenge = %q", tc.r.header.Get("WWW-Authenticate"))
			}
		})
	}
	if f.streamMsgs() != 0 {
		t.Fatal("a refused request published")
	}
	if r := get(readA); r.status != http.StatusOK {
		t.Fatalf("own tenant with read: %d %s", r.status, r.body)
	}
	// Tenant B may use the same conversation id: it is another conversation.
	f.conversation(bothB, "secret-plans")
	if r := send(bothB); r.status != http.StatusAccepted {
		t.Fatalf("tenant b's own conversation: %d %s", r.status, r.body)
	}
	if a, b := f.accepted("tenant-a", "secret-plans"), f.accepted("tenant-b", "secret-plans"); a != 0 || b != 1 {
		t.Fatalf("accepted a=%d b=%d", a, b)
	}
}

// TestRequireScopeAdmin is how the /v1/admin/ routes are guarded.
func TestRequireScopeAdmin(t *testing.T) {
	t.Parallel()
	f := setup(t)
	var seen Principal
	f.srv.Handle("POST /v1/admin/ping", f.c.RequireScope(ScopeAdmin, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = PrincipalFrom(r.Context())
		w.WriteHeader(http.StatusNoContent)
	})))
	admin := f.key("ops", ScopeAdmin)
	f.do(http.MethodPost, "/v1/admin/ping", f.key("ops", ScopeSend, ScopeRead), nil).problem(t, 403, ProblemForbidden)
	if r := f.do(http.MethodPost, "/v1/admin/ping", admin, nil); r.status != http.StatusNoContent {
		t.Fatalf("admin: %d %s", r.status, r.body)
	}
	if seen.Tenant != "ops" || !seen.Has(ScopeAdmin) || seen.Has(ScopeSend) || seen.KeyID == "" || strings.Contains(admin, seen.KeyID) == false {
		t.Fatalf("principal = %+v", seen)
	}
}

// TestDevTenant: with DevTenant, requests without a key act as that tenant
// with every scope; a key, when given, is still checked. Only in Env dev.
func TestDevTenant(t *testing.T) {
	t.Parallel()
	f := setup(t, func(d *CampaignDeps) { d.Env, d.DevTenant = "dev", "demo" })
	f.conversation("", "hello")
	if r := f.activate("", "hello", "", strings.NewReader(`[{"to":"a@example.com"}]`), false); r.status != http.StatusAccepted {
		t.Fatalf("keyless send: %d %s", r.status, r.body)
	}
	if a := f.accepted("demo", "hello"); a != 1 {
		t.Fatalf("accepted = %d", a)
	}
	f.do(http.MethodGet, "/v1/conversations/hello", "sk_bad", nil).problem(t, 401, ProblemUnauthenticated)
	f.do(http.MethodGet, "/v1/conversations/hello", f.key("other", ScopeRead), nil).problem(t, 404, ProblemNotFound)

	for _, env := range []string{"", "test", "production"} {
		_, err := NewCampaigns(context.Background(), CampaignDeps{Pool: f.db.Pool, JS: f.js, Env: env, DevTenant: "demo"})
		if err == nil || !strings.Contains(err.Error(), "DevTenant") {
			t.Fatalf("Env %q with DevTenant: err = %v", env, err)
		}
	}
}

func TestParseKey(t *testing.T) {
	t.Parallel()
	id, secret := strings.Repeat("a", 16), strings.Repeat("b", 48)
	cases := []struct {
		key, tenant string
		ok          bool
	}{
		{"sko_" + id + "_" + secret, "", true},
		{"sko_acme_" + id + "_" + secret, "", false},
		{"sko_" + id[1:] + "_" + secret, "", false},
		{"sk_o_" + id + "_" + secret, "o", true},
		{"sk_acme_" + id + "_" + secret, "acme", true},
		{"sk_my_tenant-1_" + id + "_" + secret, "my_tenant-1", true},
		{"sk__" + id + "_" + secret, "", false},
		{"pk_acme_" + id + "_" + secret, "", false},
		{"sk_acme_" + id + "_" + secret[1:], "", false},
		{"sk_acme_" + id[1:] + "_" + secret, "", false},
		{"sk_acme_" + strings.ToUpper(id) + "_" + secret, "", false},
		{"sk_ac.me_" + id + "_" + secret, "", false},
		{"sk_" + strings.Repeat("t", 65) + "_" + id + "_" + secret, "", false},
		{"", "", false},
	}
	for _, tc := range cases {
		pk, ok := parseKey(tc.key)
		if ok != tc.ok || (ok && (pk.tenant != tc.tenant || pk.id != id || pk.operator != strings.HasPrefix(tc.key, "sko_"))) {
			t.Errorf("parseKey(%q) = %+v, %v; want %q, %v", tc.key, pk, ok, tc.tenant, tc.ok)
		}
	}
}

func TestParseScopes(t *testing.T) {
	t.Parallel()
	got, err := ParseScopes(" send, read,send ")
	if err != nil || !slices.Equal(got, []Scope{ScopeSend, ScopeRead}) {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range []string{"", " , ", "send,write", "ADMIN", "read,operator"} {
		if _, err := ParseScopes(bad); err == nil {
			t.Errorf("ParseScopes(%q) accepted", bad)
		}
	}
}

// TestCreateAPIKey: the key is stored hashed, never in clear.
func TestCreateAPIKey(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	key, info, err := CreateAPIKey(ctx, f.db.Pool, "acme", "ci", []Scope{ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	if pk, ok := parseKey(key); !ok || pk.tenant != "acme" || pk.id != info.ID || pk.operator {
		t.Fatalf("key %q does not parse to its id %s", key, info.ID)
	}
	var leaked bool
	if err := f.db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM api_keys
		WHERE position(convert_to($1, 'UTF8') IN hash) > 0 OR name = $1 OR id = $1)`, key).Scan(&leaked); err != nil || leaked {
		t.Fatalf("key stored in clear (%v, %v)", leaked, err)
	}
	if _, _, err := CreateAPIKey(ctx, f.db.Pool, "acme", "", nil); err == nil {
		t.Fatal("a key without scopes was created")
	}
	if _, _, err := CreateAPIKey(ctx, f.db.Pool, "a.b", "", []Scope{ScopeRead}); err == nil {
		t.Fatal("a key for an invalid tenant was created")
	}
	if _, _, err := CreateAPIKey(ctx, f.db.Pool, "acme", "", []Scope{ScopeAdmin, ScopeOperator}); err == nil {
		t.Fatal("a tenant key with the operator scope was created")
	}
	// The table refuses it too: a tenant key with operator, an operator key
	// with a tenant scope.
	for _, q := range []string{
		`INSERT INTO api_keys (id, tenant, hash, scopes) VALUES ('x1', 'acme', sha256('x1'), '{operator}')`,
		`INSERT INTO api_keys (id, tenant, hash, scopes) VALUES ('x2', NULL, sha256('x2'), '{operator,admin}')`,
		`INSERT INTO api_keys (id, tenant, hash, scopes) VALUES ('x3', NULL, sha256('x3'), '{admin}')`,
	} {
		if _, err := f.db.Pool.Exec(ctx, q); err == nil {
			t.Errorf("api_keys accepted %s", q)
		}
	}
	opKey, opInfo, err := CreateOperatorKey(ctx, f.db.Pool, "alice")
	if pk, ok := parseKey(opKey); err != nil || !ok || !pk.operator || pk.id != opInfo.ID || !opInfo.Operator() {
		t.Fatalf("operator key %q (%+v, %v) does not parse to its id", opKey, opInfo, err)
	}
	if _, err := RevokeAPIKey(ctx, f.db.Pool, "0000000000000000"); err == nil {
		t.Fatal("revoked an unknown key")
	}
}
