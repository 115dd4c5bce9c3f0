// Package console is sluice's web console, served by every API node at
// /console/: one page to see a storm and stop it, for the people on call and
// the support staff who first hear of it.
//
// # Pages
//
//   - Overview (/console/): both lanes' throughput and p95 delivery latency
//     over the last minutes (sampled every second from this node's metrics
//     registry, so they show this process's workers: an API-only node has no
//     charts, Prometheus and Grafana have the fleet's), the consumers'
//     queued and pending, the error-log mode with its switch and its last
//     changes from the audit trail, each worker's writer breaker, the spill
//     depth, intake and channels with their switches, and every process's
//     heartbeat (its error-log mode, lanes, provider breakers).
//   - Storm view (/console/storm): the conversations writing the most errors
//     over the last 5 minutes, with their reasons and invalid share, and every
//     quarantined conversation first, flagged with when it was quarantined
//     (the audit entry of actor quarantine), how long after its creation,
//     how many of its messages went through before (its handled counts,
//     which stop moving once it is held) and how many are held.
//   - Conversations (/console/conversations): searchable by id and name and
//     filterable by state, with exact counts, progress and invalid share;
//     a detail page per conversation with its counts converging live, its
//     reasons, a chart of outcomes per minute, its changes, and pause,
//     resume and stop (stop asks for confirmation, saying how many queued
//     messages the stream holds for it, then says how many it purged).
//   - Audit (/console/audit): every control change, filtered by key prefix,
//     actor and time, paged back (package api's AuditQuery, as
//     GET /v1/admin/audit).
//
// Pages are server-rendered with html/template, which escapes every value
// (a conversation named <script> is shown as text). Live pages open one
// server-sent events stream (/console/live) that sends, every second, the
// regions whose HTML changed, rendered by the same templates; the script
// (assets/console.js, no build step) replaces them. Assets are embedded in
// the binary and nothing is loaded from another host (a Content Security
// Policy of 'self' enforces it), so the console works on an air-gapped
// network.
//
// # Actions
//
// Every action is a fetch to the /v1/admin/ route that `sluice ctl` calls
// (pause, resume, stop, the error-log mode, intake, channels): the same
// handler, the same authorization (package api's Admin) and the same audit,
// with the signed-in key as the actor.
//
// # Sign-in and sessions
//
// The sign-in page takes an operator key (the whole fleet, every switch) or
// a tenant's key with the admin scope (that tenant's conversations only; no
// fleet-wide switch is shown or accepted). The key is verified once and not
// kept: the session is a cookie (api.Sessions), HttpOnly and
// SameSite=Strict, holding the key's id, tenant, a random session id and an
// expiry (8 hours), signed with HMAC-SHA256 under a per-deployment key. No
// session is stored on the server, so every API node behind a load balancer
// accepts the sessions of the others as long as they share the key (package
// node reads it from the control bucket, where the first node creates it).
// Each use looks the API key up again: revoking it ends its sessions at once.
// The session carries the admin and operator scopes only, whatever else its
// key may do, so a stolen console cookie cannot send messages. Every change
// made with the cookie needs the session's CSRF token (an HMAC of the
// session id) in the X-CSRF-Token header, on top of SameSite=Strict, and the
// sign-in form refuses posts from another origin. Without a valid session a
// page redirects to the sign-in page, saying when the session expired; under
// `sluice dev` no key is needed (the dev identity).
package console
