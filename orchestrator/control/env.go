package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
)

// The environments a deployment can be (SLUICE_ENV).
const (
	EnvDev        = "dev"
	EnvTest       = "test"
	EnvStaging    = "staging"
	EnvProduction = "production"
)

// KeyEnv is the control bucket's key holding the deployment's environment,
// a Setting[string]. The sluice_meta row with the same key holds it in
// Postgres.
const KeyEnv = "env"

var (
	// ErrEnvMismatch is wrapped by CheckEnv's error when the database or
	// NATS belong to another environment than the process's.
	ErrEnvMismatch = errors.New("control: environment mismatch")
	// ErrProduction is wrapped by RefuseProduction's error.
	ErrProduction = errors.New("control: refusing to run against production")
)

// ValidEnv checks an environment name.
func ValidEnv(env string) error {
	switch env {
	case EnvDev, EnvTest, EnvStaging, EnvProduction:
		return nil
	}
	return fmt.Errorf("%w: environment %q: want dev, test, staging or production", ErrInvalid, env)
}

// CheckEnv is the environment fence, run by every process at start: it
// compares env (SLUICE_ENV) with the environment recorded in the database
// (table sluice_meta, migration 0006) and in the control bucket (key env),
// records it where it is not recorded yet (the first start), and returns an
// error wrapping ErrEnvMismatch, naming both values and where the other was
// found, if either differs. pool or js may be nil to check only the other.
// actor names who records it ("sluice serve", say).
func CheckEnv(ctx context.Context, js jetstream.JetStream, pool *pgxpool.Pool, env, actor string) error {
	if err := ValidEnv(env); err != nil {
		return err
	}
	if pool != nil {
		var got string
		err := pool.QueryRow(ctx, `WITH ins AS (
				INSERT INTO sluice_meta (key, value, set_by) VALUES ('env', $1, $2)
				ON CONFLICT (key) DO NOTHING RETURNING value)
			SELECT value FROM ins UNION ALL SELECT value FROM sluice_meta WHERE key = 'env' LIMIT 1`, env, actor).Scan(&got)
		if err != nil {
			return fmt.Errorf("control: environment fence: read sluice_meta (are migrations applied? run sluice migrate): %w", err)
		}
		if got != env {
			return fmt.Errorf("%w: this process is configured for %q (SLUICE_ENV) but the database belongs to %q (sluice_meta); refusing to start", ErrEnvMismatch, env, got)
		}
	}
	if js != nil {
		kv, err := openBucket(ctx, js)
		if err != nil {
			return err
		}
		data, err := json.Marshal(Setting[string]{Value: env, By: actor, At: time.Now().UTC().Truncate(time.Microsecond)})
		if err != nil {
			return err
		}
		if _, err := kv.Create(ctx, KeyEnv, data); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("control: environment fence: record %s in %s: %w", KeyEnv, Bucket, err)
		}
		got, err := kvEnv(ctx, kv)
		if err != nil {
			return err
		}
		if got != env {
			return fmt.Errorf("%w: this process is configured for %q (SLUICE_ENV) but NATS belongs to %q (key %s of bucket %s); refusing to start", ErrEnvMismatch, env, got, KeyEnv, Bucket)
		}
	}
	return nil
}

func openBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: Bucket, History: History, Storage: jetstream.FileStorage,
			Description: "sluice control plane: error-log mode, intake, conversation and channel states"})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, Bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("control: open bucket %s: %w", Bucket, err)
	}
	return kv, nil
}

// kvEnv reads the env key; "" if it is not set.
func kvEnv(ctx context.Context, kv jetstream.KeyValue) (string, error) {
	e, err := kv.Get(ctx, KeyEnv)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("control: get %s: %w", KeyEnv, err)
	}
	var st Setting[string]
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return "", fmt.Errorf("control: %s revision %d: %w", KeyEnv, e.Revision(), err)
	}
	return st.Value, nil
}

// RecordedEnv returns the environments recorded in the database and in NATS,
// without recording anything: "" where none is (or pool/js is nil, or the
// database predates migration 0006).
func RecordedEnv(ctx context.Context, js jetstream.JetStream, pool *pgxpool.Pool) (db, nats string, err error) {
	if pool != nil {
		var exists bool
		if err := pool.QueryRow(ctx, `SELECT to_regclass('sluice_meta') IS NOT NULL`).Scan(&exists); err != nil {
			return "", "", fmt.Errorf("control: read environment: %w", err)
		}
		if exists {
			err := pool.QueryRow(ctx, `SELECT value FROM sluice_meta WHERE key = 'env'`).Scan(&db)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return "", "", fmt.Errorf("control: read environment: %w", err)
			}
		}
	}
	if js != nil {
		kv, err := js.KeyValue(ctx, Bucket)
		switch {
		case errors.Is(err, jetstream.ErrBucketNotFound):
		case err != nil:
			return db, "", fmt.Errorf("control: open bucket %s: %w", Bucket, err)
		default:
			if nats, err = kvEnv(ctx, kv); err != nil {
				return db, "", err
			}
		}
	}
	return db, nats, nil
}

// RefuseProduction is the fence of tools that write test data (sluice
// loadtest, test helpers): it returns an error wrapping ErrProduction if the
// database or NATS say they belong to production, unless override (an
// explicit flag such as --allow-production) is set. pool or js may be nil.
func RefuseProduction(ctx context.Context, js jetstream.JetStream, pool *pgxpool.Pool, override bool) error {
	db, nats, err := RecordedEnv(ctx, js, pool)
	if err != nil {
		return err
	}
	if override || (db != EnvProduction && nats != EnvProduction) {
		return nil
	}
	where := "the database"
	if db != EnvProduction {
		where = "NATS"
	} else if nats == EnvProduction {
		where = "the database and NATS"
	}
	return fmt.Errorf("%w: %s say(s) environment %q; pass the explicit override flag if this is really intended", ErrProduction, where, EnvProduction)
}
