// Package errorlog records every message's outcome in PostgreSQL without ever
// slowing down the pipeline that reports it: exact counters for every outcome
// (delivered in delivery_counts, the others in error_counts with the outcome
// the pipeline decided), and a detail row per undeliverable message where the
// mode keeps one. It owns error_log, error_counts, delivery_counts and
// error_seen; Counts and CountsOf are how others read the counters.
//
// A worker calls Record for each message's outcome and acks the message
// only when Record's done callback reports success; on any error it naks with a
// delay, so nothing is lost. Record never blocks and never touches the database:
// it masks and cleans the event and puts it in a bounded buffer, or reports
// ErrBufferFull at once. One writer goroutine drains the buffer in batches.
//
// Choices:
//
//   - Batches, not rows. The writer flushes when BatchSize events are waiting or,
//     when it is idle, FlushInterval after a batch's first event (group commit:
//     events recorded during a write make the next batch), in one transaction: COPY into a per-connection temporary staging table, then one
//     statement that inserts the new rows into error_log (ON CONFLICT DO NOTHING)
//     and adds exactly those rows to the per-minute counters in error_counts.
//     A row per event in its own transaction, the design that once stalled a whole
//     platform for hours, is what this replaces.
//   - Idempotent. An event is identified by (ID, Time): a redelivered message, a
//     batch retried after a lost COMMIT acknowledgement, or the same event twice in
//     one batch (deduplicated before COPY) is stored and counted once, because
//     counters are derived from the rows that were really inserted.
//   - Retried, not dropped. A failed flush is retried with capped exponential
//     backoff and jitter until it commits or Stop's context ends; meanwhile the
//     buffer fills and Record reports ErrBufferFull, which is the back-pressure.
//     A panic while writing fails that batch's callbacks and the writer goes on.
//   - One bad value cannot fail a batch: text is made valid UTF-8, NUL bytes are
//     removed, lengths are capped (Detail 1 KiB, Address 512 bytes, other fields
//     256 bytes; an over-long ID is shortened with a hash suffix so it stays
//     unique and stable), and events without an ID or with an unrepresentable Time
//     are refused by Record with ErrInvalidEvent.
//   - Addresses are masked by default with MaskAddress (HMAC-SHA256 under
//     Config.MaskKey) before they enter the buffer; Config.KeepAddresses stores them
//     in clear.
//   - error_log is partitioned by day (UTC). Start creates the partitions for
//     yesterday through the day after tomorrow and the writer re-checks hourly, so
//     rows land in their day partition and retention can drop whole days.
//
// Metrics (subsystem errorlog): sluice_errorlog_events_total{outcome} with outcome
// "written" (a new row), "duplicate" (already stored), "rejected" (Record refused
// it: buffer full, stopped or invalid) and "failed" (accepted but not written:
// Stop's context ended, or a panic); sluice_errorlog_buffer_depth;
// sluice_errorlog_flush_duration_seconds (successful flushes; in mode sync
// each event's own transaction, timed from its connection on);
// sluice_errorlog_flush_errors_total (failed attempts, each retry counts);
// sluice_errorlog_batch_rows.
//
// # The top-N export
//
// "Which conversations are writing the most errors now" is the question the
// incident took 2h20m to answer. [TopErrors] answers it from the exact
// counters; [TopExporter] puts the answer on a dashboard as the gauge
// sluice_errorlog_top_conversation_errors{tenant,conversation}, refreshed
// every 15s from TopErrors over the last 5 minutes, with at most N (default
// 10, at most 50) series: after each refresh the series of conversations that
// left the ranking are deleted. The label values are tenant and conversation
// ids, which are unbounded over time, so a per-conversation counter would be
// a cardinality leak. This export is bounded instead: at any instant a
// process exposes at most N series, and Prometheus holds in its head block
// (about 2 hours) only the conversations that were in a top N during that
// time, which is N plus the churn of the ranking: tens of series, not one per
// conversation. No rank label: a rank would turn each reordering into new
// series. Ids are 1 to 64 characters of [A-Za-z0-9_-] (wire.ValidToken),
// never a recipient or a secret.
//
// The ranking reads Postgres, so it is withdrawn (no series) while Postgres
// cannot answer, counted in sluice_errorlog_top_refresh_errors_total; a
// stale ranking would look current. Alerts therefore never depend on it:
// they use the workers' own counters. The API role runs the export (every
// API process: dashboards take max by (tenant, conversation)).
package errorlog
