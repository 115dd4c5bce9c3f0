package sink

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/dispatch/push"
)

// FCMConfig configures [StartFCM].
type FCMConfig struct {
	// Addr is the listen address, on loopback. Default "127.0.0.1:0".
	Addr string
	// ProjectID is the only project the sink serves. Default "sluice-dev".
	ProjectID string
	// Reject returns the FCM error code a token is refused with:
	// "UNREGISTERED" (404), "INVALID_ARGUMENT" (400, about message.token) or
	// "SENDER_ID_MISMATCH" (403). Default: tokens starting with "reject" are
	// UNREGISTERED, tokens starting with "invalid" INVALID_ARGUMENT.
	Reject func(token string) (code string, ok bool)
}

// FCMServer is a local HTTP server in the shape of the FCM HTTP v1 API and
// of Google's OAuth2 token endpoint. It issues its own service account
// ([FCMServer.CredentialsJSON]); POST /token grants access tokens for JWT
// assertions signed with that account's key (RS256, aud the token URL,
// scope firebase.messaging), and POST /v1/projects/{project}/messages:send
// requires one. Its [Ledger] is keyed by the Idempotency-Key header (else
// the message name).
type FCMServer struct {
	*httpSink
	cfg    FCMConfig
	key    *rsa.PrivateKey
	keyID  string
	email  string
	mu     sync.Mutex
	tokens map[string]time.Time // access token -> expiry
}

// StartFCM starts an FCM-shaped sink.
func StartFCM(cfg FCMConfig) (*FCMServer, error) {
	if cfg.ProjectID == "" {
		cfg.ProjectID = "sluice-dev"
	}
	if cfg.Reject == nil {
		cfg.Reject = func(tok string) (string, bool) {
			switch {
			case strings.HasPrefix(tok, "reject"):
				return "UNREGISTERED", true
			case strings.HasPrefix(tok, "invalid"):
				return "INVALID_ARGUMENT", true
			}
			return "", false
		}
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	s := &FCMServer{
		cfg: cfg, key: key, keyID: randomHex(20),
		email:  "sluice-dev@" + cfg.ProjectID + ".iam.gserviceaccount.com",
		tokens: make(map[string]time.Time),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", s.token)
	mux.HandleFunc("POST /v1/projects/{project}/messages:send", s.send)
	if s.httpSink, err = startHTTPSink(cfg.Addr, mux, nil); err != nil {
		return nil, err
	}
	return s, nil
}

// TokenURL returns the sink's OAuth2 token endpoint.
func (s *FCMServer) TokenURL() string { return s.URL() + "/token" }

// CredentialsJSON returns a service account key file for the sink's own
// account, whose token_uri is the sink's token endpoint.
func (s *FCMServer) CredentialsJSON() []byte {
	der, _ := x509.MarshalPKCS8PrivateKey(s.key)
	b, _ := json.MarshalIndent(map[string]string{
		"type":           "service_account",
		"project_id":     s.cfg.ProjectID,
		"private_key_id": s.keyID,
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   s.email,
		"client_id":      "1",
		"token_uri":      s.TokenURL(),
	}, "", "  ")
	return b
}

// Config returns the configuration of a push.FCM provider that sends to
// this sink.
func (s *FCMServer) Config() push.FCMConfig {
	return push.FCMConfig{BaseURL: s.URL(), CredentialsJSON: s.CredentialsJSON()}
}

// TokensIssued returns how many access tokens the sink has granted.
func (s *FCMServer) TokensIssued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tokens)
}

func (s *FCMServer) token(w http.ResponseWriter, r *http.Request) {
	oauthErr := func(code, desc string) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": code, "error_description": desc})
	}
	if err := r.ParseForm(); err != nil {
		oauthErr("invalid_request", "bad form")
		return
	}
	if r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		oauthErr("unsupported_grant_type", "Invalid grant_type")
		return
	}
	verify := func(signed, sig []byte) bool {
		h := sha256.Sum256(signed)
		return rsa.VerifyPKCS1v15(&s.key.PublicKey, crypto.SHA256, h[:], sig) == nil
	}
	hdr, claims, err := parseJWT(r.PostForm.Get("assertion"), verify)
	now := time.Now()
	switch {
	case err != nil || claimString(hdr, "alg") != "RS256":
		oauthErr("invalid_grant", "Invalid JWT Signature.")
	case claimString(claims, "iss") != s.email:
		oauthErr("invalid_grant", "Invalid issuer")
	case claimString(claims, "aud") != s.TokenURL():
		oauthErr("invalid_grant", "Invalid JWT: audience")
	case !strings.Contains(" "+claimString(claims, "scope")+" ", " "+push.FCMScope+" "):
		oauthErr("invalid_scope", "Invalid OAuth scope")
	case !claimTime(claims, "exp").After(now) || claimTime(claims, "iat").After(now.Add(time.Minute)):
		oauthErr("invalid_grant", "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe")
	default:
		tok := "ya29.sluice-sink-" + randomHex(24)
		s.mu.Lock()
		s.tokens[tok] = now.Add(time.Hour)
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3599})
	}
}

func (s *FCMServer) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.tokens[tok]
	return ok && time.Now().Before(exp)
}

type fcmDetail struct {
	Type            string              `json:"@type"`
	ErrorCode       string              `json:"errorCode,omitempty"`
	FieldViolations []map[string]string `json:"fieldViolations,omitempty"`
}

func writeFCMError(w http.ResponseWriter, status int, statusText, msg, errorCode string, field string) {
	details := []fcmDetail{}
	if errorCode != "" {
		details = append(details, fcmDetail{Type: "type.googleapis.com/google.firebase.fcm.v1.FcmError", ErrorCode: errorCode})
	}
	if field != "" {
		details = append(details, fcmDetail{Type: "type.googleapis.com/google.rpc.BadRequest", FieldViolations: []map[string]string{{"field": field, "description": msg}}})
	}
	writeJSON(w, status, map[string]any{"error": map[string]any{"code": status, "message": msg, "status": statusText, "details": details}})
}

func (s *FCMServer) send(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		writeFCMError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "Request had invalid authentication credentials.", "", "")
		return
	}
	if r.PathValue("project") != s.cfg.ProjectID {
		writeFCMError(w, http.StatusNotFound, "NOT_FOUND", "Requested entity was not found.", "", "")
		return
	}
	v, f := s.faults.apply(r.Context())
	switch v {
	case gone:
		return
	case throttle:
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(f.RetryAfter)))
		writeFCMError(w, http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "Quota exceeded.", "QUOTA_EXCEEDED", "")
		return
	case fail:
		writeFCMError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE", "")
		return
	}
	var req struct {
		Message struct {
			Token        string `json:"token"`
			Notification struct {
				Title string `json:"title"`
				Body  string `json:"body"`
			} `json:"notification"`
		} `json:"message"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		writeFCMError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Invalid JSON payload received.", "INVALID_ARGUMENT", "")
		return
	}
	tok := req.Message.Token
	if tok == "" {
		writeFCMError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Recipient of the message is not set.", "INVALID_ARGUMENT", "message")
		return
	}
	if code, ok := s.cfg.Reject(tok); ok {
		switch code {
		case "UNREGISTERED":
			writeFCMError(w, http.StatusNotFound, "NOT_FOUND", "Requested entity was not found.", code, "")
		case "SENDER_ID_MISMATCH":
			writeFCMError(w, http.StatusForbidden, "PERMISSION_DENIED", "SenderId mismatch", code, "")
		default:
			writeFCMError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token", code, "message.token")
		}
		return
	}
	name := "projects/" + s.cfg.ProjectID + "/messages/0:" + strconv.FormatInt(time.Now().UnixNano(), 10) + "%" + randomHex(8)
	key := r.Header.Get(push.IdempotencyHeader)
	if key == "" {
		key = name
	}
	s.ledger.Add(&dispatch.Message{
		ID: key, Tenant: r.Header.Get(push.HeaderTenant), Conversation: r.Header.Get(push.HeaderConversation),
		Channel: dispatch.ChannelPush, To: tok, Subject: req.Message.Notification.Title, Body: req.Message.Notification.Body,
	})
	writeJSON(w, http.StatusOK, map[string]string{"name": name})
}
