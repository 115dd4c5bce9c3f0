package sink

import (
	"net/http"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/dispatch/sms"
)

// TwilioConfig configures [StartTwilio].
type TwilioConfig struct {
	// Addr is the listen address, on loopback. Default "127.0.0.1:0".
	Addr string
	// AccountSID and AuthToken are the credentials the sink requires.
	// Defaults "ACsluicedev" and "sluice-dev-token".
	AccountSID, AuthToken string
	// Reject returns the Twilio error code a recipient is refused with.
	// Default [TwilioMagicNumbers].
	Reject func(to string) (code int, ok bool)
}

// TwilioMagicNumbers rejects Twilio's documented test ("magic") numbers
// with the errors Twilio's test credentials give them: +15005550001 21211
// (invalid number), +15005550002 21612 (unreachable), +15005550003 21408
// (region not enabled), +15005550004 21610 (unsubscribed), +15005550009
// 21614 (not a mobile number). They are valid E.164 numbers, so they pass
// address validation and reach the provider.
func TwilioMagicNumbers(to string) (int, bool) {
	switch to {
	case "+15005550001":
		return 21211, true
	case "+15005550002":
		return 21612, true
	case "+15005550003":
		return 21408, true
	case "+15005550004":
		return 21610, true
	case "+15005550009":
		return 21614, true
	}
	return 0, false
}

// TwilioServer is a local HTTP server in the shape of Twilio's Messages
// API. It accepts POST /2010-04-01/Accounts/{sid}/Messages.json with basic
// auth, answers 201 with a message resource, and keeps a [Ledger] keyed by
// the I-Twilio-Idempotency-Token header (else the message SID).
type TwilioServer struct {
	*httpSink
	cfg TwilioConfig
}

// StartTwilio starts a Twilio-shaped sink.
func StartTwilio(cfg TwilioConfig) (*TwilioServer, error) {
	if cfg.AccountSID == "" {
		cfg.AccountSID = "ACsluicedev"
	}
	if cfg.AuthToken == "" {
		cfg.AuthToken = "sluice-dev-token"
	}
	if cfg.Reject == nil {
		cfg.Reject = TwilioMagicNumbers
	}
	s := &TwilioServer{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /2010-04-01/Accounts/{sid}/Messages.json", s.create)
	var err error
	if s.httpSink, err = startHTTPSink(cfg.Addr, mux, nil); err != nil {
		return nil, err
	}
	return s, nil
}

// Config returns the configuration of an sms.Provider that sends to this
// sink from +15005550006 (Twilio's "valid sender" test number).
func (s *TwilioServer) Config() sms.Config {
	return sms.Config{BaseURL: s.URL(), AccountSID: s.cfg.AccountSID, AuthToken: s.cfg.AuthToken, From: "+15005550006"}
}

type twilioError struct {
	Code     int    `json:"code"`
	Message  string `json:"message"`
	MoreInfo string `json:"more_info"`
	Status   int    `json:"status"`
}

func writeTwilioError(w http.ResponseWriter, status, code int, msg string) {
	writeJSON(w, status, twilioError{Code: code, Message: msg, MoreInfo: "https://www.twilio.com/docs/errors/" + strconv.Itoa(code), Status: status})
}

func (s *TwilioServer) create(w http.ResponseWriter, r *http.Request) {
	user, pass, ok := r.BasicAuth()
	if !ok || user != s.cfg.AccountSID || pass != s.cfg.AuthToken || r.PathValue("sid") != s.cfg.AccountSID {
		writeTwilioError(w, http.StatusUnauthorized, 20003, "Authenticate")
		return
	}
	v, f := s.faults.apply(r.Context())
	switch v {
	case gone:
		return
	case throttle:
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(f.RetryAfter)))
		writeTwilioError(w, http.StatusTooManyRequests, 20429, "Too Many Requests")
		return
	case fail:
		writeTwilioError(w, http.StatusServiceUnavailable, 20503, "Service Unavailable")
		return
	}
	if err := r.ParseForm(); err != nil {
		writeTwilioError(w, http.StatusBadRequest, 21100, "Invalid form body")
		return
	}
	to, body := r.PostForm.Get("To"), r.PostForm.Get("Body")
	from, service := r.PostForm.Get("From"), r.PostForm.Get("MessagingServiceSid")
	switch {
	case to == "":
		writeTwilioError(w, http.StatusBadRequest, 21604, "A 'To' phone number is required.")
		return
	case from == "" && service == "":
		writeTwilioError(w, http.StatusBadRequest, 21603, "A 'From' phone number is required.")
		return
	case body == "":
		writeTwilioError(w, http.StatusBadRequest, 21602, "Message body is required.")
		return
	case len([]rune(body)) > 1600:
		writeTwilioError(w, http.StatusBadRequest, 21617, "The concatenated message body exceeds the 1600 character limit.")
		return
	}
	if code, ok := s.cfg.Reject(to); ok {
		writeTwilioError(w, http.StatusBadRequest, code, "The 'To' number "+to+" is not a valid phone number.")
		return
	}
	sid := "SM" + randomHex(16)
	key := r.Header.Get(sms.IdempotencyHeader)
	if key == "" {
		key = sid
	}
	s.ledger.Add(&dispatch.Message{
		ID: key, Tenant: r.Header.Get(sms.HeaderTenant), Conversation: r.Header.Get(sms.HeaderConversation),
		Channel: dispatch.ChannelSMS, To: to, Body: body,
	})
	writeJSON(w, http.StatusCreated, map[string]any{
		"sid": sid, "account_sid": s.cfg.AccountSID, "to": to, "from": from,
		"messaging_service_sid": service, "body": body, "status": "queued",
		"num_segments": "1", "direction": "outbound-api", "api_version": "2010-04-01",
		"date_created": time.Now().UTC().Format(time.RFC1123Z),
		"uri":          "/2010-04-01/Accounts/" + s.cfg.AccountSID + "/Messages/" + sid + ".json",
	})
}
