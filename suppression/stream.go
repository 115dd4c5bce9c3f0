package suppression

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamName is the JetStream stream of suppression changes.
const StreamName = "SLUICE_SUPPRESSIONS"

// subjectPrefix starts every change's subject: sluice.suppress.<tenant>.
const subjectPrefix = "sluice.suppress."

// StreamMaxAge is how long a change is kept: longer than any worker's start
// (which loads the table and replays the changes published meanwhile).
const StreamMaxAge = 7 * 24 * time.Hour

// Subject is the subject of tenant's changes.
func Subject(tenant string) string { return subjectPrefix + tenant }

// Change operations.
const (
	opAdd    = "add"
	opRemove = "remove"
)

// change is one published change: a hash added to or removed from the
// list of the tenant its subject names.
type change struct {
	Op   string `json:"op"`
	Hash string `json:"hash"`
}

// EnsureStream creates the stream of changes if it is missing, with
// replicas (0: 1); an existing stream is used as it is.
func EnsureStream(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.Stream, error) {
	st, err := js.Stream(ctx, StreamName)
	if err == nil {
		return st, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("suppression: stream %s: %w", StreamName, err)
	}
	st, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        StreamName,
		Description: "sluice suppression changes (sluice.suppress.<tenant>): add and remove of hashed recipients",
		Subjects:    []string{subjectPrefix + "*"},
		MaxAge:      StreamMaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		st, err = js.Stream(ctx, StreamName)
	}
	if err != nil {
		return nil, fmt.Errorf("suppression: create stream %s: %w", StreamName, err)
	}
	return st, nil
}
