package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/wire"
)

// runSend implements `sluice send`: publish activations straight into the
// stream, for a first message against `make run` or a quick burst.
func runSend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("send", stderr)
	natsURL := fs.String("nats-url", env("SLUICE_NATS_URL", defaultNATSURL), "NATS server URL")
	lane := fs.String("lane", "transactional", "lane: transactional or bulk")
	tenant := fs.String("tenant", "demo", "tenant id")
	conv := fs.String("conversation", "hello", "conversation id")
	channel := fs.String("channel", "email", "channel: email, sms or push")
	to := fs.String("to", "", "recipient address (required; invalid ones are counted as invalid, which is a fine thing to try)")
	count := fs.Int("count", 1, "number of activations to publish, each with its own id")
	var vars kvFlag
	fs.Var(&vars, "var", "template variable name=value (repeatable)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if !wire.Lane(*lane).Valid() {
		return fmt.Errorf("send: --lane must be transactional or bulk, not %q", *lane)
	}
	if !wire.ValidToken(*tenant) || !wire.ValidToken(*conv) {
		return errors.New("send: --tenant and --conversation must be 1-64 of [A-Za-z0-9_-]")
	}
	if *count < 1 {
		return errors.New("send: --count must be at least 1")
	}
	nc, err := nats.Connect(*natsURL, nats.Name("sluice-send"))
	if err != nil {
		return fmt.Errorf("send: connect %s: %w (is 'make run' up?)", *natsURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1024))
	if err != nil {
		return err
	}
	pub := orchestrator.NewPublisher(js)
	prefix := randomHex(6)
	now := time.Now().UTC()
	futures := make([]jetstream.PubAckFuture, 0, min(*count, 1<<16))
	failed := 0
	for i := range *count {
		a := &wire.Activation{
			ID: fmt.Sprintf("send-%s-%d", prefix, i+1), Tenant: *tenant, Conversation: *conv,
			Lane: wire.Lane(*lane), Channel: *channel, To: *to, Vars: vars.m, EnqueuedAt: now,
		}
		f, err := pub.PublishAsync(a)
		if err != nil {
			return err
		}
		futures = append(futures, f)
		if len(futures) == cap(futures) {
			failed += awaitAll(ctx, futures)
			futures = futures[:0]
		}
	}
	failed += awaitAll(ctx, futures)
	subject := wire.Subject(wire.Lane(*lane), *tenant, *conv)
	fmt.Fprintf(stdout, "published %d activation(s) to %s (ids send-%s-1..%d)\n", *count-failed, subject, prefix, *count)
	if failed > 0 {
		return fmt.Errorf("send: %d publish(es) not acknowledged by the stream", failed)
	}
	return nil
}

// awaitAll waits for each publish acknowledgement and returns how many failed.
func awaitAll(ctx context.Context, fs []jetstream.PubAckFuture) int {
	failed := 0
	for _, f := range fs {
		select {
		case <-f.Ok():
		case <-f.Err():
			failed++
		case <-ctx.Done():
			return failed + 1
		}
	}
	return failed
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// kvFlag collects repeated name=value flags.
type kvFlag struct{ m map[string]string }

func (k *kvFlag) String() string { return fmt.Sprint(k.m) }

func (k *kvFlag) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("want name=value, got %q", s)
	}
	if k.m == nil {
		k.m = map[string]string{}
	}
	k.m[name] = value
	return nil
}
