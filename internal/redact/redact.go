// Package redact makes connection URLs safe to print: in logs, errors, the
// load test's report and the banner of `sluice dev`.
package redact

import "net/url"

// Unprintable stands in for a URL that cannot be parsed (or has no scheme
// and host, such as a key=value Postgres DSN), which could hold a password
// anywhere.
const Unprintable = "<unprintable URL>"

// natsSchemes are the schemes of NATS URLs, where a user without a
// password is a token.
var natsSchemes = map[string]bool{"nats": true, "tls": true, "ws": true, "wss": true}

// URL returns u with its password replaced by url.URL.Redacted's "xxxxx".
// In a NATS URL a user without a password is a token, a secret too, and is
// replaced the same way. An unparsable URL gives Unprintable, never u.
func URL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Scheme == "" || p.Host == "" {
		return Unprintable
	}
	if _, hasPassword := p.User.Password(); p.User != nil && !hasPassword && natsSchemes[p.Scheme] {
		p.User = url.User("xxxxx")
	}
	return p.Redacted()
}
