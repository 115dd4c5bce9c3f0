package main

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/api"
)

// TestCtlOps drives the conversation, intake and channel commands against
// the control plane's ops routes (the purge is a stand-in that reports 7).
func TestCtlOps(t *testing.T) {
	t.Parallel()
	b := setupCtl(t)
	db := b.db
	if _, err := db.Pool.Exec(t.Context(), `INSERT INTO conversations (tenant, id, name, channel, lane, template)
		VALUES ('acme', 'spring', 'spring', 'email', 'bulk', '{}')`); err != nil {
		t.Fatal(err)
	}
	ctl := func(args ...string) (string, error) {
		out, errOut, err := b.ctl(t, append([]string{"--key", b.key}, args...)...)
		return out + errOut, err
	}
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"conversation", "pause", "acme", "spring", "--reason", "complaints"}, "conversation acme/spring: active -> paused\n"},
		{[]string{"conversation", "list", "--state", "paused"}, "acme    spring        paused  operator:"},
		{[]string{"conversation", "show", "acme", "spring"}, "complaints"},
		{[]string{"conversation", "resume", "acme", "spring"}, "paused -> active"},
		{[]string{"conversation", "stop", "acme", "spring"}, "active -> stopped, 7 queued messages purged"},
		{[]string{"intake", "pause"}, "intake: paused (the API answers 503 to new activations), since"},
		{[]string{"intake", "show"}, "(ops)"},
		{[]string{"intake", "resume"}, "intake: running"},
		{[]string{"channel", "disable", "sms"}, "channel sms disabled"},
		{[]string{"channel", "list"}, "sms      disabled  operator:"},
		{[]string{"channel", "enable", "sms"}, "channel sms enabled"},
	}
	for _, s := range steps {
		out, err := ctl(s.args...)
		if err != nil || !strings.Contains(out, s.want) {
			t.Fatalf("ctl %v: %v\n%s\nwant %q", s.args, err, out, s.want)
		}
	}
	var purged int64
	var state string
	if err := db.Pool.QueryRow(t.Context(), `SELECT purged, state FROM conversations WHERE id = 'spring'`).Scan(&purged, &state); err != nil || purged != 7 || state != "stopped" {
		t.Fatalf("conversation row: purged %d state %q %v", purged, state, err)
	}
	for _, args := range [][]string{
		{"conversation", "resume", "acme", "spring"}, // stopped is final
		{"conversation", "pause", "acme", "nope"},    // unknown
		{"channel", "disable", "fax"},
	} {
		if out, err := ctl(args...); err == nil {
			t.Fatalf("ctl %v succeeded:\n%s", args, out)
		}
	}
}

// TestCtlTenantAdmin: a tenant's admin key runs the conversation commands
// on its own tenant only, and is refused the fleet's, with a hint.
func TestCtlTenantAdmin(t *testing.T) {
	t.Parallel()
	b := setupCtl(t)
	if _, err := b.db.Pool.Exec(t.Context(), `INSERT INTO conversations (tenant, id, name, channel, lane, template)
		VALUES ('acme', 'spring', 'spring', 'email', 'bulk', '{}'), ('beta', 'news', 'news', 'email', 'bulk', '{}')`); err != nil {
		t.Fatal(err)
	}
	key, _, err := api.CreateAPIKey(t.Context(), b.db.Pool, "acme", "acme-ops", []api.Scope{api.ScopeAdmin})
	if err != nil {
		t.Fatal(err)
	}
	ctl := func(args ...string) (string, error) {
		out, errOut, err := b.ctl(t, append([]string{"--key", key}, args...)...)
		return out + errOut, err
	}
	if out, err := ctl("conversation", "pause", "acme", "spring"); err != nil || !strings.Contains(out, "active -> paused") {
		t.Fatalf("own conversation: %v\n%s", err, out)
	}
	if _, err := ctl("conversation", "pause", "beta", "news"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("another tenant's conversation: %v", err)
	}
	if _, err := ctl("intake", "pause"); err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "--operator") {
		t.Fatalf("intake with a tenant admin key: %v", err)
	}
	if st, err := b.store.Conversation(t.Context(), "beta", "news"); err != nil || st.Revision != 0 {
		t.Fatalf("beta/news changed: %+v, %v", st, err)
	}
	if in, err := b.store.Intake(t.Context()); err != nil || in.Value.Paused {
		t.Fatalf("intake changed: %+v, %v", in, err)
	}
}
