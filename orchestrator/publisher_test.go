package orchestrator_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/natstest"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/wire"
)

// silentFuture is a publish whose acknowledgement never comes: the stream
// may or may not have stored it.
type silentFuture struct{ msg *nats.Msg }

func (f silentFuture) Ok() <-chan *jetstream.PubAck { return nil }
func (f silentFuture) Err() <-chan error            { return nil }
func (f silentFuture) Msg() *nats.Msg               { return f.msg }

// TestAwaitRetriesOnlyWithinTheDuplicateWindow: an unacknowledged publish is
// retried, and stored once, while the retry ends within the streams'
// duplicate window of the first publish; later, Await sends nothing and
// fails with ErrBeyondWindow, since the stream would no longer recognise the
// retry as the message it may already hold.
func TestAwaitRetriesOnlyWithinTheDuplicateWindow(t *testing.T) {
	t.Parallel()
	_, url := natstest.Start(t)
	_, js := connect(t, url)
	ctx := context.Background()
	const window, timeout = 2 * time.Second, 200 * time.Millisecond
	streams, err := orchestrator.EnsureStreams(ctx, js, orchestrator.StreamConfig{DuplicateWindow: window})
	if err != nil {
		t.Fatal(err)
	}
	if info, err := streams.Bulk.Info(ctx); err != nil || info.Config.Duplicates != window {
		t.Fatalf("bulk stream duplicates window: %v, %v; want %v", info, err, window)
	}
	pub := orchestrator.NewPublisher(js, window)
	message := func(id string) *nats.Msg {
		a := &wire.Activation{ID: id, Tenant: "acme", Conversation: "c", Lane: wire.LaneBulk,
			Channel: "email", To: "a@example.com", EnqueuedAt: time.Now()}
		data, err := wire.Encode(a)
		if err != nil {
			t.Fatal(err)
		}
		m := &nats.Msg{Subject: a.Subject(), Data: data, Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, id)
		return m
	}
	stored := func() uint64 {
		t.Helper()
		info, err := streams.Bulk.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}

	// Stored, acknowledgement lost, just sent: the retry is sent and the
	// stream keeps one copy.
	first := message("a1")
	if _, err := js.PublishMsg(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := pub.Await(ctx, silentFuture{first}, time.Now(), timeout); err != nil {
		t.Fatalf("retry within the window: %v", err)
	}
	if n := stored(); n != 1 {
		t.Fatalf("after a retry of a stored publish the stream holds %d messages, want 1", n)
	}

	// Not stored, just sent: the retry stores it.
	if err := pub.Await(ctx, silentFuture{message("a2")}, time.Now(), timeout); err != nil {
		t.Fatalf("retry within the window: %v", err)
	}
	if n := stored(); n != 2 {
		t.Fatalf("after a retry of a lost publish the stream holds %d messages, want 2", n)
	}

	// Sent so long ago that a retry would end past the window: nothing is
	// sent again.
	late := time.Now().Add(-window + timeout)
	err = pub.Await(ctx, silentFuture{message("a3")}, late, timeout)
	if !errors.Is(err, orchestrator.ErrBeyondWindow) {
		t.Fatalf("Await of a publish sent %v ago: %v, want ErrBeyondWindow", window-timeout, err)
	}
	if n := stored(); n != 2 {
		t.Fatalf("a publish beyond the window was retried: the stream holds %d messages, want 2", n)
	}
}
