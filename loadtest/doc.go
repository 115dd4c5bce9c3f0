// Package loadtest replays the incident that sluice exists to survive and
// measures it: `sluice loadtest`.
//
// # Scenarios
//
// Every scenario is deterministic from its seed: message i of a run is
// derived from (seed, i) alone, so two runs with the same flags publish the
// same conversations, channels and addresses in the same order.
//
//   - incident: 8 conversations activated at once on the bulk lane,
//     8,000,000 messages in total, 95% of them with an empty or malformed
//     address, while a steady trickle of valid transactional messages
//     (200/s) flows on the other lane.
//   - valid: the same burst with every address deliverable.
//   - mixed: half invalid, spread over email, SMS and push.
//
// Sizes, ratios, channels and rates are Config fields (flags of the
// command); Messages 200000 gives a run of about two minutes on two cores.
//
// # Target
//
// By default the run starts its own stack, so that one command reproduces
// the whole experiment: an embedded NATS JetStream server on a free port, a
// throwaway local Postgres (pglocal, in a temporary directory; fsync and
// synchronous_commit off, unless DurablePostgres asks for a production
// database's commits, each waiting for the disk), a sluice node
// with the worker and API roles, and the sinks that stand in for the
// providers: the in-process recorder (Sinks "recorder", the default) or the
// real-protocol SMTP, Twilio, FCM and APNs sinks (Sinks "protocol"), or
// postfix's smtp-sink behind the real SMTP provider (Sinks "smtp-sink":
// after the modes, smtp-source pushes as many messages into the same sink
// with as many sessions, and each mode reports its ratio to it and the
// stack's CPU per 1,000 delivered, this process plus Postgres). Each
// mode of a comparison gets a fresh NATS server (fresh streams and control
// bucket) and a fresh database in the same Postgres cluster, dropped once
// the mode's accounting is read (its NATS store is removed too), so that
// no mode pays for an earlier one's tables: autovacuum on the full mode's
// millions of error_log rows, say.
//
// With NATSURL the burst goes into a running sluice instead, under
// conversation ids tagged with the run so that earlier runs do not mix in.
// Then there are no sink ledgers and no provider hook: accounting reads the
// database (DatabaseURL): the stored, exactly-once outcome counts
// (errorlog.CountsOf), not checked against the providers. Given the workers'
// /metrics endpoints (MetricsURLs, --metrics-url, comma-separated for a
// fleet), the run reads from them what it measures in process on its own
// stack: transactional latency from the workers' delivery-latency histogram
// (sluice_orchestrator_delivery_latency_seconds{lane="transactional"},
// summed over the workers and differenced between phase changes; it covers
// every transactional delivery of the target, not only the trickle's, and
// its percentiles are interpolated within the histogram's buckets like
// Prometheus's histogram_quantile, its max being the highest bucket's
// bound), error-log rows and write time (differences of the workers'
// counters), RSS and goroutines (process_resident_memory_bytes and
// go_goroutines, summed over the workers, peak of the 1-second samples).
// Without them those figures are absent (null), not zero. Quarantine works
// differently there (see Quarantine). Compare is refused (modes cannot be
// run on fresh databases). The report says all this in its notes.
//
// # Measurements
//
// Publishing is asynchronous with a bounded window of unacknowledged
// publishes (orchestrator.Publisher), at full speed unless PublishRate
// paces it (the ceiling's publishing too, so that a ratio near 1 then means
// a mode keeps up with the offered rate). Each second the run samples how many
// burst messages have been processed (published minus those still in the
// stream), error-log rows written (sluice_errorlog_events_total{outcome=
// "written"}) and goroutines. Transactional latency is the time from the
// trickle's publish call to the provider's acceptance, measured by a wrapper
// around the providers; it is reported separately for a short baseline
// before the burst, during the burst, and after it (the trickle goes on for
// AfterDrain, 3 s by default, once the burst has drained: a pause of the
// stream at the end of a drain shows there). Postgres time in error-log writes is
// the sum of the error log's flush-duration histogram: one writer's batches
// in the batched modes, every worker's own INSERT and commit in sync (summed
// over the workers writing at once, so it can exceed the drain time). Peak
// RSS is the
// process's VmHWM, reset at the start of each mode where the kernel allows
// (/proc/self/clear_refs); on the self-contained stack it covers NATS, the
// publisher and the workers together (one process), not Postgres; a running
// target's workers are measured alone (see Target).
//
// Accounting is checked per conversation, at rest: accepted (published) =
// delivered + invalid + failed + suppressed + expired + purged, each outcome
// as the workers stored
// it (errorlog.CountsOf), and delivered equal to the distinct activations in
// the sinks' ledgers where the run has them.
//
// # Compare and ceiling
//
// Compare runs the same burst under several error-log modes (default full,
// sample, off, sync; sync on SyncMessages messages, fewer by default since
// one INSERT per event is the point), with quarantine off, and measures the
// raw JetStream ceiling on the same machine in the same run: publish and
// consume-with-ack of the same number of messages with no processing, one
// consumer, on a fresh server. Each mode's msgs_per_sec is reported as
// ratio_to_ceiling. Two references are measured with it, the same way:
// per-conversation, one filtered consumer per conversation as the bulk
// lane has them (what the lane's fairness costs the NATS server; a mode's
// ratio_to_per_conversation is then the pipeline's own cost), and backlog,
// the whole burst queued first and then consumed by one consumer (the
// incident's situation; its time is the consuming alone). Each reports
// this process's CPU time, as the ceiling does. The ceiling runs after the
// references, just before the first mode, and again after each mode but
// sync (Config.NoBracket skips it): a mode's ratio_to_adjacent is its rate
// over the mean of the ceilings just before and just after it, the
// comparison a long run on a shared machine, whose speed drifts over
// minutes, can stand by. PhaseProfiles writes a CPU
// profile of each ceiling and each mode's burst, to set one against the
// other, and heap profiles at each one's start and end (what it allocated).
//
// # Quarantine
//
// Quarantine is a pluggable step (Config.Quarantine, a Quarantiner per mode).
// While the burst drains, the run asks it once a second which conversations
// are quarantined, records how many seconds after activation each was and
// how many of its messages had been processed, and stops it (purging its
// queued messages); once the burst is published it purges the stopped
// conversations again, so that the run ends with exact accounting, purged
// included. ControlQuarantine is sluice's: the workers' automatic
// quarantine (orchestrator.QuarantineConfig, Config.QuarantineRatio), the
// conversation's state in the control plane, the admin stop's settle and
// orchestrator.PurgeConversation. The command runs the incident with it by
// default (--quarantine auto). A comparison always runs with quarantine
// "off", so that every invalid message really goes through the error log.
// Against a running target the target's workers quarantine by their own
// settings; with the step on, the run purges each quarantined conversation's
// queued messages and leaves its state alone (the target's sweep of stopped
// conversations would purge messages the run never counts); with it off,
// the run fails as soon as the target holds one of its conversations, which
// would otherwise never drain.
//
// # Production fence
//
// Run refuses a target whose environment is production unless
// AllowProduction (--allow-production) is set: when SLUICE_ENV (Config.Env)
// says production, or when the target records production in its database
// (sluice_meta) or its NATS (key env of the control bucket), read with
// control.RecordedEnv and refused as control.RefuseProduction does. The
// self-contained stack is environment "test".
//
// # Report
//
// WriteReport writes report.json (every figure, named plainly) and
// report.html (inline SVG charts: throughput over time per mode,
// transactional latency over time, error-log write rate; no scripts) into a
// directory; Summary renders the short text summary.
package loadtest
