package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
)

// KeyDatabase is the control bucket's key, and the sluice_meta key, holding
// the system identifier of the PostgreSQL cluster the deployment is bound
// to (pg_control_system().system_identifier, a decimal string), a
// Setting[string] in the bucket.
const KeyDatabase = "database.system_identifier"

var (
	// ErrDatabaseMismatch is wrapped by CheckDatabase's and
	// VerifyDatabase's errors when the PostgreSQL behind the URL is not the
	// one the deployment is bound to.
	ErrDatabaseMismatch = errors.New("control: database mismatch")
	// ErrRebind is wrapped by RebindDatabase's refusals.
	ErrRebind = errors.New("control: rebind refused")
)

// SystemIdentifier returns the system identifier of the PostgreSQL cluster
// pool is connected to: chosen by initdb, unique per cluster, kept by a
// physical replica and by a restart, changed by a new initdb (a logical
// restore into a new cluster, another server answering at the same
// address).
func SystemIdentifier(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	var id int64
	if err := pool.QueryRow(ctx, `SELECT system_identifier FROM pg_control_system()`).Scan(&id); err != nil {
		return "", fmt.Errorf("control: read the database's system identifier: %w", err)
	}
	return strconv.FormatUint(uint64(id), 10), nil
}

// CheckDatabase is the second-Postgres fence, run by every process at
// start after CheckEnv: it reads the system identifier of the cluster
// behind pool, records it in sluice_meta and in the control bucket where it
// is not recorded yet (the first start), and returns it, or an error
// wrapping ErrDatabaseMismatch naming both identifiers and where the other
// was found if either differs. The database's own record catches a restore
// of a backup into a new cluster (the rows say the old identifier); the
// bucket's catches an empty or other database answering at the URL (its
// rows say nothing, or another deployment's identifier). After a real
// restore, RebindDatabase (sluice migrate rebind) re-binds the deployment.
func CheckDatabase(ctx context.Context, js jetstream.JetStream, pool *pgxpool.Pool, actor string) (string, error) {
	live, err := SystemIdentifier(ctx, pool)
	if err != nil {
		return "", err
	}
	var got string
	err = pool.QueryRow(ctx, `WITH ins AS (
			INSERT INTO sluice_meta (key, value, set_by) VALUES ($1, $2, $3)
			ON CONFLICT (key) DO NOTHING RETURNING value)
		SELECT value FROM ins UNION ALL SELECT value FROM sluice_meta WHERE key = $1 LIMIT 1`, KeyDatabase, live, actor).Scan(&got)
	if err != nil {
		return "", fmt.Errorf("control: database fence: read sluice_meta (are migrations applied? run sluice migrate): %w", err)
	}
	if got != live {
		return "", mismatch(live, got, "the database's own sluice_meta row "+KeyDatabase)
	}
	kv, err := openBucket(ctx, js)
	if err != nil {
		return "", err
	}
	data, err := json.Marshal(Setting[string]{Value: live, By: actor, At: time.Now().UTC().Truncate(time.Microsecond)})
	if err != nil {
		return "", err
	}
	if _, err := kv.Create(ctx, KeyDatabase, data); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return "", fmt.Errorf("control: database fence: record %s in %s: %w", KeyDatabase, Bucket, err)
	}
	st, err := boundDatabase(ctx, kv)
	if err != nil {
		return "", err
	}
	if st.Value != live {
		return "", mismatch(live, st.Value, "NATS (key "+KeyDatabase+" of bucket "+Bucket+")")
	}
	return live, nil
}

func mismatch(live, recorded, where string) error {
	return fmt.Errorf("%w: the PostgreSQL behind the database URL has system identifier %s, but this deployment is bound to %s (recorded in %s): another server, or a restore into a new cluster, answers at this address; refusing to run against it. If this really is the deployment's database after a restore, re-bind with: sluice migrate rebind --confirm %s",
		ErrDatabaseMismatch, live, recorded, where, live)
}

// boundDatabase reads the bucket's record; a zero Setting if there is none.
func boundDatabase(ctx context.Context, kv jetstream.KeyValue) (Setting[string], error) {
	e, err := kv.Get(ctx, KeyDatabase)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Setting[string]{}, nil
	}
	if err != nil {
		return Setting[string]{}, fmt.Errorf("control: get %s: %w", KeyDatabase, err)
	}
	var st Setting[string]
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return Setting[string]{}, fmt.Errorf("control: %s revision %d: %w", KeyDatabase, e.Revision(), err)
	}
	st.Revision = e.Revision()
	return st, nil
}

// BoundDatabase returns the system identifier the deployment is bound to,
// as the control bucket records it ("" if none is).
func (s *Store) BoundDatabase(ctx context.Context) (string, error) {
	st, err := boundDatabase(ctx, s.kv)
	return st.Value, err
}

// VerifyDatabase is the readiness check of the fence: it compares the
// system identifier behind pool now with the one the deployment is bound
// to (the bucket's; started if the bucket cannot be read), so that a
// process whose pool reconnected to another server (an address moved to a
// restored cluster) stops reporting ready, and one re-bound by
// RebindDatabase reports ready again.
func (s *Store) VerifyDatabase(ctx context.Context, pool *pgxpool.Pool, started string) error {
	live, err := SystemIdentifier(ctx, pool)
	if err != nil {
		return err
	}
	bound, where := started, "at this process's start"
	if st, err := boundDatabase(ctx, s.kv); err == nil && st.Value != "" {
		bound, where = st.Value, "NATS (key "+KeyDatabase+" of bucket "+Bucket+")"
	}
	if live != bound {
		return mismatch(live, bound, where)
	}
	return nil
}

// Rebind is what RebindDatabase did.
type Rebind struct {
	// Previous is the identifier the deployment was bound to ("" if none).
	Previous string `json:"previous"`
	// Current is the identifier it is bound to now.
	Current string `json:"current"`
}

// RebindDatabase binds the deployment to the PostgreSQL cluster behind pool
// after a real restore into a new cluster: confirm must be that cluster's
// system identifier, as the refusal printed it (so that a rebind cannot be
// run blind against whatever answers). It sets the sluice_meta row and the
// bucket's key and inserts a control_audit row (key
// database.system_identifier, old and new identifiers, actor). Processes
// refused at start may then start; running ones report ready again.
func RebindDatabase(ctx context.Context, js jetstream.JetStream, pool *pgxpool.Pool, confirm, actor string) (Rebind, error) {
	live, err := SystemIdentifier(ctx, pool)
	if err != nil {
		return Rebind{}, err
	}
	if confirm != live {
		return Rebind{}, fmt.Errorf("%w: --confirm %q is not the system identifier of the database behind the URL, which is %s", ErrRebind, confirm, live)
	}
	kv, err := openBucket(ctx, js)
	if err != nil {
		return Rebind{}, err
	}
	old, err := boundDatabase(ctx, kv)
	if err != nil {
		return Rebind{}, err
	}
	var dbOld string
	if err := pool.QueryRow(ctx, `SELECT value FROM sluice_meta WHERE key = $1`, KeyDatabase).Scan(&dbOld); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Rebind{}, fmt.Errorf("control: rebind: read sluice_meta (are migrations applied? run sluice migrate): %w", err)
	}
	if old.Value == live && dbOld == live {
		return Rebind{}, fmt.Errorf("%w: the deployment is already bound to %s", ErrRebind, live)
	}
	at := time.Now().UTC().Truncate(time.Microsecond)
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO sluice_meta (key, value, set_by, set_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, set_by = EXCLUDED.set_by, set_at = EXCLUDED.set_at`,
			KeyDatabase, live, actor, at); err != nil {
			return err
		}
		oldJSON, _ := json.Marshal(map[string]string{"nats": old.Value, "database": dbOld})
		newJSON, _ := json.Marshal(live)
		_, err := tx.Exec(ctx, `INSERT INTO control_audit (at, actor, key, old_value, new_value) VALUES ($1, $2, $3, $4, $5)`,
			at, actor, KeyDatabase, oldJSON, newJSON)
		return err
	})
	if err != nil {
		return Rebind{}, fmt.Errorf("control: rebind: %w", err)
	}
	data, err := json.Marshal(Setting[string]{Value: live, By: actor, At: at})
	if err != nil {
		return Rebind{}, err
	}
	if _, err := kv.Put(ctx, KeyDatabase, data); err != nil {
		return Rebind{}, fmt.Errorf("control: rebind: the database is re-bound but %s of bucket %s is not; repeat the rebind: %w", KeyDatabase, Bucket, err)
	}
	return Rebind{Previous: old.Value, Current: live}, nil
}
