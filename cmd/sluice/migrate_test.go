package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/natstest"
	"github.com/sluicehq/sluice/internal/pgtest"
	"github.com/sluicehq/sluice/orchestrator/control"
)

// TestMigrateRebind: `sluice migrate rebind` needs --confirm with the live
// system identifier, then binds the database and NATS to it, audited with
// the OS user.
func TestMigrateRebind(t *testing.T) {
	t.Parallel()
	nc, natsURL := natstest.Start(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	db := pgtest.New(t)
	ctx := t.Context()
	// Bound to another cluster, as after a restore.
	if _, err := db.Pool.Exec(ctx, `INSERT INTO sluice_meta (key, value) VALUES ($1, '7000000000000000001')`, control.KeyDatabase); err != nil {
		t.Fatal(err)
	}
	if _, err := control.CheckDatabase(ctx, js, db.Pool, "test"); !errors.Is(err, control.ErrDatabaseMismatch) {
		t.Fatalf("fence before the rebind: %v", err)
	}
	live, err := control.SystemIdentifier(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	rebind := func(args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		err := runMigrate(ctx, append([]string{"--database-url", db.URL, "rebind", "--nats-url", natsURL}, args...), &out, &errOut)
		return out.String(), errOut.String(), err
	}
	if _, stderr, err := rebind(); err != errUsage || !strings.Contains(stderr, "--confirm") {
		t.Fatalf("rebind without --confirm: %v %s", err, stderr)
	}
	if _, _, err := rebind("--confirm", "123"); !errors.Is(err, control.ErrRebind) || !strings.Contains(err.Error(), live) {
		t.Fatalf("rebind with a wrong identifier: %v", err)
	}
	out, _, err := rebind("--confirm", live)
	if err != nil || !strings.Contains(out, live) {
		t.Fatalf("rebind: %v %s", err, out)
	}
	if got, err := control.CheckDatabase(ctx, js, db.Pool, "test"); err != nil || got != live {
		t.Fatalf("fence after the rebind: %q %v", got, err)
	}
	var actor string
	if err := db.Pool.QueryRow(ctx, `SELECT actor FROM control_audit WHERE key = $1`, control.KeyDatabase).Scan(&actor); err != nil ||
		!strings.HasPrefix(actor, "sluice migrate rebind (") {
		t.Fatalf("audit actor %q %v", actor, err)
	}
}
