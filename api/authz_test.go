package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/orchestrator/control"
)

// Who a route admits, as the matrix test expects it.
const (
	allowPublic   = "public"       // no key needed
	allowSend     = "send"         // tenant key with send
	allowRead     = "read"         // tenant key with read
	allowAdmin    = "admin"        // tenant admin key of the tenant in the path, or operator
	allowOperator = "operator"     // operator key only
	allowTenant   = "tenant-admin" // tenant key with admin, acting on its own tenant (no operator)
	allowOwn      = "tenant-own"   // tenant key with admin, on one of its tenant's resources ({webhook}: tenant A's)
)

// matrixRoute is what the matrix test needs to call one route of the
// OpenAPI document: who it admits, the body of a request that succeeds for
// them, and the status of that success.
type matrixRoute struct {
	allow string
	body  string
	ok    int
}

// matrixRoutes has a row for every operation of api/openapi.json; the test
// fails on an operation without one, so a new route cannot be left out.
// Paths are the document's: {tenant} is tenant A, {id} a conversation of
// A's made for the row, {name} the sms channel, {webhook} an endpoint of
// A's made for the row.
func matrixRoutes() map[string]matrixRoute {
	replay := fmt.Sprintf(`{"from":%q,"to":%q}`, time.Now().Add(-time.Hour).Format(time.RFC3339), time.Now().Format(time.RFC3339))
	return map[string]matrixRoute{
		"POST /v1/webhooks":                  {allowTenant, `{"url":"http://127.0.0.1:9/hook","events":["delivered","quarantined"]}`, 201},
		"GET /v1/webhooks":                   {allowTenant, "", 200},
		"GET /v1/webhooks/{webhook}":         {allowOwn, "", 200},
		"DELETE /v1/webhooks/{webhook}":      {allowOwn, "", 200},
		"POST /v1/webhooks/{webhook}/replay": {allowOwn, replay, 202},
		"GET /healthz":                       {allowPublic, "", 200},
		"GET /readyz":                        {allowPublic, "", 200},
		"GET /metrics":                       {allowPublic, "", 200},
		"GET /v1/openapi.json":               {allowPublic, "", 200},
		"POST /v1/conversations": {allowSend, `{"id":"made-by-matrix","name":"m","channel":"email","lane":"bulk",` +
			`"template":{"subject":"s","text":"t"}}`, 201},
		"GET /v1/conversations/{id}":                        {allowRead, "", 200},
		"POST /v1/conversations/{id}/activations":           {allowSend, `[{"to":"a@example.com"}]`, 202},
		"GET /v1/admin/conversations":                       {allowAdmin, "", 200},
		"GET /v1/admin/conversations/{tenant}/{id}":         {allowAdmin, "", 200},
		"POST /v1/admin/conversations/{tenant}/{id}/pause":  {allowAdmin, `{"reason":"matrix"}`, 200},
		"POST /v1/admin/conversations/{tenant}/{id}/resume": {allowAdmin, "", 200},
		"POST /v1/admin/conversations/{tenant}/{id}/stop":   {allowAdmin, "", 200},
		"GET /v1/admin/errorlog":                            {allowOperator, "", 200},
		"PUT /v1/admin/errorlog":                            {allowOperator, `{"mode":"full"}`, 200},
		"GET /v1/admin/errors/top":                          {allowOperator, "", 200},
		"GET /v1/admin/intake":                              {allowOperator, "", 200},
		"PUT /v1/admin/intake":                              {allowOperator, `{"paused":false}`, 200},
		"GET /v1/admin/channels":                            {allowOperator, "", 200},
		"PUT /v1/admin/channels/{name}":                     {allowOperator, `{"disabled":false}`, 200},
		"GET /v1/admin/status":                              {allowOperator, "", 200},
		"GET /v1/suppressions":                              {allowRead, "", 200},
		"POST /v1/suppressions":                             {allowTenant, `{"address":"matrix@example.com"}`, 201},
		"DELETE /v1/suppressions":                           {allowTenant, `{"address":"matrix@example.com"}`, 200},
		"GET /v1/admin/audit":                               {allowAdmin, "", 200},
		"GET /u/{token}":                                    {allowPublic, "", 200},
		"POST /u/{token}":                                   {allowPublic, "", 200},
		"POST /v1/feedback":                                 {allowTenant, `{"events":[{"type":"bounce","bounce_type":"soft","address":"matrix@example.com"}]}`, 200},
	}
}

// documentedOperations returns "METHOD /path" of every operation of the
// OpenAPI document but the console's pages (tag console, whose
// authorization package console's tests check: they redirect to the
// sign-in page rather than answer problems), sorted, and the credential each
// one documents (x-sluice-credential).
func documentedOperations(t *testing.T) ([]string, map[string]string) {
	ops, creds, _ := documentedByTag(t)
	return ops, creds
}

// documentedByTag is documentedOperations and, apart, the console's.
func documentedByTag(t *testing.T) (ops []string, creds map[string]string, console []string) {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]struct {
			Credential string   `json:"x-sluice-credential"`
			Tags       []string `json:"tags"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	creds = map[string]string{}
	for path, item := range doc.Paths {
		for method, op := range item {
			if !slices.Contains([]string{"get", "put", "post", "delete", "patch"}, method) {
				continue
			}
			name := strings.ToUpper(method) + " " + path
			if slices.Contains(op.Tags, "console") {
				console = append(console, name)
				continue
			}
			ops = append(ops, name)
			creds[name] = op.Credential
		}
	}
	slices.Sort(ops)
	return ops, creds, console
}

// documentedCredential is the x-sluice-credential of each kind of route.
func documentedCredential(allow string) string {
	return map[string]string{
		allowPublic: "none", allowSend: "tenant:send", allowRead: "tenant:read",
		allowAdmin: "tenant:admin or operator", allowOperator: "operator", allowTenant: "tenant:admin", allowOwn: "tenant:admin",
	}[allow]
}

// caller is one column of the matrix.
type caller struct {
	name string
	key  string
	// tenant is the key's tenant ("" for none); scope its one scope.
	tenant string
	scope  Scope
}

// expect is the status the matrix expects for c calling rt, whose path
// names tenant A if namesA.
func expect(rt matrixRoute, c caller, namesA bool) int {
	switch {
	case rt.allow == allowPublic:
		return rt.ok
	case c.scope == "":
		return http.StatusUnauthorized // no key, a wrong key, a revoked key
	case rt.allow == allowAdmin && c.scope == ScopeOperator:
		return rt.ok
	case rt.allow == allowAdmin && c.scope == ScopeAdmin && (c.tenant == "tenant-a" || !namesA):
		return rt.ok
	case rt.allow == allowAdmin && c.scope == ScopeAdmin:
		return http.StatusNotFound // another tenant's conversation: as if it did not exist
	case rt.allow == allowTenant && c.scope == ScopeAdmin:
		return rt.ok // on the key's own tenant's list, whichever tenant it is
	case rt.allow == allowOwn && c.scope == ScopeAdmin && c.tenant == "tenant-a":
		return rt.ok
	case rt.allow == allowOwn && c.scope == ScopeAdmin:
		return http.StatusNotFound // another tenant's endpoint: as if it did not exist
	case string(c.scope) == rt.allow && (c.tenant == "tenant-a" || c.scope == ScopeOperator):
		return rt.ok
	}
	return http.StatusForbidden
}

// world is everything a request could change, as text to compare.
func (f *fixture) world() string {
	f.t.Helper()
	ctx := context.Background()
	var rows, audit, suppressed, hooks int
	var accepted, purged int64
	if err := f.db.Pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(accepted), 0), coalesce(sum(purged), 0),
		(SELECT count(*) FROM control_audit), (SELECT count(*) FROM suppressions), (SELECT count(*) FROM webhooks)
		FROM conversations`).Scan(&rows, &accepted, &purged, &audit, &suppressed, &hooks); err != nil {
		f.t.Fatal(err)
	}
	var states []string
	if err := pgxRows(f, `SELECT tenant || '/' || id || '=' || state FROM conversations ORDER BY tenant, id`, &states); err != nil {
		f.t.Fatal(err)
	}
	convs, err1 := f.ctl.Conversations(ctx, "", "")
	mode, err2 := f.ctl.ErrorLogStatus(ctx)
	intake, err3 := f.ctl.IntakeInfo(ctx)
	channels, err4 := f.ctl.ChannelList(ctx)
	for _, err := range []error{err1, err2, err3, err4} {
		if err != nil {
			f.t.Fatal(err)
		}
	}
	b, _ := json.Marshal([]any{rows, accepted, purged, audit, suppressed, hooks, states, f.streamMsgs(), convs, mode, intake, channels})
	return string(b)
}

func pgxRows(f *fixture, q string, out *[]string) error {
	rows, err := f.db.Pool.Query(context.Background(), q)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return err
		}
		*out = append(*out, s)
	}
	return rows.Err()
}

// TestAuthorizationMatrix calls every route of the OpenAPI document with
// every kind of credential and checks the status of each cell; every
// refused request must leave everything as it was (conversations, their
// control states, counts, the stream, the error-log mode, intake, channels,
// the audit). Tenant B's admin key gets 404 on every route naming tenant
// A's conversation; tenant keys get 403 on every fleet-wide control.
func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	revoked := f.key("tenant-a", ScopeSend, ScopeRead, ScopeAdmin)
	keys, err := ListAPIKeys(ctx, f.db.Pool, "tenant-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RevokeAPIKey(ctx, f.db.Pool, keys[0].ID); err != nil {
		t.Fatal(err)
	}
	callers := []caller{
		{name: "no key"},
		{name: "wrong key", key: "sk_tenant-a_0123456789abcdef_" + strings.Repeat("0", 48)},
		{name: "revoked key", key: revoked},
		{name: "A send", key: f.key("tenant-a", ScopeSend), tenant: "tenant-a", scope: ScopeSend},
		{name: "A read", key: f.key("tenant-a", ScopeRead), tenant: "tenant-a", scope: ScopeRead},
		{name: "A admin", key: f.key("tenant-a", ScopeAdmin), tenant: "tenant-a", scope: ScopeAdmin},
		{name: "B admin", key: f.key("tenant-b", ScopeAdmin), tenant: "tenant-b", scope: ScopeAdmin},
		{name: "operator", key: f.operatorKey("matrix"), scope: ScopeOperator},
	}
	sendA, sendB := callers[3].key, f.key("tenant-b", ScopeSend)
	// A and B each have a conversation with a state: the listing of one
	// tenant's admin key must not show the other's.
	f.conversation(sendA, "a-listed")
	f.conversation(sendB, "b-listed")
	for _, tc := range [][2]string{{"tenant-a", "a-listed"}, {"tenant-b", "b-listed"}} {
		if _, err := f.ctl.SetConversation(ctx, tc[0], tc[1], control.ConversationStatus{State: control.StatePaused}, "test"); err != nil {
			t.Fatal(err)
		}
	}

	ops, creds := documentedOperations(t)
	if len(ops) < 20 {
		t.Fatalf("only %d operations in the document", len(ops))
	}
	for i, op := range ops {
		rt, ok := matrixRoutes()[op]
		if !ok {
			t.Errorf("%s is in api/openapi.json but not in the authorization matrix (matrixRoutes)", op)
			continue
		}
		if want := documentedCredential(rt.allow); creds[op] != want {
			t.Errorf("%s: the document says x-sluice-credential %q, the matrix expects %q", op, creds[op], want)
		}
		method, tmpl, _ := strings.Cut(op, " ")
		conv := fmt.Sprintf("a-%02d", i) // a conversation of A's for this row alone
		f.conversation(sendA, conv)
		hook := ""
		if strings.Contains(tmpl, "{webhook}") {
			hook = f.webhook("tenant-a")
		}
		path := strings.NewReplacer("{tenant}", "tenant-a", "{id}", conv, "{name}", "sms",
			"{token}", f.unsub.Token("tenant-a", conv, "unsubscribed@example.com"), "{webhook}", hook).Replace(tmpl)
		for _, c := range callers {
			want := expect(rt, c, strings.Contains(tmpl, "{tenant}"))
			before := f.world()
			var body *strings.Reader
			if rt.body != "" {
				body = strings.NewReader(rt.body)
			}
			var r response
			if body != nil {
				r = f.do(method, path, c.key, body, header("Content-Type", "application/json"))
			} else {
				r = f.do(method, path, c.key, nil)
			}
			if r.status != want {
				t.Errorf("%s as %s: %d, want %d: %s", op, c.name, r.status, want, r.body)
				continue
			}
			if r.status >= 400 {
				r.problem(t, want, map[int]string{401: ProblemUnauthenticated, 403: ProblemForbidden, 404: ProblemNotFound}[want])
				if after := f.world(); after != before {
					t.Errorf("%s as %s was refused (%d) but changed something:\nbefore %s\nafter  %s", op, c.name, r.status, before, after)
				}
			}
			if op == "GET /v1/admin/conversations" && r.status == 200 {
				checkListing(t, c, string(r.body))
			}
		}
	}
}

// checkListing: a tenant's admin key lists its own tenant's conversations
// only; the operator every tenant's.
func checkListing(t *testing.T, c caller, body string) {
	t.Helper()
	hasA, hasB := strings.Contains(body, `"tenant":"tenant-a"`), strings.Contains(body, `"tenant":"tenant-b"`)
	switch {
	case c.scope == ScopeOperator && !(hasA && hasB):
		t.Errorf("operator's listing lacks a tenant: %s", body)
	case c.tenant == "tenant-a" && hasB, c.tenant == "tenant-b" && hasA:
		t.Errorf("%s lists another tenant's conversations: %s", c.name, body)
	case c.tenant == "tenant-a" && !hasA, c.tenant == "tenant-b" && !hasB:
		t.Errorf("%s does not list its own conversation: %s", c.name, body)
	}
}

// TestDevIdentity: under sluice dev the keyless identity is its tenant's
// admin and the operator: it may use the fleet's controls and act on any
// tenant's conversation, audited as the dev key. A key, when sent, is still
// what counts.
func TestDevIdentity(t *testing.T) {
	t.Parallel()
	f := setup(t, func(d *CampaignDeps) { d.Env, d.DevTenant = "dev", "demo" })
	other := f.key("elsewhere", ScopeSend)
	f.conversation(other, "theirs")
	if r := f.put("/v1/admin/intake", "", `{"paused":false}`); r.status != 200 {
		t.Fatalf("dev: PUT intake %d %s", r.status, r.body)
	}
	if r := f.do(http.MethodPost, "/v1/admin/conversations/elsewhere/theirs/pause", "", nil); r.status != 200 {
		t.Fatalf("dev: pause another tenant's conversation: %d %s", r.status, r.body)
	}
	if a := f.lastActor(); a != "key:dev@demo" {
		t.Fatalf("dev actor %q", a)
	}
	adminB := f.key("elsewhere", ScopeAdmin)
	f.do(http.MethodGet, "/v1/admin/intake", adminB, nil).problem(t, http.StatusForbidden, ProblemForbidden)
}
