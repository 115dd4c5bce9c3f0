package loadtest

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/orchestrator/control"
)

// ErrProduction is returned when the target's environment is production and
// AllowProduction is not set.
var ErrProduction = errors.New("loadtest: target environment is production (use AllowProduction / --allow-production to override)")

// EnvKey is the control bucket's key holding the deployment's environment
// name, when the deployment records it.
const EnvKey = "env"

// checkFence refuses a production target. configured is SLUICE_ENV as the
// run sees it; js, if not nil, is the target, whose control bucket may hold
// its environment under EnvKey.
func checkFence(ctx context.Context, configured string, js jetstream.JetStream, allow bool) (string, error) {
	env := strings.TrimSpace(configured)
	if js != nil {
		if kv, err := js.KeyValue(ctx, control.Bucket); err == nil {
			if e, err := kv.Get(ctx, EnvKey); err == nil {
				stored := strings.Trim(strings.TrimSpace(string(e.Value())), `"`)
				if isProduction(stored) || env == "" {
					env = stored
				}
			} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
				return env, fmt.Errorf("loadtest: read the target's environment (%s %s): %w", control.Bucket, EnvKey, err)
			}
		} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
			return env, fmt.Errorf("loadtest: open the target's control bucket: %w", err)
		}
	}
	if isProduction(env) && !allow {
		return env, ErrProduction
	}
	return env, nil
}

func isProduction(env string) bool {
	e := strings.ToLower(env)
	return e == "production" || e == "prod"
}
