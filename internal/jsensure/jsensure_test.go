package jsensure

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/natstest"
)

func setup(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc, _ := natstest.Start(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func streamCfg() jetstream.StreamConfig {
	return jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, MaxBytes: 1 << 20, Duplicates: time.Minute, Discard: jetstream.DiscardNew}
}

func TestStreamCreatesThenUpdates(t *testing.T) {
	t.Parallel()
	js := setup(t)
	ctx := t.Context()
	if _, err := Stream(ctx, js, streamCfg(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "s.a", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	want := streamCfg()
	want.MaxBytes, want.Duplicates = 2<<20, 2*time.Minute
	s, err := Stream(ctx, js, want, nil)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxBytes != 2<<20 || info.Config.Duplicates != 2*time.Minute || info.State.Msgs != 1 {
		t.Errorf("after update: max_bytes %d, duplicates %v, msgs %d; want 2 MiB, 2m, the message kept", info.Config.MaxBytes, info.Config.Duplicates, info.State.Msgs)
	}
	// Asking a single server for three replicas is refused, naming the change.
	want.Replicas = 3
	if _, err := Stream(ctx, js, want, nil); err == nil || !strings.Contains(err.Error(), "replicas 1 -> 3") {
		t.Errorf("replicas 3 on one server: %v, want an error naming replicas 1 -> 3", err)
	}
}

func TestStreamRefusesWhatCannotChange(t *testing.T) {
	t.Parallel()
	js := setup(t)
	ctx := t.Context()
	if _, err := Stream(ctx, js, streamCfg(), nil); err != nil {
		t.Fatal(err)
	}
	for field, mutate := range map[string]func(*jetstream.StreamConfig){
		"storage":   func(c *jetstream.StreamConfig) { c.Storage = jetstream.MemoryStorage },
		"retention": func(c *jetstream.StreamConfig) { c.Retention = jetstream.LimitsPolicy },
	} {
		want := streamCfg()
		mutate(&want)
		_, err := Stream(ctx, js, want, nil)
		if !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), field) || !strings.Contains(err.Error(), "stream S") {
			t.Errorf("%s differs: %v, want ErrIncompatible naming stream S and %s", field, err, field)
		}
	}
}

func TestKeyValueCreatesUpdatesRefuses(t *testing.T) {
	t.Parallel()
	js := setup(t)
	ctx := t.Context()
	cfg := jetstream.KeyValueConfig{Bucket: "b", History: 1, Storage: jetstream.FileStorage}
	kv, err := KeyValue(ctx, js, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	cfg.History = 5
	if kv, err = KeyValue(ctx, js, cfg, nil); err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.History() != 5 {
		t.Errorf("history %d after update, want 5", st.History())
	}
	if e, err := kv.Get(ctx, "k"); err != nil || string(e.Value()) != "v" {
		t.Errorf("value after update: %v, want v kept", err)
	}
	cfg.Storage = jetstream.MemoryStorage
	if _, err := KeyValue(ctx, js, cfg, nil); !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), "bucket b has storage") {
		t.Errorf("storage differs: %v, want ErrIncompatible naming bucket b's storage", err)
	}
}
