// Package control is sluice's control plane: the run-time settings that
// operators change for the whole fleet at once (the error log's mode, intake,
// conversation states, channels), stored in the NATS KV bucket sluice_control,
// watched by every worker, and audited in PostgreSQL.
//
// # Keys
//
// Every key of the bucket holds one JSON document of the same shape, the value
// wrapped with who set it and when (see [Setting]):
//
//	{"value": <value>, "by": "<actor>", "at": "<RFC 3339 time>"}
//
// The keys and their values:
//
//	errorlog.mode                        errorlog.Mode: {"mode": "sample", "first": 100, "then": 1000, "window": "1m0s"}
//	intake                               IntakeStatus: {"paused": true}
//	conversation.<tenant>.<conversation> ConversationStatus: {"state": "paused", "reason": "..."}
//	channel.<channel>                    ChannelStatus: {"disabled": true}
//
// A key that is not set (or was deleted) has its default value: the mode
// configured at first start (Options.DefaultErrorLogMode) for errorlog.mode,
// intake running, a conversation active, a channel enabled. Tenant and
// conversation ids are 1 to 64 characters of [A-Za-z0-9_-] (the rule of
// wire.ValidToken), so each is one subject token; a channel is a
// dispatch.Channel.
//
// # Changes
//
// Every change goes through one path: read the key, compute the new value,
// write it with a compare-and-set on the revision that was read (retrying from
// the newer value when another writer got there first), then insert one row
// into control_audit (actor, key, old value, new value, with the time stored in
// the key). The compare-and-set makes the audited old value exactly the value
// that was replaced, even under concurrent changes, and lets a change refuse a
// transition (a stopped conversation stays stopped). A change over a value
// that cannot be decoded replaces it, and its audit row keeps the stored text
// as {"unreadable": "..."}.
//
// The KV write comes first because it is the change: workers act on it within
// a second. If the audit insert then fails, the change stays applied, the
// failure is logged, and the error returned wraps [ErrAudit] and says so; the
// bucket's history (16 revisions per key) still records who, when and what.
// A Store opened without a database pool (workers that only watch) writes no
// audit rows at all; its changes are recorded in the bucket's history only.
//
// # Watching
//
// The Watch methods deliver the current value at once and then every change
// (the multi-key ones, WatchConversations and WatchChannels, the value of
// every key that is set, then a call to their synced callback), from an
// ordered KV watcher: a change made anywhere reaches every watching
// process in milliseconds, well within the second the fleet is promised. They
// call their callback from a single goroutine and return when the context
// ends. A value that cannot be decoded or validated (written by hand, say) is
// logged and skipped, so a worker keeps its last good setting.
//
// # Operations
//
// [Store.TopErrorsReport] (errorlog.TopErrors) lists the conversations with the most undeliverable messages over
// a recent window, from the exact per-minute counters in error_counts. The
// operators' controls are plain methods that take the actor to audit:
// [Store.ChangeErrorLogMode], [Store.ChangeIntake], [Store.ChangeChannel],
// [Store.ChangeConversation] (pause, resume), [Store.StopConversation] (stop
// and purge the queued messages through [StopConfig.Purge], adding them to
// conversations.purged), [Store.Conversations] (by tenant and state), and
// their readers. This package serves no HTTP: package api maps them to the
// /v1/admin/ routes and decides who may call which; `sluice ctl` is their
// client. [Store.Quarantine] is the automatic quarantine's change.
//
// # Environment fence
//
// [CheckEnv] records the deployment's environment (SLUICE_ENV) at first
// start, in Postgres (sluice_meta) and in the bucket (key env), and refuses a
// process configured for another one, naming both. [RefuseProduction] is the
// fence of tools that write test data (sluice loadtest, the test helpers).
//
// # Database fence
//
// [CheckDatabase] records the PostgreSQL cluster's system identifier
// (pg_control_system()) at first start, in sluice_meta and in the bucket
// (key database.system_identifier), and refuses a process that finds
// another cluster behind its URL, naming both identifiers: a second server
// answering at the address, or a restore into a new cluster. Nodes run
// [Store.VerifyDatabase] in /readyz. After a real restore,
// [RebindDatabase] (`sluice migrate rebind --confirm <id>`) binds the
// deployment to the new cluster, audited in control_audit.
package control
