package sink

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// httpSink is what the HTTP sinks share: a loopback server, a ledger, the
// fault knobs and a request counter.
type httpSink struct {
	ln       net.Listener
	srv      *http.Server
	scheme   string
	ledger   *Ledger
	faults   *faultBox
	requests atomic.Int64
	done     chan struct{}
	stopOnce sync.Once
}

func startHTTPSink(addr string, h http.Handler, tlsConfig *tls.Config) (*httpSink, error) {
	ln, err := listenLoopback(addr)
	if err != nil {
		return nil, err
	}
	s := &httpSink{ln: ln, scheme: "http", ledger: newKeepingLedger(4096), faults: newFaultBox(), done: make(chan struct{})}
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.requests.Add(1); h.ServeHTTP(w, r) }),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          nil,
	}
	if tlsConfig != nil {
		s.scheme = "https"
		s.srv.TLSConfig = tlsConfig.Clone()
		s.srv.TLSConfig.NextProtos = []string{"h2", "http/1.1"}
		go func() {
			defer close(s.done)
			s.srv.ServeTLS(ln, "", "")
		}()
	} else {
		go func() {
			defer close(s.done)
			s.srv.Serve(ln)
		}()
	}
	return s, nil
}

// Addr returns the host:port the sink listens on.
func (s *httpSink) Addr() string { return s.ln.Addr().String() }

// URL returns the sink's base URL, such as "http://127.0.0.1:40123".
func (s *httpSink) URL() string { return s.scheme + "://" + s.Addr() }

// Ledger returns the ledger of accepted messages.
func (s *httpSink) Ledger() *Ledger { return s.ledger }

// SetFaults replaces the fault knobs.
func (s *httpSink) SetFaults(f Faults) { s.faults.set(f) }

// Requests returns how many HTTP requests the sink has received.
func (s *httpSink) Requests() int64 { return s.requests.Load() }

// Close stops the sink, releasing held requests and closing connections.
func (s *httpSink) Close() error {
	var err error
	s.stopOnce.Do(func() {
		s.faults.close()
		err = s.srv.Close()
		<-s.done
	})
	return err
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// randomUUID returns a random (version 4) UUID in canonical form.
func randomUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

var errBadJWT = errors.New("malformed or badly signed JWT")

// parseJWT splits a compact JWS, decodes its header and claims, and checks
// its signature with verify(signingInput, signature).
func parseJWT(tok string, verify func(signed, sig []byte) bool) (header, claims map[string]any, err error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, nil, errBadJWT
	}
	raw := make([][]byte, 3)
	for i, p := range parts {
		if raw[i], err = base64.RawURLEncoding.DecodeString(p); err != nil {
			return nil, nil, errBadJWT
		}
	}
	if json.Unmarshal(raw[0], &header) != nil || json.Unmarshal(raw[1], &claims) != nil {
		return nil, nil, errBadJWT
	}
	if !verify([]byte(parts[0]+"."+parts[1]), raw[2]) {
		return nil, nil, errBadJWT
	}
	return header, claims, nil
}

// verifyES256 checks a JWS ES256 signature (r || s, 32 bytes each).
func verifyES256(pub *ecdsa.PublicKey) func(signed, sig []byte) bool {
	return func(signed, sig []byte) bool {
		if len(sig) != 64 {
			return false
		}
		h := sha256.Sum256(signed)
		return ecdsa.Verify(pub, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
	}
}

func claimString(c map[string]any, k string) string {
	s, _ := c[k].(string)
	return s
}

func claimTime(c map[string]any, k string) time.Time {
	f, ok := c[k].(float64)
	if !ok {
		return time.Time{}
	}
	return time.Unix(int64(f), 0)
}
