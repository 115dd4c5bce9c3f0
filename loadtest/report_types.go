package loadtest

import "time"

// Report is every figure of a run; report.json is its JSON encoding.
type Report struct {
	Scenario      string   `json:"scenario"`
	Seed          uint64   `json:"seed"`
	Messages      int      `json:"messages"`
	Conversations int      `json:"conversations"`
	InvalidRatio  float64  `json:"invalid_ratio"`
	Channels      []string `json:"channels"`
	TrickleRate   float64  `json:"trickle_rate"`
	BaselineSecs  float64  `json:"baseline_seconds"`
	Window        int      `json:"publish_window"`
	// PublishRate is the cap on the burst's publish rate; 0: full speed.
	PublishRate float64 `json:"publish_rate_limit"`
	Sinks       string  `json:"sinks"`
	// DuplicateWindowSeconds is the activation streams' duplicate window
	// (the node's default on the self-contained stack, the target's
	// SLUICE_BULK otherwise): the NATS server keeps every id of it in
	// memory, so figures taken with different windows differ (BENCHMARKS.md).
	DuplicateWindowSeconds float64 `json:"duplicate_window_seconds"`
	// NATSServer is the nats-server binary the stack ran as separate
	// processes (--nats-server); empty: embedded.
	NATSServer string `json:"nats_server,omitempty"`
	// BulkConsumersInMemory: the node's conversation consumers (and the
	// per-conversation reference's) kept their state in memory.
	BulkConsumersInMemory bool   `json:"bulk_consumers_in_memory,omitempty"`
	Target                string `json:"target"`
	Env                   string `json:"env"`
	// Quarantine is "on" when the quarantine step ran, "off" in a
	// comparison or without a step.
	Quarantine string    `json:"quarantine"`
	Machine    Machine   `json:"machine"`
	StartedAt  time.Time `json:"started_at"`
	Seconds    float64   `json:"seconds"`
	// CeilingMsgsPerSec is the raw JetStream publish + consume-with-ack rate
	// of CeilingMessages messages; 0 when not measured.
	CeilingMsgsPerSec float64 `json:"ceiling_msgs_per_sec"`
	CeilingMessages   int     `json:"ceiling_messages"`
	CeilingSeconds    float64 `json:"ceiling_seconds"`
	// CeilingCPUSeconds is this process's CPU time (user + system) over the
	// ceiling's measurement, from the first publish to the last ack: the
	// fresh NATS server, the publisher and the acking consumer (and the
	// separate nats-server process's, with --nats-server). The node's idle
	// loops run meanwhile too. A mode's CPU.ProcessSeconds (plus
	// NATSSeconds) compares with it.
	CeilingCPUSeconds float64 `json:"ceiling_cpu_seconds,omitempty"`
	// CeilingNATSSeconds is the separate nats-server process's share of
	// CeilingCPUSeconds (--nats-server); 0 with the embedded server.
	CeilingNATSSeconds float64 `json:"ceiling_nats_server_seconds,omitempty"`
	// References are JetStream alone in other shapes, measured with the
	// ceiling: one-consumer-limits (the ceiling on a stream with the bulk
	// stream's Limits retention), per-conversation (one filtered consumer
	// per conversation on such a stream, the bulk lane's topology) and
	// backlog (the whole burst queued first, then consumed by one consumer).
	References []CeilingReport `json:"references,omitempty"`
	Modes      []ModeReport    `json:"modes"`
	// SMTPSource is postfix's smtp-source pushing Messages into the same
	// smtp-sink in the same run, one connection per message as in the
	// issue's reference figures (Sinks smtp-sink only); SMTPSourceKeep the
	// same with its connections kept (-d).
	SMTPSource     *SMTPSourceReport `json:"smtp_source,omitempty"`
	SMTPSourceKeep *SMTPSourceReport `json:"smtp_source_keep,omitempty"`
	// SMTPConns is the email provider's connections to smtp-sink and
	// smtp-source's sessions (Sinks smtp-sink only).
	SMTPConns int `json:"smtp_conns,omitempty"`
	// AccountingExact holds when every mode's accounting is exact.
	AccountingExact bool     `json:"accounting_exact"`
	Notes           []string `json:"notes,omitempty"`
}

// Machine describes where the run ran.
type Machine struct {
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model,omitempty"`
	MemBytes  int64  `json:"mem_bytes,omitempty"`
	GoVersion string `json:"go_version"`
	Postgres  string `json:"postgres,omitempty"`
	// GOGC and GOMEMLIMIT are the Go runtime's settings from the
	// environment, when set: on the self-contained stack they govern the
	// collection of the embedded NATS server's heap too (BENCHMARKS.md).
	GOGC       string `json:"gogc,omitempty"`
	GOMEMLIMIT string `json:"gomemlimit,omitempty"`
}

// ModeReport is one mode's burst.
type ModeReport struct {
	Mode            string `json:"mode"`
	Messages        int    `json:"messages"`
	InvalidMessages int    `json:"invalid_messages"`
	// PublishSeconds is how long publishing the burst took (every publish
	// acknowledged); workers were consuming meanwhile.
	PublishSeconds    float64 `json:"publish_seconds"`
	PublishMsgsPerSec float64 `json:"publish_msgs_per_sec"`
	// DrainSeconds runs from the first publish of the burst until the last
	// burst message is processed (acked and gone from the stream).
	DrainSeconds float64 `json:"drain_seconds"`
	// MsgsPerSec is Messages / DrainSeconds.
	MsgsPerSec     float64 `json:"msgs_per_sec"`
	RatioToCeiling float64 `json:"ratio_to_ceiling"`
	// RatioToPerConversation is MsgsPerSec over the per-conversation
	// reference's rate: the pipeline's own cost, JetStream's cost of the
	// bulk lane's topology set aside. 0 when not measured.
	RatioToPerConversation float64 `json:"ratio_to_per_conversation,omitempty"`
	// CeilingBeforeMsgsPerSec and CeilingAfterMsgsPerSec are the ceiling
	// measured just before the mode (the run's ceiling, or the one after
	// the previous mode) and just after it; RatioToAdjacent is MsgsPerSec
	// over their mean. 0 without bracketing (Config.NoBracket, sync).
	CeilingBeforeMsgsPerSec float64 `json:"ceiling_before_msgs_per_sec,omitempty"`
	CeilingAfterMsgsPerSec  float64 `json:"ceiling_after_msgs_per_sec,omitempty"`
	RatioToAdjacent         float64 `json:"ratio_to_adjacent,omitempty"`
	// Transactional latency during the burst, and with no burst (baseline);
	// nil when not measured (running target).
	TransactionalP50Ms *float64     `json:"transactional_p50_ms"`
	TransactionalP95Ms *float64     `json:"transactional_p95_ms"`
	TransactionalP99Ms *float64     `json:"transactional_p99_ms"`
	TransactionalMaxMs *float64     `json:"transactional_max_ms"`
	TransactionalBurst *Percentiles `json:"transactional_burst"`
	TransactionalBase  *Percentiles `json:"transactional_baseline"`
	// TransactionalAfter is the trickle messages delivered after the burst
	// drained (published before the trickle stopped): a pause of the
	// stream at the end of the drain shows here.
	TransactionalAfter *Percentiles `json:"transactional_after_burst"`
	TransactionalSent  int          `json:"transactional_sent"`
	ErrorRowsWritten   int64        `json:"error_rows_written"`
	// DuplicateSends is how many sends the sinks received for an activation
	// they had already accepted (delivery is at least once; a duplicate is
	// counted here, never in delivered); -1 against a running target.
	DuplicateSends       int64    `json:"duplicate_sends"`
	ErrorRowsPerSec      float64  `json:"error_rows_per_sec"`
	ErrorLogWriteSeconds *float64 `json:"errorlog_write_seconds"`
	ErrorLogFlushes      int64    `json:"errorlog_flushes"`
	PeakRSSBytes         int64    `json:"peak_rss_bytes"`
	// CPU is the stack's CPU time from the burst's first publish to its
	// drain; nil against a running target.
	CPU *CPUReport `json:"cpu,omitempty"`
	// RatioToSMTPSource and RatioToSMTPSourceKeep are MsgsPerSec over
	// Report.SMTPSource's and Report.SMTPSourceKeep's rates.
	RatioToSMTPSource     float64           `json:"ratio_to_smtp_source,omitempty"`
	RatioToSMTPSourceKeep float64           `json:"ratio_to_smtp_source_keep,omitempty"`
	PeakRSSReset          bool              `json:"peak_rss_reset"`
	PeakGoroutines        int               `json:"peak_goroutines"`
	AccountingExact       bool              `json:"accounting_exact"`
	Accounting            []Account         `json:"accounting"`
	Throughput            []Point           `json:"throughput"`
	ErrorRowRate          []Point           `json:"error_row_rate"`
	Latency               []LatencyPoint    `json:"latency"`
	Quarantine            []QuarantineEvent `json:"quarantine_events,omitempty"`
}

// Account is one conversation's accounting at rest.
type Account struct {
	Conversation string `json:"conversation"`
	Accepted     int64  `json:"accepted"`
	Delivered    int64  `json:"delivered"`
	Invalid      int64  `json:"invalid"`
	Failed       int64  `json:"failed"`
	Suppressed   int64  `json:"suppressed"`
	Expired      int64  `json:"expired"`
	Purged       int64  `json:"purged"`
	// SinkDistinct is the number of distinct activations the sinks'
	// ledgers received, the outside check of Delivered (the stored,
	// exactly-once count) on the self-contained stack; -1 against a running
	// target, whose providers' ledgers the load test cannot read.
	SinkDistinct int64 `json:"sink_distinct"`
	// Exact: Accepted = Delivered + Invalid + Failed + Suppressed + Expired
	// + Purged, and Delivered equals SinkDistinct where the ledgers are
	// known.
	Exact bool `json:"exact"`
}

// Point is one 1-second sample.
type Point struct {
	T float64 `json:"t"` // seconds since the mode started
	V float64 `json:"v"`
}

// LatencyPoint summarises one second of transactional latencies.
type LatencyPoint struct {
	T   float64 `json:"t"`
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
	N   int     `json:"n"`
}

// QuarantineEvent records when a conversation was quarantined.
type QuarantineEvent struct {
	Conversation    string  `json:"conversation"`
	AfterSeconds    float64 `json:"after_seconds"`
	ProcessedBefore int64   `json:"processed_before"`
	Purged          int64   `json:"purged"`
}

// CeilingReport is one measurement of JetStream alone: the burst's
// messages published with the run's window and acked by consumers that do
// nothing else, on a fresh server in this process.
type CeilingReport struct {
	// Shape is one-consumer-limits, per-conversation or backlog.
	Shape     string `json:"shape"`
	Consumers int    `json:"consumers"`
	Messages  int    `json:"messages"`
	// Seconds is from the first publish (backlog: the consumer's start,
	// everything queued) to the last ack.
	Seconds    float64 `json:"seconds"`
	MsgsPerSec float64 `json:"msgs_per_sec"`
	// CPUSeconds is this process's CPU time over Seconds (and the separate
	// nats-server process's, with --nats-server).
	CPUSeconds float64 `json:"cpu_seconds"`
	// NATSSeconds is the separate nats-server process's share of
	// CPUSeconds; 0 with the embedded server.
	NATSSeconds float64 `json:"nats_server_seconds,omitempty"`
}

// CPUReport is the self-contained stack's CPU time over a burst: this
// process (the node, the embedded NATS server, the load generator) and the
// local Postgres cluster's processes. The sinks' CPU is not included.
type CPUReport struct {
	ProcessSeconds float64 `json:"process_seconds"`
	// NATSSeconds is the separate nats-server process's, when the stack
	// runs one (--nats-server).
	NATSSeconds     float64 `json:"nats_server_seconds,omitempty"`
	PostgresSeconds float64 `json:"postgres_seconds"`
	TotalSeconds    float64 `json:"total_seconds"`
	// PerThousandHandled is TotalSeconds per 1,000 burst messages given an
	// outcome by a worker (purged ones excluded); PerThousandDelivered per
	// 1,000 of them delivered (0 when none were).
	PerThousandHandled   float64 `json:"per_thousand_handled"`
	PerThousandDelivered float64 `json:"per_thousand_delivered"`
}

// SMTPSourceReport is one run of postfix's smtp-source.
type SMTPSourceReport struct {
	Command          string   `json:"command"`
	Args             []string `json:"args"`
	Messages         int      `json:"messages"`
	Sessions         int      `json:"sessions"`
	KeepsConnections bool     `json:"keeps_connections"`
	Seconds          float64  `json:"seconds"`
	MsgsPerSec       float64  `json:"msgs_per_sec"`
	// CPUSeconds is smtp-source's own user + system time.
	CPUSeconds float64 `json:"cpu_seconds"`
}
