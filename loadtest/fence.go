package loadtest

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/orchestrator/control"
)

// ErrProduction is matched (errors.Is) by the error of a run refused because
// its target is production and AllowProduction is not set. It is the control
// plane's fence sentinel, shared with every tool that writes test data.
var ErrProduction = control.ErrProduction

// checkFence refuses a production target unless allow. The environment is
// production if configured (SLUICE_ENV, Config.Env) says so, or if the
// target's database (table sluice_meta) or NATS (key env of the control
// bucket) records it (control.RefuseProduction). js and pool may be nil
// (the self-contained stack has nothing recorded yet). It returns the
// environment it found, for the report.
func checkFence(ctx context.Context, configured string, js jetstream.JetStream, pool *pgxpool.Pool, allow bool) (string, error) {
	env := strings.TrimSpace(configured)
	db, kv, err := control.RecordedEnv(ctx, js, pool)
	if err != nil {
		return env, fmt.Errorf("loadtest: environment fence: %w", err)
	}
	for _, recorded := range []string{db, kv} {
		if recorded != "" && (env == "" || recorded == control.EnvProduction) {
			env = recorded
		}
	}
	if allow {
		return env, nil
	}
	if strings.EqualFold(configured, control.EnvProduction) {
		return env, fmt.Errorf("loadtest: %w: SLUICE_ENV (--env) is %q; pass --allow-production if this is really intended", ErrProduction, configured)
	}
	if err := control.RefuseProduction(ctx, js, pool, false); err != nil {
		return env, fmt.Errorf("loadtest: %w", err)
	}
	return env, nil
}
