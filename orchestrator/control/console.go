package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// KeySessionKey holds the key that signs the console's session cookies, a
// Setting[string] of 64 hex digits: one per deployment, so that every API
// node accepts the sessions of the others. Whoever may read the control
// bucket may forge a session (and may change every switch anyway). Delete
// the key and restart the API nodes to rotate it, which signs everyone out.
const KeySessionKey = "console.session_key"

// sessionKeyBytes is the length of the session key.
const sessionKeyBytes = 32

// SessionKey returns the deployment's console session key, creating it at
// the first call of the first node (the first writer wins; the others read
// its key).
func (s *Store) SessionKey(ctx context.Context) ([]byte, error) {
	for range 3 {
		e, err := s.kv.Get(ctx, KeySessionKey)
		if err == nil {
			var st Setting[string]
			if err := json.Unmarshal(e.Value(), &st); err != nil {
				return nil, fmt.Errorf("control: %s: %w", KeySessionKey, err)
			}
			key, err := hex.DecodeString(st.Value)
			if err != nil || len(key) < sessionKeyBytes {
				return nil, fmt.Errorf("control: %s is not %d hex bytes; delete it to have a new one made", KeySessionKey, sessionKeyBytes)
			}
			return key, nil
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, fmt.Errorf("control: get %s: %w", KeySessionKey, err)
		}
		key := make([]byte, sessionKeyBytes)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		data, err := json.Marshal(Setting[string]{Value: hex.EncodeToString(key), By: "console", At: s.now().UTC().Truncate(time.Microsecond)})
		if err != nil {
			return nil, err
		}
		if _, err := s.kv.Create(ctx, KeySessionKey, data); err == nil {
			s.log.Info("control: created the console's session key")
			return key, nil
		} else if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("control: create %s: %w", KeySessionKey, err)
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrConflict, KeySessionKey)
}
