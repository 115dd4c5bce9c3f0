package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/orchestrator/control"
)

// fakeID is a system identifier no test cluster has: the deployment's
// recorded one, as if another cluster had been bound first.
const fakeID = "7000000000000000001"

// setRecorded overwrites the bucket's and/or the database's record of the
// bound cluster, as a deployment bound to another cluster would hold it.
func setRecorded(t *testing.T, b *bundle, inNATS, inDB string) {
	t.Helper()
	if inNATS != "" {
		kv, err := b.n.JS.KeyValue(t.Context(), control.Bucket)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(control.Setting[string]{Value: inNATS, By: "test", At: time.Now().UTC()})
		if _, err := kv.Put(t.Context(), control.KeyDatabase, data); err != nil {
			t.Fatal(err)
		}
	}
	if inDB != "" {
		if _, err := b.db.Pool.Exec(t.Context(), `UPDATE sluice_meta SET value = $1 WHERE key = $2`, inDB, control.KeyDatabase); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSecondPostgres: the cluster's system identifier is recorded at first
// start in sluice_meta and in the control bucket; a process that finds
// another identifier behind its URL (per either record) refuses to start
// naming both; /readyz of a running process fails the same way when the
// binding changes under it; and `rebind` with the live identifier, audited,
// lets processes start and be ready again.
func TestSecondPostgres(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	ctx := t.Context()
	live, err := control.SystemIdentifier(ctx, b.db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	var inDB string
	if err := b.db.Pool.QueryRow(ctx, `SELECT value FROM sluice_meta WHERE key = $1`, control.KeyDatabase).Scan(&inDB); err != nil || inDB != live {
		t.Fatalf("sluice_meta holds %q (%v), want the live identifier %s", inDB, err, live)
	}
	if got, err := b.n.Control.BoundDatabase(ctx); err != nil || got != live {
		t.Fatalf("bucket holds %q (%v), want %s", got, err, live)
	}
	b.must(t, "GET", "/readyz", nil, http.StatusOK)

	start := func() error {
		rec := &recorder{byID: map[string]int{}, conv: map[string]int{}}
		cfg := config(b.nats, b.db, rec, control.EnvDev)
		cfg.Worker = false
		n, err := node.Start(ctx, cfg, quietLogger(t))
		if err == nil {
			stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = n.Stop(stopCtx)
		}
		return err
	}
	// NATS says the deployment is bound to another cluster: an empty or
	// foreign database answering at the URL.
	setRecorded(t, b, fakeID, "")
	err = start()
	if !errors.Is(err, control.ErrDatabaseMismatch) || !strings.Contains(err.Error(), live) || !strings.Contains(err.Error(), fakeID) || !strings.Contains(err.Error(), "NATS") {
		t.Fatalf("start with NATS bound to %s: %v", fakeID, err)
	}
	// The running process stops being ready, naming both.
	code, _, body := b.do(t, "GET", "/readyz", nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), fakeID) || !strings.Contains(string(body), live) {
		t.Fatalf("readyz while bound elsewhere: %d %s", code, body)
	}
	// The database's own rows say another cluster: a restore of a backup
	// into a new cluster.
	setRecorded(t, b, live, fakeID)
	err = start()
	if !errors.Is(err, control.ErrDatabaseMismatch) || !strings.Contains(err.Error(), fakeID) || !strings.Contains(err.Error(), "sluice_meta") {
		t.Fatalf("start with sluice_meta bound to %s: %v", fakeID, err)
	}

	// Rebind: refused blind, then done with the live identifier and audited.
	if _, err := control.RebindDatabase(ctx, b.n.JS, b.db.Pool, fakeID, "test-operator"); !errors.Is(err, control.ErrRebind) {
		t.Fatalf("rebind to an identifier that is not the live one: %v", err)
	}
	setRecorded(t, b, fakeID, "")
	r, err := control.RebindDatabase(ctx, b.n.JS, b.db.Pool, live, "test-operator")
	if err != nil || r.Current != live || r.Previous != fakeID {
		t.Fatalf("rebind: %+v %v", r, err)
	}
	var actor, newValue string
	if err := b.db.Pool.QueryRow(ctx, `SELECT actor, new_value #>> '{}' FROM control_audit WHERE key = $1 ORDER BY id DESC LIMIT 1`,
		control.KeyDatabase).Scan(&actor, &newValue); err != nil || actor != "test-operator" || newValue != live {
		t.Fatalf("audit of the rebind: %q %q %v", actor, newValue, err)
	}
	if err := start(); err != nil {
		t.Fatalf("start after rebind: %v", err)
	}
	b.must(t, "GET", "/readyz", nil, http.StatusOK)
	if _, err := control.RebindDatabase(ctx, b.n.JS, b.db.Pool, live, "test-operator"); !errors.Is(err, control.ErrRebind) {
		t.Fatalf("rebind when already bound: %v", err)
	}
}
