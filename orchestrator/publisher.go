package orchestrator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sluicehq/sluice/wire"
)

// StallWait is how long PublishAsync waits for room in a full window of
// pending publishes (the server acknowledging slowly: a loaded machine, a
// stream leader election) before it fails.
const StallWait = 30 * time.Second

// Publisher publishes activations with asynchronous JetStream publishing and
// a bounded window of unacknowledged publishes.
type Publisher struct {
	js jetstream.JetStream
	// window is the streams' duplicate window: a retry is sent only while
	// the stream would still recognise it as the same message.
	window time.Duration
}

// NewPublisher returns a Publisher over js for streams whose duplicate
// window is window (0: DefaultDuplicateWindow). Bound the window of pending
// publishes when creating js with jetstream.WithPublishAsyncMaxPending.
func NewPublisher(js jetstream.JetStream, window time.Duration) *Publisher {
	return &Publisher{js: js, window: cmp.Or(window, DefaultDuplicateWindow)}
}

// PublishAsync encodes a and publishes it with its ID as Nats-Msg-Id, so a
// retried publish within the stream's duplicate window is stored once. It
// blocks only while the window of pending publishes is full, for at most
// StallWait; then it fails.
func (p *Publisher) PublishAsync(a *wire.Activation) (jetstream.PubAckFuture, error) {
	data, err := wire.Encode(a)
	if err != nil {
		return nil, fmt.Errorf("orchestrator: encode activation: %w", err)
	}
	msg := &nats.Msg{Subject: a.Subject(), Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, a.ID)
	f, err := p.js.PublishMsgAsync(msg, jetstream.WithStallWait(StallWait))
	if err != nil {
		return nil, fmt.Errorf("orchestrator: publish: %w", err)
	}
	return f, nil
}

// Await waits for the acknowledgement of an asynchronous publish sent at
// sent. A publish that fails or is not acknowledged within timeout is
// retried synchronously, twice, with the same message and Nats-Msg-Id, so
// the stream stores it once; an error of the stream itself (an API error
// such as a full stream) is not retried. A retry is sent only if it would
// end, acknowledged or given up, within the duplicate window of sent:
// later, the stream could store it a second time, so the publish fails
// with ErrBeyondWindow instead (it may or may not have been stored).
func (p *Publisher) Await(ctx context.Context, fut jetstream.PubAckFuture, sent time.Time, timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var err error
	select {
	case <-fut.Ok():
		return nil
	case err = <-fut.Err():
	case <-timer.C:
		err = errors.New("no acknowledgement within " + timeout.String())
	}
	for attempt := 0; attempt < 2 && retryable(err); attempt++ {
		if time.Since(sent)+timeout > p.window {
			return fmt.Errorf("%w (%v): %w", ErrBeyondWindow, p.window, err)
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		_, err = p.js.PublishMsg(pctx, fut.Msg())
		cancel()
		if err == nil {
			return nil
		}
	}
	return err
}

// ErrBeyondWindow is returned by Await for a publish that was not
// acknowledged and could not be retried within the streams' duplicate
// window: whether the stream stored it is unknown.
var ErrBeyondWindow = errors.New("orchestrator: publish not acknowledged, and a retry would fall outside the duplicate window")

// retryable tells a failure of the way (a timeout, a lost connection, no
// responders during an election) from the stream's refusal.
func retryable(err error) bool {
	var apiErr *jetstream.APIError
	return err != nil && !errors.As(err, &apiErr)
}

// Wait waits until every pending asynchronous publish is acknowledged or ctx
// ends.
func (p *Publisher) Wait(ctx context.Context) error {
	select {
	case <-p.js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("orchestrator: %d publishes still pending: %w", p.js.PublishAsyncPending(), ctx.Err())
	}
}

// Publish publishes a and waits for the stream's acknowledgement.
func (p *Publisher) Publish(ctx context.Context, a *wire.Activation) error {
	data, err := wire.Encode(a)
	if err != nil {
		return fmt.Errorf("orchestrator: encode activation: %w", err)
	}
	if _, err := p.js.Publish(ctx, a.Subject(), data, jetstream.WithMsgID(a.ID)); err != nil {
		return fmt.Errorf("orchestrator: publish: %w", err)
	}
	return nil
}
