package control

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// watch delivers the keys matching pattern to fn, from one goroutine: first
// the current value of each key that is set, then every change. A deleted or
// purged key is delivered with deleted true and k's default. synced, if not
// nil, is called once, after the current values (possibly none) were
// delivered. A value that cannot be decoded or fails k's check is logged and
// skipped. watch returns nil when ctx ends, or an error if the watcher cannot
// start or its subscription ends first.
func watch[T any](ctx context.Context, s *Store, k kind[T], pattern string, fn func(key string, st Setting[T], deleted bool), synced func()) error {
	w, err := s.kv.Watch(ctx, pattern)
	if err != nil {
		return fmt.Errorf("control: watch %s: %w", pattern, err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("%w: %s", ErrWatchClosed, pattern)
			case e == nil: // the current values are all delivered
				if synced != nil {
					synced()
					synced = nil
				}
			case e.Operation() != jetstream.KeyValuePut:
				fn(e.Key(), Setting[T]{Value: k.def, Revision: e.Revision()}, true)
			default:
				st, err := decode(k, e)
				if err != nil {
					s.log.Error("control: skipping a value that cannot be applied", "key", e.Key(), "revision", e.Revision(), "err", err)
					continue
				}
				fn(e.Key(), st, false)
			}
		}
	}
}

// watchOne watches a single key: fn gets its current value (k's default if
// it is not set) at once, then every change, including deletion (back to the
// default).
func watchOne[T any](ctx context.Context, s *Store, k kind[T], key string, fn func(Setting[T])) error {
	seen := false
	return watch(ctx, s, k, key, func(_ string, st Setting[T], _ bool) {
		seen = true
		fn(st)
	}, func() {
		if !seen {
			fn(Setting[T]{Value: k.def})
		}
	})
}
