// Package sms sends SMS through an HTTP API in the shape of Twilio's
// Messages API: a form POST to
//
//	{BaseURL}/2010-04-01/Accounts/{AccountSID}/Messages.json
//
// with the fields To, From (or MessagingServiceSid) and Body, and HTTP basic
// authentication with the account SID and auth token.
//
// # Outcomes
//
//   - 2xx: accepted;
//   - 4xx with a Twilio error code that condemns the recipient or body:
//     [dispatch.RejectedError] — 21211 invalid 'To' number (invalid_number),
//     21614 not a mobile number (not_mobile), 21610 recipient unsubscribed
//     (unsubscribed), 21612 and 21408 unreachable from this account
//     (unreachable), 21602, 21617 and 21619 bad body (content_rejected);
//   - 429 (Twilio code 20429): [dispatch.UnavailableError] with RetryAfter
//     from the Retry-After header, else Config.ThrottleRetryAfter;
//   - 5xx, any other 4xx (authentication 20003, a bad From 21606, ...),
//     connection errors and timeouts: transient errors. Those that prove
//     the message was not created (a failed dial, a 5xx other than 504)
//     match dispatch.ErrNotSent, so a failover chain passes the message on
//     to the next account at once; a timeout after the request was
//     written, or a 504, leaves it in doubt. Other 4xx codes
//     are configuration or account problems that fixing the account cures,
//     so the message is kept and retried rather than terminated.
//
// # Idempotency
//
// The message ID is sent in the I-Twilio-Idempotency-Token header. Twilio
// documents that header on the webhook requests it makes to you; its
// Messages API does not deduplicate creates by it, so downstream of a real
// account the header serves proxies and logs, while the local sink keys its
// ledger on it. Error texts carry the Twilio code, never Twilio's message,
// which quotes the phone number.
package sms

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/dispatch/internal/httpc"
	"github.com/sluicehq/sluice/wire"
)

// IdempotencyHeader carries the message ID.
const IdempotencyHeader = "I-Twilio-Idempotency-Token"

// Headers naming the tenant and conversation of a message, for proxies,
// logs and the sink's per-conversation counts; Twilio ignores them.
const (
	HeaderTenant       = httpc.HeaderTenant
	HeaderConversation = httpc.HeaderConversation
)

// Config configures a [Provider].
type Config struct {
	// BaseURL is the API root. Default "https://api.twilio.com".
	BaseURL string
	// AccountSID and AuthToken authenticate (HTTP basic). Required.
	AccountSID, AuthToken string
	// From is the sending number or alphanumeric sender ID. One of From and
	// MessagingServiceSID is required; MessagingServiceSID wins if both are
	// set.
	From                string
	MessagingServiceSID string
	// MaxConns bounds the connections open to the API. Default 16.
	MaxConns int
	// TLSConfig configures TLS to the API. Default: the system roots.
	TLSConfig *tls.Config
	// HTTPClient, when set, replaces the client built from MaxConns and
	// TLSConfig.
	HTTPClient *http.Client
	// ThrottleRetryAfter is the RetryAfter of a 429 without a usable
	// Retry-After header. Default 1s.
	ThrottleRetryAfter time.Duration
}

func (c *Config) validate() error {
	switch {
	case c.AccountSID == "":
		return errors.New("sms: Config.AccountSID is required")
	case strings.ContainsAny(c.AccountSID, "/?#%"):
		return fmt.Errorf("sms: Config.AccountSID %q: not a valid SID", c.AccountSID)
	case c.AuthToken == "":
		return errors.New("sms: Config.AuthToken is required")
	case c.From == "" && c.MessagingServiceSID == "":
		return errors.New("sms: one of Config.From and Config.MessagingServiceSID is required")
	case c.MaxConns < 0:
		return errors.New("sms: Config.MaxConns must not be negative")
	case c.ThrottleRetryAfter < 0:
		return errors.New("sms: Config.ThrottleRetryAfter must not be negative")
	}
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("sms: Config.BaseURL %q: want an http or https URL", c.BaseURL)
		}
	}
	return nil
}

// Provider sends SMS through a Twilio-shaped API. It is safe for
// concurrent use.
type Provider struct {
	cfg      Config
	endpoint string
	client   *http.Client
}

// New returns a Provider for cfg.
func New(cfg Config) (*Provider, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = "https://api.twilio.com"
	}
	if cfg.ThrottleRetryAfter == 0 {
		cfg.ThrottleRetryAfter = time.Second
	}
	return &Provider{
		cfg:      cfg,
		endpoint: strings.TrimRight(cfg.BaseURL, "/") + "/2010-04-01/Accounts/" + cfg.AccountSID + "/Messages.json",
		client:   httpc.Client(cfg.HTTPClient, cfg.MaxConns, cfg.TLSConfig),
	}, nil
}

// Close closes idle connections.
func (p *Provider) Close() error {
	p.client.CloseIdleConnections()
	return nil
}

// Send posts m as one SMS to m.To with m.Body (or the default body).
func (p *Provider) Send(ctx context.Context, m *dispatch.Message) error {
	form := url.Values{"To": {m.To}, "Body": {m.BodyOrDefault()}}
	if p.cfg.MessagingServiceSID != "" {
		form.Set("MessagingServiceSid", p.cfg.MessagingServiceSID)
	} else {
		form.Set("From", p.cfg.From)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("sms: %w", err)
	}
	req.SetBasicAuth(p.cfg.AccountSID, p.cfg.AuthToken)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	httpc.SetIdentity(req.Header, IdempotencyHeader, m.ID, m.Tenant, m.Conversation)
	resp, err := p.client.Do(req)
	if err != nil {
		err = fmt.Errorf("sms: post message: %w", httpc.UnwrapURL(err))
		if httpc.DialFailed(err) {
			return dispatch.NotSent(err)
		}
		return err
	}
	body := httpc.ReadBody(resp, 64<<10)
	if resp.StatusCode/100 == 2 {
		return nil
	}
	var te struct {
		Code int `json:"code"`
	}
	json.Unmarshal(body, &te)
	detail := fmt.Sprintf("twilio HTTP %d error %d", resp.StatusCode, te.Code)
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || te.Code == 20429:
		return &dispatch.UnavailableError{
			RetryAfter: dispatch.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now(), p.cfg.ThrottleRetryAfter),
			Cause:      errors.New("sms: " + detail),
		}
	case resp.StatusCode == http.StatusGatewayTimeout:
		// A proxy gave up waiting: the API may have created the message.
		return errors.New("sms: " + detail)
	case resp.StatusCode >= 500:
		// The API answered that it did not create the message.
		return dispatch.NotSent(errors.New("sms: " + detail))
	}
	if reason, ok := rejections[te.Code]; ok {
		return &dispatch.RejectedError{Reason: reason, Detail: fmt.Sprintf("twilio error %d", te.Code)}
	}
	return errors.New("sms: " + detail)
}

// rejections are the Twilio error codes that condemn one message.
var rejections = map[int]wire.Reason{
	21211: wire.ReasonInvalidNumber,   // invalid 'To' phone number
	21614: wire.ReasonNotMobile,       // 'To' number is not a valid mobile number
	21610: wire.ReasonUnsubscribed,    // attempt to send to unsubscribed recipient
	21612: wire.ReasonUnreachable,     // 'To' number is not currently reachable
	21408: wire.ReasonUnreachable,     // permission to send to this region not enabled
	21602: wire.ReasonContentRejected, // message body is required
	21617: wire.ReasonContentRejected, // body exceeds the 1600 character limit
	21619: wire.ReasonContentRejected, // a text message body or media URL is required
}
