package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/orchestrator/control"
	"github.com/sluicehq/sluice/status"
)

// TestCtlStatus: `sluice ctl status` prints every section, with the held
// conversations and the disabled channel; --json prints the API's report;
// a tenant's admin key is refused.
func TestCtlStatus(t *testing.T) {
	t.Parallel()
	b := setupCtl(t)
	ctx := t.Context()
	if _, err := b.db.Pool.Exec(ctx, `INSERT INTO conversations (tenant, id, name, channel, lane, template)
		VALUES ('acme', 'held', 'held', 'email', 'bulk', '{}')`); err != nil {
		t.Skipf("cannot make a conversation row here: %v", err)
	}
	if _, err := b.store.ChangeConversation(ctx, "acme", "held", control.StatePaused, "ctl status test", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.ChangeChannel(ctx, "push", true, "test"); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := b.ctl(t, "status", "--key", b.key)
	if err != nil {
		t.Fatalf("ctl status: %v %s", err, stderr)
	}
	for _, want := range []string{"NATS", "KV_sluice_control", "PROCESSES (0 live", "LANES", "transactional", "bulk",
		"ERROR LOG", "mode", "full", "spill depth", "partitions ahead", "CONTROLS", "intake", "running", "push=DISABLED",
		"paused", "acme/held", "ctl status test", "POSTGRES", "reachable, system identifier"} {
		if !strings.Contains(out, want) {
			t.Errorf("ctl status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "UNAVAILABLE") {
		t.Errorf("something unavailable:\n%s", out)
	}
	out, _, err = b.ctl(t, "status", "--json", "--key", b.key)
	var r status.Report
	if err != nil || json.Unmarshal([]byte(out), &r) != nil || len(r.Conversations.Paused) != 1 || !r.Postgres.Reachable {
		t.Fatalf("ctl status --json: %v %s", err, out)
	}
	admin, _, err := api.CreateAPIKey(ctx, b.db.Pool, "acme", "admin", []api.Scope{api.ScopeAdmin})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.ctl(t, "status", "--key", admin); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("ctl status with a tenant's admin key: %v", err)
	}
}
