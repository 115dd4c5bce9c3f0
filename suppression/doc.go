// Package suppression owns each tenant's suppression list: the recipients
// that must never be sent to again, because a provider refused them for
// good (SMTP 5.1.1, FCM UNREGISTERED, APNs 410, Twilio 21610 and 21211) or
// because the tenant said so through the API.
//
// An address is never stored. It is normalised (Normalize: trimmed, email
// addresses lower-cased, E.164 numbers and push tokens as they are) and
// hashed with HMAC-SHA256 under the deployment's mask key (the error log's,
// errorlog.Config.MaskKey); the suppressions table keeps the 32-byte hash
// per tenant.
//
// Postgres is the record; the workers never query it per message. Each
// worker holds a Set: the first 8 bytes of every hash, per tenant, in memory
// (about 40 bytes an entry with the map's overhead, so 1,000,000 suppressed
// addresses take some 40 MB), loaded once at start (Follow) and kept current
// by the changes that Store publishes on the JetStream stream
// SLUICE_SUPPRESSIONS (subjects sluice.suppress.<tenant>) after each commit.
// Follow notes the stream's last sequence before it loads the table and
// replays every change after it, so that nothing committed while it loads
// is missed; changes are idempotent (add, remove). A change whose publish
// fails after its commit reaches the workers at their next start.
//
// Two addresses whose hashes share their first 8 bytes are one entry in a
// Set: with a million entries in a tenant, the chance that a given other
// address is taken for suppressed is about 5·10⁻¹⁴.
//
// Reporter is the workers' way in: the pipeline hands it a permanent
// refusal without blocking, the Set learns it at once, and a background
// goroutine stores and publishes it.
package suppression
