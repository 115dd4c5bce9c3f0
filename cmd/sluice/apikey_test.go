package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/internal/pgtest"
)

// TestAPIKeyCommands: create prints a key that authenticates with its
// scopes; list shows it without the secret; revoke makes it fail.
func TestAPIKeyCommands(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	run := func(args ...string) (string, string, error) {
		var out, errb bytes.Buffer
		err := runAPIKey(ctx, append(args, "--database-url", db.URL), &out, &errb)
		return out.String(), errb.String(), err
	}

	out, msg, err := run("create", "--tenant", "acme", "--scope", "send,read", "--name", "ci")
	if err != nil {
		t.Fatalf("create: %v: %s", err, msg)
	}
	key := strings.TrimSpace(out)
	if strings.Count(out, "\n") != 1 || !strings.HasPrefix(key, "sk_acme_") || !strings.Contains(msg, "shown only now") {
		t.Fatalf("create printed %q / %q", out, msg)
	}

	auth, err := api.NewAuth(api.AuthConfig{Pool: db.Pool})
	if err != nil {
		t.Fatal(err)
	}
	status := func(scope api.Scope) int {
		h := auth.RequireScope(scope, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if p, _ := api.PrincipalFrom(r.Context()); p.Tenant != "acme" && !p.Operator() {
				t.Errorf("tenant = %q", p.Tenant)
			}
		}))
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if s, a := status(api.ScopeRead), status(api.ScopeAdmin); s != 200 || a != 403 {
		t.Fatalf("read %d, admin %d", s, a)
	}

	out, _, err = run("list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var keys []struct {
		ID, Tenant, Name string
		Scopes           []string
		RevokedAt        *string `json:"revoked_at"`
	}
	if err := json.Unmarshal([]byte(out), &keys); err != nil || len(keys) != 1 {
		t.Fatalf("list --json = %s (%v)", out, err)
	}
	k := keys[0]
	if k.Tenant != "acme" || k.Name != "ci" || strings.Join(k.Scopes, ",") != "send,read" || k.RevokedAt != nil || !strings.Contains(key, "_"+k.ID+"_") {
		t.Fatalf("listed %+v", k)
	}
	if strings.Contains(out, key[len(key)-48:]) {
		t.Fatal("list shows the secret")
	}

	if out, _, err = run("revoke", k.ID); err != nil || !strings.Contains(out, "revoked key "+k.ID) {
		t.Fatalf("revoke: %q, %v", out, err)
	}
	if s := status(api.ScopeRead); s != 401 {
		t.Fatalf("revoked key: %d", s)
	}
	out, _, err = run("list", "--tenant", "acme")
	if err != nil || !strings.Contains(out, k.ID) || !strings.Contains(out, "REVOKED") || strings.Contains(out, "\t") {
		t.Fatalf("list: %q, %v", out, err)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || strings.HasSuffix(lines[1], " -") {
		t.Fatalf("list does not show the revocation: %q", out)
	}
	if _, _, err := run("revoke", "0123456789abcdef"); err == nil || !strings.Contains(err.Error(), "no key") {
		t.Fatalf("revoke unknown: %v", err)
	}

	// An operator key: no tenant, scope operator; it opens the fleet's routes.
	out, msg, err = run("create", "--operator", "--name", "alice")
	opKey := strings.TrimSpace(out)
	if err != nil || !strings.HasPrefix(opKey, "sko_") || !strings.Contains(msg, "(operator, no tenant) with scopes operator") {
		t.Fatalf("create --operator: %q %q %v", out, msg, err)
	}
	key = opKey
	if o, a := status(api.ScopeOperator), status(api.ScopeAdmin); o != 200 || a != 403 {
		t.Fatalf("operator key: operator %d, admin %d", o, a)
	}
	out, _, err = run("list")
	if err != nil || !strings.Contains(out, " -       alice") && !strings.Contains(out, "-  alice") {
		t.Fatalf("list with an operator key: %q, %v", out, err)
	}
}

// TestAPIKeyUsage: usage errors are refused before touching the database.
func TestAPIKeyUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{},
		{"rotate"},
		{"create", "--scope", "send"},
		{"create", "--tenant", "acme"},
		{"create", "--tenant", "acme", "--scope", "send,write"},
		{"create", "--tenant", "acme", "--scope", "send", "extra"},
		{"revoke"},
		{"revoke", "a", "b"},
		{"create", "--operator"},
		{"create", "--operator", "--name", "alice", "--tenant", "acme"},
		{"create", "--operator", "--name", "alice", "--scope", "admin"},
		{"create", "--tenant", "acme", "--scope", "operator"},
		{"list", "x"},
	} {
		var out, errb bytes.Buffer
		// An unreachable database: a usage error must come first.
		err := runAPIKey(context.Background(), append(args, "--database-url", "postgres://nobody@127.0.0.1:1/none"), &out, &errb)
		if err != errUsage {
			t.Errorf("%q: err = %v (stderr %q), want a usage error", args, err, errb.String())
		}
	}
	var errb bytes.Buffer
	err := runAPIKey(context.Background(), []string{"list", "--database-url", "postgres://nobody@127.0.0.1:1/none"}, &bytes.Buffer{}, &errb)
	if err == nil || !strings.Contains(err.Error(), "cannot reach Postgres at postgres://nobody@127.0.0.1:1/none") {
		t.Fatalf("unreachable database: %v", err)
	}
}
