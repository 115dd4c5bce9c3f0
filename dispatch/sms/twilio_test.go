package sms_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/dispatch/providertest"
	"github.com/sluicehq/sluice/dispatch/sink"
	"github.com/sluicehq/sluice/dispatch/sms"
	"github.com/sluicehq/sluice/wire"
)

func start(t *testing.T) (*sink.TwilioServer, *sms.Provider) {
	t.Helper()
	s, err := sink.StartTwilio(sink.TwilioConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	p, err := sms.New(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return s, p
}

func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) providertest.Fixture {
		s, p := start(t)
		return providertest.Fixture{
			Provider:       p,
			Sink:           s,
			Channel:        dispatch.ChannelSMS,
			Address:        func(i int) string { return fmt.Sprintf("+1415555%04d", i%10000) },
			Rejected:       "+15005550001",
			RejectedReason: wire.ReasonInvalidNumber,
		}
	})
}

func TestTwilioErrorCodes(t *testing.T) {
	t.Parallel()
	_, p := start(t)
	for to, want := range map[string]wire.Reason{
		"+15005550001": wire.ReasonInvalidNumber,
		"+15005550002": wire.ReasonUnreachable,
		"+15005550003": wire.ReasonUnreachable,
		"+15005550004": wire.ReasonUnsubscribed,
		"+15005550009": wire.ReasonNotMobile,
	} {
		err := p.Send(t.Context(), &dispatch.Message{ID: to, To: to, Body: "x"})
		var re *dispatch.RejectedError
		if !errors.As(err, &re) || re.Reason != want {
			t.Errorf("%s: %v, want reason %s", to, err, want)
		}
	}
}

func TestWrongCredentialsAreTransient(t *testing.T) {
	t.Parallel()
	s, _ := start(t)
	cfg := s.Config()
	cfg.AuthToken = "wrong"
	p, err := sms.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Send(t.Context(), &dispatch.Message{ID: "a", To: "+14155550100"})
	if err == nil || errors.Is(err, dispatch.ErrRejected) || errors.Is(err, dispatch.ErrUnavailable) {
		t.Fatalf("send with a wrong token: %v, want a transient error", err)
	}
}

func TestMessagingServiceAndConversation(t *testing.T) {
	t.Parallel()
	s, _ := start(t)
	cfg := s.Config()
	cfg.From, cfg.MessagingServiceSID = "", "MGsluice"
	p, err := sms.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Send(t.Context(), &dispatch.Message{ID: "a", Tenant: "t", Conversation: "c", To: "+14155550100"}); err != nil {
		t.Fatal(err)
	}
	if s.Ledger().Conversation("t", "c") != 1 {
		t.Error("sink did not count the message for its conversation")
	}
}

func TestConfigValidate(t *testing.T) {
	for name, cfg := range map[string]sms.Config{
		"no sid":    {AuthToken: "x", From: "+1"},
		"no token":  {AccountSID: "AC", From: "+1"},
		"no from":   {AccountSID: "AC", AuthToken: "x"},
		"bad url":   {AccountSID: "AC", AuthToken: "x", From: "+1", BaseURL: "ftp://x"},
		"sid slash": {AccountSID: "AC/..", AuthToken: "x", From: "+1"},
	} {
		if _, err := sms.New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}
