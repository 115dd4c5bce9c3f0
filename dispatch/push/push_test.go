package push_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/dispatch/providertest"
	"github.com/sluicehq/sluice/dispatch/push"
	"github.com/sluicehq/sluice/dispatch/sink"
	"github.com/sluicehq/sluice/wire"
)

func startFCM(t *testing.T) (*sink.FCMServer, *push.FCM) {
	t.Helper()
	s, err := sink.StartFCM(sink.FCMConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	p, err := push.NewFCM(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return s, p
}

func startAPNs(t *testing.T) (*sink.APNsServer, *push.APNs) {
	t.Helper()
	s, err := sink.StartAPNs(sink.APNsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	p, err := push.NewAPNs(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return s, p
}

func fcmToken(i int) string  { return fmt.Sprintf("fcm%04d:APA91b", i) + strings.Repeat("x", 140) }
func apnsToken(i int) string { return fmt.Sprintf("%064x", i+1) }

func TestFCMConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) providertest.Fixture {
		s, p := startFCM(t)
		return providertest.Fixture{
			Provider: p, Sink: s, Channel: dispatch.ChannelPush,
			Address:        fcmToken,
			Rejected:       "reject:APA91b" + strings.Repeat("y", 140),
			RejectedReason: wire.ReasonUnregistered,
			CarriesSubject: true,
		}
	})
}

func TestAPNsConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) providertest.Fixture {
		s, p := startAPNs(t)
		return providertest.Fixture{
			Provider: p, Sink: s, Channel: dispatch.ChannelPush,
			Address:        apnsToken,
			Rejected:       "dead" + strings.Repeat("0", 60),
			RejectedReason: wire.ReasonUnregistered,
			Key:            push.APNsID,
			CarriesSubject: true,
		}
	})
}

func TestFCMTokenReuseAndBadToken(t *testing.T) {
	t.Parallel()
	s, p := startFCM(t)
	for i := range 5 {
		if err := p.Send(t.Context(), &dispatch.Message{ID: fmt.Sprint(i), To: fcmToken(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.TokensIssued(); n != 1 {
		t.Errorf("%d access tokens fetched for 5 sends, want 1", n)
	}
	err := p.Send(t.Context(), &dispatch.Message{ID: "bad", To: "invalid" + strings.Repeat("z", 140)})
	var re *dispatch.RejectedError
	if !errors.As(err, &re) || re.Reason != wire.ReasonBadToken {
		t.Fatalf("invalid token: %v, want bad_token", err)
	}
}

func TestFCMWrongKeyIsTransient(t *testing.T) {
	t.Parallel()
	s, _ := startFCM(t)
	other, _ := startFCM(t)
	cfg := other.Config() // another account's key...
	cfg.BaseURL = s.URL() // ...presented to this sink
	cfg.TokenURL = s.TokenURL()
	p, err := push.NewFCM(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Send(t.Context(), &dispatch.Message{ID: "a", To: fcmToken(1)})
	if err == nil || errors.Is(err, dispatch.ErrRejected) || errors.Is(err, dispatch.ErrUnavailable) {
		t.Fatalf("send with a foreign service account: %v, want a transient error", err)
	}
}

func TestAPNsBadDeviceTokenAndTopic(t *testing.T) {
	t.Parallel()
	s, p := startAPNs(t)
	err := p.Send(t.Context(), &dispatch.Message{ID: "a", To: "bad0" + strings.Repeat("1", 60)})
	var re *dispatch.RejectedError
	if !errors.As(err, &re) || re.Reason != wire.ReasonBadToken {
		t.Fatalf("BadDeviceToken: %v, want bad_token", err)
	}
	cfg := s.Config()
	cfg.Topic = "com.example.other"
	p2, err := push.NewAPNs(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = p2.Send(t.Context(), &dispatch.Message{ID: "b", To: apnsToken(1)})
	if !errors.As(err, &re) || re.Reason != wire.ReasonBadToken {
		t.Fatalf("DeviceTokenNotForTopic: %v, want bad_token", err)
	}
}

func TestAPNsID(t *testing.T) {
	u := "0F8FAD5B-D9CB-469F-A165-70867728950E"
	if got := push.APNsID(u); got != strings.ToLower(u) {
		t.Errorf("APNsID(uuid) = %q", got)
	}
	a, b := push.APNsID("act-1"), push.APNsID("act-2")
	if a == b || a != push.APNsID("act-1") || len(a) != 36 || a[14] != '5' {
		t.Errorf("APNsID: %q %q, want distinct stable version-5 UUIDs", a, b)
	}
}

func TestRouter(t *testing.T) {
	t.Parallel()
	fs, fcm := startFCM(t)
	as, apns := startAPNs(t)
	r := &push.Router{FCM: fcm, APNs: apns}
	if err := r.Send(t.Context(), &dispatch.Message{ID: "f", To: fcmToken(1)}); err != nil {
		t.Fatal(err)
	}
	if err := r.Send(t.Context(), &dispatch.Message{ID: "a", To: apnsToken(1)}); err != nil {
		t.Fatal(err)
	}
	if !fs.Ledger().Has("f") || !as.Ledger().Has(push.APNsID("a")) || fs.Ledger().Has("a") {
		t.Error("router sent a token to the wrong service")
	}
	only := &push.Router{FCM: fcm}
	if err := only.Send(t.Context(), &dispatch.Message{ID: "x", To: apnsToken(2)}); err == nil || errors.Is(err, dispatch.ErrRejected) {
		t.Errorf("APNs token without APNs: %v, want a transient error", err)
	}
	if only.Open() {
		t.Error("Open() with an unguarded backend")
	}
}

func TestRouterOpen(t *testing.T) {
	t.Parallel()
	fs, fcm := startFCM(t)
	as, apns := startAPNs(t)
	gf, err := dispatch.Guard(fcm, dispatch.GuardConfig{Name: "fcm", ConsecutiveFailures: 1}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ga, err := dispatch.Guard(apns, dispatch.GuardConfig{Name: "apns", ConsecutiveFailures: 1}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &push.Router{FCM: gf, APNs: ga}
	as.SetFaults(sink.Faults{ErrorRate: 1})
	if err := r.Send(t.Context(), &dispatch.Message{ID: "1", To: apnsToken(1)}); err == nil {
		t.Fatal("send to a failing APNs succeeded")
	}
	if !ga.Open() || gf.Open() || r.Open() {
		t.Fatalf("after an APNs failure: apns open %v, fcm open %v, router open %v; want true, false, false", ga.Open(), gf.Open(), r.Open())
	}
	if err := r.Send(t.Context(), &dispatch.Message{ID: "2", To: fcmToken(2)}); err != nil {
		t.Fatalf("FCM send while APNs is open: %v", err)
	}
	fs.SetFaults(sink.Faults{ErrorRate: 1})
	_ = r.Send(t.Context(), &dispatch.Message{ID: "3", To: fcmToken(3)})
	if !r.Open() {
		t.Fatal("router not open with both backends open")
	}
	if !push.IsAPNsToken(apnsToken(3)) || push.IsAPNsToken(fcmToken(3)) || push.IsAPNsToken("abc") {
		t.Error("IsAPNsToken misclassifies")
	}
}
