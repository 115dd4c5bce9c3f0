package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/dispatch/email"
	"github.com/sluicehq/sluice/dispatch/providerset"
	"github.com/sluicehq/sluice/dispatch/sms"
)

// listFlag splits a comma-separated flag value; "" is no item.
func listFlag(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// perProvider returns the value of a setting for the i-th of n providers:
// the one value given for all, or the i-th of exactly n.
func perProvider(flagName, v string, i, n int) (string, error) {
	items := listFlag(v)
	switch len(items) {
	case 0:
		return "", nil
	case 1:
		return items[0], nil
	case n:
		return items[i], nil
	}
	return "", fmt.Errorf("serve: --%s has %d values for %d providers: give one for all, or one per provider", flagName, len(items), n)
}

// secret returns the secret of the i-th provider: env_<i+1> for i > 0 when
// set, else env.
func secret(env string, i int) string {
	if i > 0 {
		if v := os.Getenv(env + "_" + strconv.Itoa(i+1)); v != "" {
			return v
		}
	}
	return os.Getenv(env)
}

// buildChains turns --smtp-addr and --twilio-account-sid, each a list,
// into the first provider and its fallbacks.
func (p *providerSettings) buildChains(c *providerset.Config) error {
	addrs := listFlag(p.smtpAddr)
	for i, addr := range addrs {
		user, err := perProvider("smtp-username", p.smtpUser, i, len(addrs))
		if err != nil {
			return err
		}
		ec := email.Config{Addr: addr, From: p.smtpFrom, TLS: email.TLSMode(p.smtpTLS),
			Username: user, Password: secret("SLUICE_SMTP_PASSWORD", i), MaxConns: p.smtpMaxConns, MaxMessagesPerConn: p.smtpMaxMsgsPerConn}
		if i == 0 {
			c.Email = &ec
		} else {
			c.EmailFallbacks = append(c.EmailFallbacks, ec)
		}
	}
	sids := listFlag(p.twilioSID)
	for i, sid := range sids {
		var vals [3]string
		for j, f := range []struct{ name, v string }{{"twilio-base-url", p.twilioBase}, {"twilio-from", p.twilioFrom}, {"twilio-messaging-service-sid", p.twilioService}} {
			v, err := perProvider(f.name, f.v, i, len(sids))
			if err != nil {
				return err
			}
			vals[j] = v
		}
		sc := sms.Config{BaseURL: vals[0], AccountSID: sid, AuthToken: secret("SLUICE_TWILIO_AUTH_TOKEN", i), From: vals[1], MessagingServiceSID: vals[2]}
		if i == 0 {
			c.SMS = &sc
		} else {
			c.SMSFallbacks = append(c.SMSFallbacks, sc)
		}
	}
	return nil
}
