// Package orchestrator is sluice's worker pipeline: it consumes activations
// from the JetStream streams SLUICE_TRANSACTIONAL and SLUICE_BULK, decodes
// and validates them,
// hands valid ones to a channel provider and invalid ones to the error log,
// and acknowledges each message only once its outcome is durable.
//
// # Stream and subjects
//
// One stream per lane, file storage, and a duplicate window so that a
// retried publish with the same Nats-Msg-Id (the activation id) is stored
// once: SLUICE_TRANSACTIONAL (sluice.act.transactional.*.*), WorkQueue
// retention (a message is removed once acked or terminated), and SLUICE_BULK
// (sluice.act.bulk.*.*), Limits retention: an acked message stays until the
// workers' reclaim pass removes what every conversation consumer has acked
// (stream-wide below their lowest ack floor, whole blocks at a time, and
// each drained conversation's subject), so that an ack costs
// the server no interest check across the conversations' consumers, no
// delete and tombstone, no Raft proposal (BENCHMARKS.md, 2026-12-07, fourth
// session). Purging a conversation therefore counts only what no worker
// handled ([PurgeConversation]). SLUICE_ACTIVATIONS, the WorkQueue bulk
// stream of earlier releases, is retired by [EnsureStreams], its messages
// moved. The transactional lane has a stream of its own so that
// a burst being published into the bulk stream never queues a password reset
// behind it (its ingest queue, its lock, the file store's cleanup when a
// drain empties it). The error log tells the two streams' sequences apart by
// [Source].
//
// # Lanes and fairness
//
// Two lanes, each with its own pool of workers, so that an 8M-message bulk
// backlog never delays a password reset:
//
//   - transactional: one durable pull consumer over sluice.act.transactional.>,
//     fetched in a loop that blocks until messages arrive.
//   - bulk: one durable pull consumer per conversation that has messages,
//     discovered from the stream's per-subject counts and deleted once the
//     conversation's subject is empty. The lane fetches at most FetchBatch
//     messages from each conversation in turn (round-robin, FetchNoWait,
//     eight conversations' pull requests sent together so their round trips
//     overlap, the next eight's sent before this eight's messages are
//     handled), so a 1k-message conversation activated after a 1M-message one is served at
//     once, at an equal share of the lane, instead of waiting behind it.
//     Pausing a conversation means skipping its consumer: its queued
//     messages are never fetched, and the consumer, kept, costs the others
//     nothing.
//
// When the process is saturated while transactional messages are being
// handled, the bulk lane yields: bulkGate halves how many bulk messages are
// handled at once whenever the Go scheduler's p99 latency passes
// Config.BulkYield, and grows it back by one every 100ms.
//
// # Operators' controls
//
// [Controls] holds the live conversation states and channel switches, kept
// current by the control plane's watches. A bulk conversation that is not
// active (paused, stopped, quarantined) is left out of the round-robin; so is
// one whose messages wait for a disabled channel or an open breaker. The
// transactional lane cannot leave a conversation out of its one consumer, so
// a held message there is parked: moved to its conversation's bulk subject,
// where it waits unfetched (see Controls). Held messages are counted in
// sluice_orchestrator_held_total, never as an outcome. [PurgeConversation]
// removes a stopped conversation's queued messages, returning the exact
// count; [Service.SweepStopped] finds stopped conversations that still hold
// some. Automatic quarantine ([QuarantineConfig]) watches each
// conversation's share of invalid addresses over its last messages and
// quarantines it through the control plane when it passes a threshold.
//
// # Expiry and suppression
//
// A message taken at or after its envelope's expires_at is counted expired
// (reason expired) and never sent; the check comes right after the
// conversation's state, so a message held by a pause expires when it is
// taken after the resume. A valid recipient on its tenant's suppression
// list ([Suppressions], set with [Service.SetSuppressions]: an in-memory
// set, never a Postgres query per message) is counted suppressed and never
// sent. A provider's refusal for which wire.Suppresses holds (SMTP 5.1.1,
// FCM UNREGISTERED, APNs 410, Twilio 21610 and 21211) is recorded as usual
// and reported to the list.
//
// # Acknowledgement
//
// Explicit acks. Delivered: Ack. Invalid address, poison message, permanent
// provider rejection: recorded in the error log, then Ack (or TermWithReason
// for poison) from the error log's callback once the record is committed.
// Each lane remembers its last acks per consumer and sends them again when a
// consumer's leader changes (see ackReplay in reack.go), so that acks lost
// with a dead NATS node do not hold a conversation up until AckWait; a
// message delivered again after this worker acked it is acked again, not
// sent again.
// Transient failure: NakWithDelay with capped exponential backoff, never a bare
// Nak; on the last allowed delivery (MaxDeliver) the message is recorded as
// failed with reason max_deliveries and terminated instead, so nothing reaches
// MaxDeliver silently.
package orchestrator
