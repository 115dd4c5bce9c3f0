package push

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/dispatch/internal/httpc"
	"github.com/sluicehq/sluice/wire"
)

// FCMScope is the OAuth2 scope of the FCM send API.
const FCMScope = "https://www.googleapis.com/auth/firebase.messaging"

// IdempotencyHeader carries the message ID on FCM requests.
const IdempotencyHeader = "Idempotency-Key"

// Headers naming the tenant and conversation of a message, for proxies,
// logs and the sink's per-conversation counts; FCM ignores them.
const (
	HeaderTenant       = httpc.HeaderTenant
	HeaderConversation = httpc.HeaderConversation
)

// FCMConfig configures an [FCM] provider.
type FCMConfig struct {
	// BaseURL is the API root. Default "https://fcm.googleapis.com".
	BaseURL string
	// CredentialsJSON is the service account key file (JSON with
	// client_email, private_key, private_key_id, project_id, token_uri).
	// Required.
	CredentialsJSON []byte
	// ProjectID is the Firebase project. Default: the credentials'
	// project_id.
	ProjectID string
	// TokenURL is the OAuth2 token endpoint. Default: the credentials'
	// token_uri, else "https://oauth2.googleapis.com/token".
	TokenURL string
	// MaxConns bounds the connections open to the API. Default 16.
	MaxConns int
	// TLSConfig configures TLS to the API and the token endpoint. Default:
	// the system roots.
	TLSConfig *tls.Config
	// HTTPClient, when set, replaces the client built from MaxConns and
	// TLSConfig, for sends and token requests alike.
	HTTPClient *http.Client
	// ThrottleRetryAfter is the RetryAfter of a 429 without a usable
	// Retry-After header. Default 60s.
	ThrottleRetryAfter time.Duration
}

// serviceAccount is the part of a service account key file FCM needs.
type serviceAccount struct {
	Type         string `json:"type"`
	ProjectID    string `json:"project_id"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	ClientEmail  string `json:"client_email"`
	TokenURI     string `json:"token_uri"`
}

// FCM sends push notifications through the FCM HTTP v1 API:
// POST {BaseURL}/v1/projects/{ProjectID}/messages:send with an OAuth2
// access token obtained with the service account (JWT bearer grant). It is
// safe for concurrent use.
type FCM struct {
	cfg      FCMConfig
	endpoint string
	client   *http.Client
	tokens   *tokenSource
}

// NewFCM returns an FCM provider for cfg. It fetches no token until the
// first Send.
func NewFCM(cfg FCMConfig) (*FCM, error) {
	if len(cfg.CredentialsJSON) == 0 {
		return nil, errors.New("push: FCMConfig.CredentialsJSON is required")
	}
	var sa serviceAccount
	if err := json.Unmarshal(cfg.CredentialsJSON, &sa); err != nil {
		return nil, fmt.Errorf("push: FCMConfig.CredentialsJSON: %w", err)
	}
	if sa.ClientEmail == "" || sa.PrivateKey == "" {
		return nil, errors.New("push: FCMConfig.CredentialsJSON: client_email and private_key are required")
	}
	if cfg.ProjectID == "" {
		cfg.ProjectID = sa.ProjectID
	}
	if cfg.ProjectID == "" || strings.ContainsAny(cfg.ProjectID, "/?#%") {
		return nil, fmt.Errorf("push: FCMConfig.ProjectID %q: required (or project_id in the credentials), without / ? # %%", cfg.ProjectID)
	}
	if cfg.TokenURL == "" {
		cfg.TokenURL = sa.TokenURI
	}
	if cfg.TokenURL == "" {
		cfg.TokenURL = "https://oauth2.googleapis.com/token"
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = "https://fcm.googleapis.com"
	}
	for name, v := range map[string]string{"BaseURL": cfg.BaseURL, "TokenURL": cfg.TokenURL} {
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("push: FCMConfig.%s %q: want an http or https URL", name, v)
		}
	}
	if cfg.MaxConns < 0 || cfg.ThrottleRetryAfter < 0 {
		return nil, errors.New("push: FCMConfig.MaxConns and ThrottleRetryAfter must not be negative")
	}
	if cfg.ThrottleRetryAfter == 0 {
		cfg.ThrottleRetryAfter = time.Minute
	}
	client := httpc.Client(cfg.HTTPClient, cfg.MaxConns, cfg.TLSConfig)
	return &FCM{
		cfg:      cfg,
		endpoint: strings.TrimRight(cfg.BaseURL, "/") + "/v1/projects/" + cfg.ProjectID + "/messages:send",
		client:   client,
		tokens: &tokenSource{
			conf: &jwt.Config{
				Email:        sa.ClientEmail,
				PrivateKey:   []byte(sa.PrivateKey),
				PrivateKeyID: sa.PrivateKeyID,
				Scopes:       []string{FCMScope},
				TokenURL:     cfg.TokenURL,
			},
			client: client,
			lock:   make(chan struct{}, 1),
		},
	}, nil
}

// Close closes idle connections.
func (f *FCM) Close() error {
	f.client.CloseIdleConnections()
	return nil
}

type fcmRequest struct {
	Message fcmMessage `json:"message"`
}

type fcmMessage struct {
	Token        string           `json:"token"`
	Notification *fcmNotification `json:"notification,omitempty"`
}

type fcmNotification struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body,omitempty"`
}

// Send sends m as a notification with m.Subject as title and m.Body as
// body (or their defaults).
func (f *FCM) Send(ctx context.Context, m *dispatch.Message) error {
	tok, err := f.tokens.token(ctx)
	if err != nil {
		return err
	}
	body, err := json.Marshal(fcmRequest{Message: fcmMessage{
		Token:        m.To,
		Notification: &fcmNotification{Title: m.SubjectOrDefault(), Body: m.BodyOrDefault()},
	}})
	if err != nil {
		return fmt.Errorf("push: fcm: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("push: fcm: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	httpc.SetIdentity(req.Header, IdempotencyHeader, m.ID, m.Tenant, m.Conversation)
	resp, err := f.client.Do(req)
	if err != nil {
		return fmt.Errorf("push: fcm send: %w", httpc.UnwrapURL(err))
	}
	rb := httpc.ReadBody(resp, 64<<10)
	if resp.StatusCode/100 == 2 {
		return nil
	}
	if resp.StatusCode == http.StatusUnauthorized {
		f.tokens.invalidate(tok)
	}
	return f.classify(resp, rb)
}

type fcmError struct {
	Error struct {
		Code    int    `json:"code"`
		Status  string `json:"status"`
		Details []struct {
			Type            string `json:"@type"`
			ErrorCode       string `json:"errorCode"`
			FieldViolations []struct {
				Field string `json:"field"`
			} `json:"fieldViolations"`
		} `json:"details"`
	} `json:"error"`
}

func (f *FCM) classify(resp *http.Response, body []byte) error {
	var fe fcmError
	json.Unmarshal(body, &fe)
	code, tokenField := fe.Error.Status, false
	for _, d := range fe.Error.Details {
		if d.ErrorCode != "" {
			code = d.ErrorCode
		}
		for _, v := range d.FieldViolations {
			if v.Field == "message.token" {
				tokenField = true
			}
		}
	}
	detail := fmt.Sprintf("fcm HTTP %d %s", resp.StatusCode, code)
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || code == "QUOTA_EXCEEDED":
		return &dispatch.UnavailableError{
			RetryAfter: dispatch.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now(), f.cfg.ThrottleRetryAfter),
			Cause:      errors.New("push: " + detail),
		}
	case resp.StatusCode >= 500:
		return errors.New("push: " + detail)
	case code == "UNREGISTERED":
		return &dispatch.RejectedError{Reason: wire.ReasonUnregistered, Detail: "fcm UNREGISTERED"}
	case code == "SENDER_ID_MISMATCH":
		return &dispatch.RejectedError{Reason: wire.ReasonBadToken, Detail: "fcm SENDER_ID_MISMATCH"}
	case code == "INVALID_ARGUMENT" && tokenField:
		return &dispatch.RejectedError{Reason: wire.ReasonBadToken, Detail: "fcm INVALID_ARGUMENT message.token"}
	case code == "INVALID_ARGUMENT":
		return &dispatch.RejectedError{Reason: wire.ReasonContentRejected, Detail: "fcm INVALID_ARGUMENT"}
	}
	return errors.New("push: " + detail)
}

// tokenSource caches the OAuth2 access token, fetching a new one under a
// lock that waits no longer than the caller's context.
type tokenSource struct {
	conf   *jwt.Config
	client *http.Client
	lock   chan struct{}

	mu  sync.Mutex
	tok *oauth2.Token
}

func (s *tokenSource) cached() *oauth2.Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tok
}

func (s *tokenSource) token(ctx context.Context) (string, error) {
	if t := s.cached(); t.Valid() {
		return t.AccessToken, nil
	}
	select {
	case s.lock <- struct{}{}:
	case <-ctx.Done():
		return "", fmt.Errorf("push: fcm token: %w", ctx.Err())
	}
	defer func() { <-s.lock }()
	if t := s.cached(); t.Valid() {
		return t.AccessToken, nil
	}
	t, err := s.conf.TokenSource(context.WithValue(ctx, oauth2.HTTPClient, s.client)).Token()
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return "", fmt.Errorf("push: fcm token: %w", cerr)
		}
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return "", fmt.Errorf("push: fcm token endpoint: HTTP %d %s", re.Response.StatusCode, re.ErrorCode)
		}
		return "", fmt.Errorf("push: fcm token: %w", httpc.UnwrapURL(err))
	}
	s.mu.Lock()
	s.tok = t
	s.mu.Unlock()
	return t.AccessToken, nil
}

// invalidate drops tok if it is still the cached token, so that the next
// send fetches a new one.
func (s *tokenSource) invalidate(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok != nil && s.tok.AccessToken == tok {
		s.tok = nil
	}
}
