package webhook_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/sluicehq/sluice/webhook"
)

// TestSignStandardVector: the signature of the Standard Webhooks
// specification's test vector (its reference libraries' TestWebhookSign).
func TestSignStandardVector(t *testing.T) {
	t.Parallel()
	got, err := webhook.Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
		time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; err != nil || got != want {
		t.Fatalf("Sign = %q, %v; want %q", got, err, want)
	}
}

// TestVerify: a signed request verifies; a changed body, another secret,
// another id or a stale timestamp does not.
func TestVerify(t *testing.T) {
	t.Parallel()
	secret, other := webhook.NewSecret(), webhook.NewSecret()
	now := time.Now()
	body := []byte(`{"type":"sluice.events"}`)
	headers := func(id string, at time.Time, sec string) http.Header {
		sig, err := webhook.Sign(sec, id, at, body)
		if err != nil {
			t.Fatal(err)
		}
		h := http.Header{}
		h.Set(webhook.HeaderID, id)
		h.Set(webhook.HeaderTimestamp, strconv.FormatInt(at.Unix(), 10))
		h.Set(webhook.HeaderSignature, "v1,bogus "+sig)
		return h
	}
	if err := webhook.Verify(secret, headers("msg_1", now, secret), body, now, time.Minute); err != nil {
		t.Fatalf("a signed request does not verify: %v", err)
	}
	cases := map[string]error{
		"changed body":  webhook.Verify(secret, headers("msg_1", now, secret), append(body, ' '), now, time.Minute),
		"other secret":  webhook.Verify(secret, headers("msg_1", now, other), body, now, time.Minute),
		"stale":         webhook.Verify(secret, headers("msg_1", now.Add(-time.Hour), secret), body, now, time.Minute),
		"secret broken": webhook.Verify("whsec_!!", headers("msg_1", now, secret), body, now, time.Minute),
	}
	h := headers("msg_1", now, secret)
	h.Set(webhook.HeaderID, "msg_2")
	cases["other id"] = webhook.Verify(secret, h, body, now, time.Minute)
	for name, err := range cases {
		if err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

// TestCheckURL: outside dev, a URL must be absolute http(s) and resolve to
// public addresses only.
func TestCheckURL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		url           string
		allowInternal bool
		ok            bool
	}{
		{"https://93.184.215.14/hook", false, true},
		{"http://127.0.0.1:8080/hook", false, false},
		{"http://localhost/hook", false, false},
		{"http://10.1.2.3/hook", false, false},
		{"http://192.168.0.10/hook", false, false},
		{"http://169.254.169.254/latest/meta-data", false, false},
		{"http://[::1]/hook", false, false},
		{"http://[::ffff:127.0.0.1]/hook", false, false},
		{"http://100.64.1.1/hook", false, false},
		{"http://127.0.0.1:8080/hook", true, true},
		{"ftp://example.com/hook", true, false},
		{"https://user:pw@example.com/hook", true, false},
		{"/relative", true, false},
	} {
		err := webhook.CheckURL(ctx, tc.url, tc.allowInternal, nil)
		if (err == nil) != tc.ok {
			t.Errorf("CheckURL(%q, allowInternal %v) = %v, want ok %v", tc.url, tc.allowInternal, err, tc.ok)
		}
		if err != nil && !errors.Is(err, webhook.ErrInvalid) {
			t.Errorf("CheckURL(%q): %v does not wrap ErrInvalid", tc.url, err)
		}
	}
}
