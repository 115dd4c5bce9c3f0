package control

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// RecordChange audits in control_audit a change made outside the control
// plane's buckets (a tenant's suppression list, changed through the API):
// key names what changed, actor the key that changed it; old and cur are
// stored as JSON (nil: NULL). Like every audit it outlives ctx, bounded by
// a few seconds. Without a pool it does nothing. A failure wraps ErrAudit.
func (s *Store) RecordChange(ctx context.Context, key, actor string, old, cur any) error {
	if s.pool == nil {
		return nil
	}
	var oldJSON, curJSON []byte // NULL
	var err error
	if old != nil {
		oldJSON, err = json.Marshal(old)
	}
	if err == nil && cur != nil {
		curJSON, err = json.Marshal(cur)
	}
	if err == nil {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
		defer cancel()
		_, err = s.pool.Exec(actx, `INSERT INTO control_audit (at, actor, key, old_value, new_value)
			VALUES ($1, $2, $3, $4, $5)`, time.Now().UTC(), actor, key, oldJSON, curJSON)
	}
	if err != nil {
		s.log.Error("change not audited", "key", key, "actor", actor, "err", err)
		return fmt.Errorf("%w: %s: %w", ErrAudit, key, err)
	}
	s.log.Info("change", "key", key, "actor", actor)
	return nil
}
