package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// TimeoutDefault bounds one webhook request.
const TimeoutDefault = 10 * time.Second

// sender posts signed batches to endpoints.
type sender struct {
	client  *http.Client
	timeout time.Duration
	m       *Metrics
	now     func() time.Time
}

// newSender returns a sender whose connections refuse internal addresses
// unless allowInternal.
func newSender(timeout time.Duration, allowInternal bool, m *Metrics) *sender {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	if !allowInternal {
		d.Control = dialControl
	}
	tr := &http.Transport{
		DialContext: d.DialContext, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 4,
		IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 5 * time.Second, ResponseHeaderTimeout: timeout,
	}
	return &sender{
		client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a redirect is a failure, never followed
		}},
		timeout: timeout, m: m, now: time.Now,
	}
}

// payload is a webhook's body, shaped as the Standard Webhooks
// specification suggests (type, timestamp, data).
type payload struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      batchData `json:"data"`
}

type batchData struct {
	Endpoint string  `json:"endpoint"`
	Replay   bool    `json:"replay,omitempty"`
	Events   []Event `json:"events"`
}

// PayloadType is the type of every webhook body: a batch of events.
const PayloadType = "sluice.events"

// body encodes a batch of events for endpoint.
func body(endpoint string, events []Event, replay bool, at time.Time) ([]byte, error) {
	return json.Marshal(payload{Type: PayloadType, Timestamp: at.UTC(), Data: batchData{Endpoint: endpoint, Replay: replay, Events: events}})
}

// errStatus is an endpoint's answer other than 2xx.
type errStatus struct{ code int }

func (e errStatus) Error() string { return fmt.Sprintf("webhook: endpoint answered %d", e.code) }

// send posts body to ep signed as message id, timestamped now. Any answer
// but a 2xx is an error.
func (s *sender) send(ctx context.Context, ep Endpoint, id string, data []byte) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	now := s.now()
	sig, err := Sign(ep.Secret, id, now, data)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sluice-webhooks")
	req.Header.Set(HeaderID, id)
	req.Header.Set(HeaderTimestamp, fmt.Sprint(now.Unix()))
	req.Header.Set(HeaderSignature, sig)
	resp, err := s.client.Do(req)
	s.m.latency.Observe(s.now().Sub(now).Seconds())
	if err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			err = errStatus{resp.StatusCode}
		}
	}
	if err != nil {
		s.m.requests.WithLabelValues("failed").Inc()
		return err
	}
	s.m.requests.WithLabelValues("ok").Inc()
	return nil
}

// backoff is the delay before retry n (1, 2, ...): base doubled per retry,
// capped at max.
func backoff(n int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

var errLeaseLost = errors.New("webhook: lease lost")
