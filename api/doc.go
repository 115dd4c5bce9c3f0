// Package api is sluice's HTTP surface: health (/healthz), readiness
// (/readyz, which checks NATS and Postgres), Prometheus metrics (/metrics),
// the campaign API (/v1/), the operations (/v1/admin/, [Admin]), authentication
// by API key with scopes, and RFC 9457 problem documents: every HTTP surface
// of sluice, with one problem writer ([WriteProblem]) and one JSON writer.
//
// # Campaign API
//
// [Campaigns] serves, once registered on a [Server]:
//
//	POST /v1/conversations                    scope send  create a conversation
//	GET  /v1/conversations/{id}               scope read  state and exact counts
//	POST /v1/conversations/{id}/activations   scope send  queue recipients
//	GET  /v1/openapi.json                     no key      the OpenAPI 3.1 description
//
// A conversation is stored in Postgres (table conversations) and published to
// the NATS KV bucket sluice_conversations under <tenant>.<id> (see
// [ConversationEntry]), which the workers watch: the hot path never reads
// Postgres. The bucket is created when missing, with a history of 5.
//
// # Activations
//
// The body is a JSON array of rows or, with Content-Type
// application/x-ndjson, one row per line: {"to": "...", "vars": {...},
// "id": "..."}. It is read and published as a stream: memory per request is
// bounded by the publish window (CampaignDeps.PublishWindow rows awaiting the
// stream's acknowledgement) times the row limit (CampaignDeps.MaxRowBytes),
// never by the body. Only the shape of a row is checked; an invalid address
// is the workers' accounted outcome ("invalid"), not an API error.
//
// A stream cannot be validated before it is published, so rows are published
// as they are read. A bad row (malformed JSON 400, wrong shape 422, too large
// 413) ends the request: the rows before it that the stream stored stay
// queued and are delivered, and the problem document says so, with members
// row (the 1-based row number; line too for NDJSON), accepted (rows of this
// body now stored) and stored_through_row (rows 1..N are all stored).
//
// # Idempotency-Key
//
// With an Idempotency-Key header, activation ids are derived from (tenant,
// conversation, key, row number), and the request's progress is recorded in
// activation_requests as it goes (every CheckpointInterval). A retry with the
// same key:
//
//   - after a completed request replays its 202 answer (header
//     Idempotent-Replayed: true) and publishes nothing, for as long as the key
//     is remembered, once it has checked that the body is the same (a
//     different body: 422);
//   - after a request that ended early (a bad row, a publish failure, a lost
//     connection, a crash of the API process) checks that the rows already
//     stored are sent again unchanged, skips them, and publishes the rest: so
//     a client fixes row N and sends the whole body again with the same key;
//   - while the first is still running gets 409.
//
// Rows the stream stored but the crashed process could not record are
// published again; the stream's duplicate window (Nats-Msg-Id;
// CampaignDeps.DuplicateWindow, default 30 seconds) stores them once and they
// are counted then. Only a crash of the API process followed by a retry
// later than the window can queue a row twice, and then at most the rows of
// one checkpoint interval and publish window. The crashed request's lease
// (LeaseDuration, 10 s) must end before a retry takes over: a retry sent
// when the 409's Retry-After says resumes well within the window.
// Without a key, ids are random: a retry publishes everything again, and a
// crash of the API process leaves at most one checkpoint interval of stored
// rows uncounted in conversations.accepted. Clients should always send a key.
//
// Keys are remembered for IdempotencyRetention (default 7 days) after the
// request was first sent; PruneRequests (run hourly by every API node) then
// forgets them in batches of 5,000 rows. A retry with a forgotten key is a
// new request and publishes its rows again.
//
// # Authentication and authority
//
// Requests carry Authorization: Bearer <key>. Only a key's SHA-256 is
// stored, and it is compared in constant time; keys and full recipient
// addresses are never logged. There are two kinds of key:
//
//   - A tenant key, sk_<tenant>_<id>_<secret> ([CreateAPIKey]), acts on its
//     own tenant only, with its scopes: send, read, admin. The tenant of
//     every request is the key's: a conversation of another tenant is
//     answered 404, as if it did not exist, on the campaign routes and on
//     the /v1/admin/conversations/{tenant}/... routes alike (a path naming
//     another tenant changes nothing), and GET /v1/admin/conversations lists
//     the key's tenant only.
//   - An operator key, sko_<id>_<secret> ([CreateOperatorKey]; scope
//     operator; its api_keys row has no tenant), belongs to no tenant. It
//     alone opens the fleet-wide controls, which one tenant must not flip
//     for the others: the error-log mode, the top errors across tenants,
//     intake and channels, the deployment's status (a tenant key is answered
//     403 there). It may act on every tenant's conversations under
//     /v1/admin/conversations, and on nothing under the campaign routes,
//     which need a tenant. Rotation: create a new key, move its holder to
//     it, revoke the old one. An operator key the key store accepted within
//     [OperatorKeyGrace] is still accepted while the store is unreachable,
//     so that GET /v1/admin/status answers during a PostgreSQL outage.
//
// [Auth.RequireScope] and [Auth.RequireAnyScope] guard a handler (401
// without a valid key, 403 without the scope); [Admin] routes the admin
// operations and says who may call each. Changes are audited with
// [Principal.Actor]: key:<id>@<tenant>, or operator:<id> (<name>).
//
// # Console sessions
//
// [Sessions] (CampaignDeps.Sessions) lets the web console (package
// console) sign in with a key: [Auth.SignIn] verifies an operator key or a
// tenant key with the admin scope and sets a signed, expiring cookie
// (HttpOnly, SameSite=Strict) holding the key's id and tenant, never the
// key. A request without an Authorization header is then authenticated by
// that cookie, with the admin and operator scopes of its key only (looked
// up again on every request: revoking the key ends the session), and a
// change made with it (POST, PUT) needs the session's CSRF token in
// X-CSRF-Token. GET /v1/admin/audit reads the audit trail: every entry for
// an operator, its own conversations' for a tenant's admin key
// ([AuditQuery]).
//
// CampaignDeps.DevTenant (for `sluice dev` only; refused unless Env is "dev")
// lets requests without an Authorization header act as that tenant with
// every scope and as the operator.
//
// # Bad input
//
// Bad input is answered as bad input, never as a failure to retry: a NUL
// byte or invalid UTF-8 in a conversation's id, name or template, or in an
// admin change's reason, is 422 naming the field, before anything is stored;
// a value Postgres refuses anyway (SQLSTATE class 22) is 422 too. A path
// with an empty segment is a 404 problem, never a redirect. A row whose vars
// exceed CampaignDeps.MaxVarsBytes once encoded (8 KiB, the workers' limit)
// is refused as a row too large (413). When a bad row ends an activation
// request early, up to 64 MiB of the rest of the body is read and discarded
// (10 s at most) before the answer, so a client still sending (curl sends
// large bodies after Expect: 100-continue) receives the problem document
// rather than a reset connection.
package api
