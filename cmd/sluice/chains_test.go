package main

import (
	"strings"
	"testing"
)

// TestBuildChains: a list of relays or accounts becomes the first provider
// and its fallbacks, each with its own secret (SLUICE_..._<n>, else the
// shared one) and its own value of a per-provider list; a list of the wrong
// length is refused, naming the flag.
func TestBuildChains(t *testing.T) {
	t.Setenv("SLUICE_SMTP_PASSWORD", "shared")
	t.Setenv("SLUICE_SMTP_PASSWORD_3", "third")
	t.Setenv("SLUICE_TWILIO_AUTH_TOKEN", "tok1")
	t.Setenv("SLUICE_TWILIO_AUTH_TOKEN_2", "tok2")
	p := &providerSettings{smtpAddr: "relay1:25, relay2:25,relay3:25", smtpFrom: "a@example.com", smtpUser: "u",
		twilioSID: "AC1,AC2", twilioFrom: "+15550001,+15550002"}
	c, err := p.build()
	if err != nil {
		t.Fatal(err)
	}
	if c.Email == nil || c.Email.Addr != "relay1:25" || len(c.EmailFallbacks) != 2 || c.EmailFallbacks[0].Addr != "relay2:25" {
		t.Fatalf("email chain %+v %+v", c.Email, c.EmailFallbacks)
	}
	if c.Email.Password != "shared" || c.EmailFallbacks[0].Password != "shared" || c.EmailFallbacks[1].Password != "third" || c.EmailFallbacks[1].Username != "u" {
		t.Errorf("passwords %q %q %q, user %q", c.Email.Password, c.EmailFallbacks[0].Password, c.EmailFallbacks[1].Password, c.EmailFallbacks[1].Username)
	}
	if c.SMS == nil || len(c.SMSFallbacks) != 1 || c.SMS.AuthToken != "tok1" || c.SMSFallbacks[0].AuthToken != "tok2" ||
		c.SMS.From != "+15550001" || c.SMSFallbacks[0].From != "+15550002" || c.SMSFallbacks[0].AccountSID != "AC2" {
		t.Errorf("sms chain %+v %+v", c.SMS, c.SMSFallbacks)
	}
	p.twilioFrom = "+1,+2,+3"
	if _, err := p.build(); err == nil || !strings.Contains(err.Error(), "--twilio-from") {
		t.Errorf("three senders for two accounts: %v, want an error naming --twilio-from", err)
	}
}
