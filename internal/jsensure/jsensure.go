package jsensure

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrIncompatible is returned when an existing stream or bucket differs from
// what the process expects in a way JetStream cannot change in place.
var ErrIncompatible = errors.New("jsensure: existing stream is incompatible")

// Stream creates the stream want describes, or compares the existing one
// with it: fields that can change in place are updated (and logged), a
// difference in retention or storage is refused with ErrIncompatible.
// logger may be nil.
func Stream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig, logger *slog.Logger) (jetstream.Stream, error) {
	want.Replicas = max(want.Replicas, 1)
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, want)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = js.Stream(ctx, want.Name) // created meanwhile by another process
		} else if err == nil {
			return s, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", want.Name, err)
	}
	changes, err := compare("stream "+want.Name, s.CachedInfo().Config, want)
	if err != nil || len(changes) == 0 {
		return s, err
	}
	if s, err = js.UpdateStream(ctx, want); err != nil {
		return nil, fmt.Errorf("stream %s: update %s: %w", want.Name, strings.Join(changes, ", "), err)
	}
	logOf(logger).Warn("jetstream stream reconfigured", "stream", want.Name, "changes", strings.Join(changes, ", "))
	if err := waitPeers(ctx, js, want.Name, want.Replicas); err != nil {
		return nil, err
	}
	return s, nil
}

// KeyValue opens the bucket want describes, creating it when missing, and
// brings an existing one to want like Stream does (history, replicas and
// description change in place; storage cannot). logger may be nil.
func KeyValue(ctx context.Context, js jetstream.JetStream, want jetstream.KeyValueConfig, logger *slog.Logger) (jetstream.KeyValue, error) {
	want.Replicas = max(want.Replicas, 1)
	kv, err := js.KeyValue(ctx, want.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, want)
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, want.Bucket) // created meanwhile by another process
		} else if err == nil {
			return kv, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", want.Bucket, err)
	}
	name := "KV_" + want.Bucket
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", want.Bucket, err)
	}
	have := s.CachedInfo().Config
	changes, err := compare("bucket "+want.Bucket, have, jetstream.StreamConfig{
		Name: name, Description: want.Description, Retention: have.Retention, Discard: have.Discard, Storage: want.Storage,
		Replicas: want.Replicas, MaxMsgsPerSubject: max(int64(want.History), 1), MaxBytes: want.MaxBytes,
	})
	if err != nil || len(changes) == 0 {
		return kv, err
	}
	if kv, err = js.UpdateKeyValue(ctx, want); err != nil {
		return nil, fmt.Errorf("bucket %s: update %s: %w", want.Bucket, strings.Join(changes, ", "), err)
	}
	logOf(logger).Warn("jetstream bucket reconfigured", "bucket", want.Bucket, "changes", strings.Join(changes, ", "))
	if err := waitPeers(ctx, js, name, want.Replicas); err != nil {
		return nil, err
	}
	return kv, nil
}

// ScaleTimeout bounds the wait, after a change of replicas, for the stream's
// new peer group to have a leader and every replica.
const ScaleTimeout = 30 * time.Second

// waitPeers waits, after an update, until the stream has a leader and
// replicas-1 followers, so that the first write after a scale-up does not
// time out while the new peer group forms.
func waitPeers(ctx context.Context, js jetstream.JetStream, name string, replicas int) error {
	ctx, cancel := context.WithTimeout(ctx, ScaleTimeout)
	defer cancel()
	var last string
	for {
		s, err := js.Stream(ctx, name)
		if err == nil {
			c := s.CachedInfo().Cluster
			if replicas <= 1 || c == nil || (c.Leader != "" && len(c.Replicas) == replicas-1) {
				return nil
			}
			last = fmt.Sprintf("leader %q, %d followers", c.Leader, len(c.Replicas))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stream %s: no leader with %d replicas after the update (%s): %w", name, replicas, last, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// compare lists the fields of have that differ from want and can be updated
// ("replicas 1 -> 3"), or refuses a difference that cannot be. Zero values in
// want (other than replicas) mean "the server's default" and are not compared.
func compare(what string, have, want jetstream.StreamConfig) ([]string, error) {
	if have.Retention != want.Retention {
		return nil, fmt.Errorf("%w: %s has retention %s, this process expects %s; JetStream cannot change it in place: "+
			"drain and delete the stream (or start this process with the configuration that created it)", ErrIncompatible, what, have.Retention, want.Retention)
	}
	if have.Storage != want.Storage {
		return nil, fmt.Errorf("%w: %s has storage %s, this process expects %s; JetStream cannot change it in place: "+
			"drain and delete the stream (or start this process with the configuration that created it)", ErrIncompatible, what, have.Storage, want.Storage)
	}
	var changes []string
	diff := func(field string, h, w any, set bool) {
		if set && h != w {
			changes = append(changes, fmt.Sprintf("%s %v -> %v", field, h, w))
		}
	}
	diff("replicas", have.Replicas, want.Replicas, true)
	diff("max_bytes", have.MaxBytes, want.MaxBytes, want.MaxBytes != 0)
	diff("duplicate_window", have.Duplicates, want.Duplicates, want.Duplicates != 0)
	diff("max_msg_size", have.MaxMsgSize, want.MaxMsgSize, want.MaxMsgSize != 0)
	diff("max_msgs_per_subject", have.MaxMsgsPerSubject, want.MaxMsgsPerSubject, want.MaxMsgsPerSubject != 0)
	diff("discard", have.Discard, want.Discard, true)
	diff("description", have.Description, want.Description, want.Description != "")
	if want.Subjects != nil && !slices.Equal(have.Subjects, want.Subjects) {
		changes = append(changes, fmt.Sprintf("subjects %v -> %v", have.Subjects, want.Subjects))
	}
	return changes, nil
}

func logOf(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
