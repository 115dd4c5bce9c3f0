package sink

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
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

// APNsConfig configures [StartAPNs].
type APNsConfig struct {
	// Addr is the listen address, on loopback. Default "127.0.0.1:0".
	Addr string
	// TLS is the server's TLS configuration. Default: a self-signed
	// certificate for 127.0.0.1 and localhost, made at start and trusted by
	// [APNsServer.RootCAs].
	TLS *tls.Config
	// TeamID and KeyID identify the signing key the sink makes and accepts.
	// Defaults "SLUICEDEV1" and "SINKKEY001".
	TeamID, KeyID string
	// Topic is the only apns-topic (bundle ID) accepted. Default
	// "dev.sluice.app".
	Topic string
	// Reject returns the status and reason a token is refused with.
	// Default: tokens starting with "dead" get 410 Unregistered, tokens
	// starting with "bad0" 400 BadDeviceToken (APNs tokens are hex, so a
	// prefix is the simple way to mark one).
	Reject func(token string) (status int, reason string, ok bool)
}

// APNsServer is a local HTTP/2 server, over TLS, in the shape of Apple's
// provider API: POST /3/device/{token} with a bearer JWT signed ES256 by the
// sink's own key ([APNsServer.AuthKeyPEM]), an apns-topic header and a JSON
// payload of at most 4096 bytes. Its [Ledger] is keyed by apns-id (a
// generated UUID when absent). Requests over HTTP/1 get 505.
type APNsServer struct {
	*httpSink
	cfg   APNsConfig
	key   *ecdsa.PrivateKey
	roots *x509.CertPool

	mu       sync.Mutex
	verified map[string]time.Time // provider token -> issued at, checked once
}

// StartAPNs starts an APNs-shaped sink.
func StartAPNs(cfg APNsConfig) (*APNsServer, error) {
	if cfg.TeamID == "" {
		cfg.TeamID = "SLUICEDEV1"
	}
	if cfg.KeyID == "" {
		cfg.KeyID = "SINKKEY001"
	}
	if cfg.Topic == "" {
		cfg.Topic = "dev.sluice.app"
	}
	if cfg.Reject == nil {
		cfg.Reject = func(tok string) (int, string, bool) {
			switch {
			case strings.HasPrefix(tok, "dead"):
				return http.StatusGone, "Unregistered", true
			case strings.HasPrefix(tok, "bad0"):
				return http.StatusBadRequest, "BadDeviceToken", true
			}
			return 0, "", false
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	s := &APNsServer{cfg: cfg, key: key, verified: make(map[string]time.Time)}
	if cfg.TLS == nil {
		cert, roots, err := selfSigned()
		if err != nil {
			return nil, err
		}
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		s.roots = roots
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /3/device/{token}", s.push)
	if s.httpSink, err = startHTTPSink(cfg.Addr, mux, cfg.TLS); err != nil {
		return nil, err
	}
	return s, nil
}

// RootCAs returns a pool trusting the sink's self-signed certificate, or
// nil when APNsConfig.TLS was given.
func (s *APNsServer) RootCAs() *x509.CertPool { return s.roots }

// AuthKeyPEM returns the sink's token-signing key as a .p8 file would hold
// it (PKCS#8 PEM).
func (s *APNsServer) AuthKeyPEM() []byte {
	der, _ := x509.MarshalPKCS8PrivateKey(s.key)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// Config returns the configuration of a push.APNs provider that sends to
// this sink, trusting RootCAs.
func (s *APNsServer) Config() push.APNsConfig {
	return push.APNsConfig{
		Host: s.URL(), AuthKey: s.AuthKeyPEM(), KeyID: s.cfg.KeyID, TeamID: s.cfg.TeamID,
		Topic: s.cfg.Topic, RootCAs: s.roots,
	}
}

func writeAPNsError(w http.ResponseWriter, status int, reason string) {
	body := map[string]any{"reason": reason}
	if status == http.StatusGone {
		body["timestamp"] = time.Now().UnixMilli()
	}
	writeJSON(w, status, body)
}

func (s *APNsServer) push(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 2 {
		http.Error(w, "APNs requires HTTP/2", http.StatusHTTPVersionNotSupported)
		return
	}
	apnsID := r.Header.Get("apns-id")
	if apnsID == "" {
		apnsID = randomUUID()
	} else if !isCanonicalUUID(apnsID) {
		writeAPNsError(w, http.StatusBadRequest, "BadMessageId")
		return
	}
	w.Header().Set("apns-id", apnsID)
	if reason := s.checkAuth(r); reason != "" {
		writeAPNsError(w, http.StatusForbidden, reason)
		return
	}
	switch topic := r.Header.Get("apns-topic"); {
	case topic == "":
		writeAPNsError(w, http.StatusBadRequest, "MissingTopic")
		return
	case topic != s.cfg.Topic:
		writeAPNsError(w, http.StatusBadRequest, "DeviceTokenNotForTopic")
		return
	}
	v, f := s.faults.apply(r.Context())
	switch v {
	case gone:
		return
	case throttle:
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(f.RetryAfter)))
		writeAPNsError(w, http.StatusTooManyRequests, "TooManyRequests")
		return
	case fail:
		writeAPNsError(w, http.StatusServiceUnavailable, "ServiceUnavailable")
		return
	}
	tok := r.PathValue("token")
	if !push.IsAPNsToken(tok) {
		writeAPNsError(w, http.StatusBadRequest, "BadDeviceToken")
		return
	}
	if status, reason, ok := s.cfg.Reject(tok); ok {
		writeAPNsError(w, status, reason)
		return
	}
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 4097))
	var p struct {
		APS struct {
			Alert struct {
				Title string `json:"title"`
				Body  string `json:"body"`
			} `json:"alert"`
		} `json:"aps"`
	}
	switch {
	case len(raw) > 4096:
		writeAPNsError(w, http.StatusRequestEntityTooLarge, "PayloadTooLarge")
		return
	case len(raw) == 0 || json.Unmarshal(raw, &p) != nil:
		writeAPNsError(w, http.StatusBadRequest, "PayloadEmpty")
		return
	}
	s.ledger.Add(&dispatch.Message{
		ID: apnsID, Channel: dispatch.ChannelPush, To: tok,
		Subject: p.APS.Alert.Title, Body: p.APS.Alert.Body,
	})
	w.Header().Set("apns-unique-id", randomUUID())
	w.WriteHeader(http.StatusOK)
}

// checkAuth verifies the provider token and returns the APNs reason of a
// failure, or "".
func (s *APNsServer) checkAuth(r *http.Request) string {
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "bearer ")
	if !ok {
		tok, ok = strings.CutPrefix(auth, "Bearer ")
	}
	if !ok || tok == "" {
		return "MissingProviderToken"
	}
	// A provider reuses one token for up to an hour: verify its signature
	// once, as APNs does, and check only its age afterwards.
	s.mu.Lock()
	iat, seen := s.verified[tok]
	s.mu.Unlock()
	if !seen {
		hdr, claims, err := parseJWT(tok, verifyES256(&s.key.PublicKey))
		if err != nil || claimString(hdr, "alg") != "ES256" || claimString(hdr, "kid") != s.cfg.KeyID || claimString(claims, "iss") != s.cfg.TeamID {
			return "InvalidProviderToken"
		}
		iat = claimTime(claims, "iat")
		s.mu.Lock()
		if len(s.verified) > 1000 {
			clear(s.verified)
		}
		s.verified[tok] = iat
		s.mu.Unlock()
	}
	if time.Since(iat) > time.Hour || time.Until(iat) > time.Minute {
		return "ExpiredProviderToken"
	}
	return ""
}

func isCanonicalUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
