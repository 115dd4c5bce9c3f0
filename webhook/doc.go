// Package webhook owns delivery-status webhooks: the endpoints a tenant
// registers (the webhooks table), the events the fleet produces for them,
// and their signed, batched, retried delivery.
//
// # Events
//
// An event says what became of one message (delivered, invalid, failed,
// suppressed, expired: the outcome the pipeline decided and counted) or of
// a conversation (quarantined; purged, with the number of messages a stop
// removed). A Publisher produces them where they are decided, once they are
// durable: the pipeline hands it each outcome from the error log's
// acknowledgement (after the outcome's count has committed to Postgres),
// the control plane each quarantine and each stop's purge. Publisher never
// blocks its caller: an event goes into a bounded queue (QueueDefault) that
// one goroutine publishes from, asynchronously; when the queue is full the
// event is dropped and counted in sluice_webhook_events_dropped_total.
// Only tenants with at least one enabled endpoint produce events: the
// Publisher holds the set of those tenants in memory, loaded from Postgres
// and reloaded whenever an endpoint changes (a core NATS notice on
// ChangedSubject) and every ReloadIntervalDefault, so that a tenant without
// webhooks costs one map lookup per message.
//
// Events are stored in the JetStream stream SLUICE_WEBHOOK_EVENTS
// (subjects sluice.webhook.<tenant>.<event>), Limits retention kept for
// StreamMaxAge (7 days): the window replay can reach back. Each message
// event is published with the message id <tenant>.<activation>.<outcome>
// and the stream's duplicate window (StreamDuplicates, 10 minutes) stores
// a redelivered message's event once.
//
// # Delivery
//
// A Dispatcher runs in worker processes. Each endpoint has a durable pull
// consumer (FilterSubjects: its tenant's subjects of the events it asked
// for, from its registration on); one process of the fleet at a time owns
// an endpoint through a lease in the KV bucket sluice_webhooks (renewed
// every LeaseTTL/3; taken over by another process LeaseTTL after its owner
// dies), so batches go out in order. The owner gathers up to BatchMax
// events or BatchWait, signs the request per the Standard Webhooks
// specification (webhook-id, webhook-timestamp, webhook-signature
// v1,<base64 HMAC-SHA256 of "id.timestamp.body">), posts it with a
// timeout, and acks the batch's events on a 2xx. Before sending, it writes
// the batch (its webhook-id and stream sequences) to the bucket: a process
// that takes an endpoint over after a crash sends the same events again
// under the same webhook-id, so a receiver that deduplicates by
// webhook-id sees each event once. A failed batch, and the events held
// behind it, are NakWithDelay'd by an exponential backoff (RetryBase
// doubled per delivery, up to RetryMax) and sent again under the same
// webhook-id when they come back, ahead of later events; an
// endpoint failing continuously for DisableAfter (default 3 days) is
// disabled and its undelivered events stay in its consumer until the
// stream's MaxAge.
//
// Endpoints are refused if their URL resolves to a loopback, private,
// link-local or otherwise internal address, at registration and again at
// connect time (a net.Dialer Control hook, against DNS rebinding), unless
// the deployment allows them (dev and test environments).
package webhook
