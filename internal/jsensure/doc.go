// Package jsensure creates sluice's JetStream streams and KV buckets, or
// brings existing ones to the configuration a process expects.
//
// At start every process states what it expects of each stream and bucket it
// uses (SLUICE_TRANSACTIONAL, SLUICE_BULK, SLUICE_ERRORLOG_SPILL, KV_sluice_control,
// KV_sluice_conversations). A missing one is created. An existing one is
// compared field by field:
//
//   - what JetStream can change in place (replicas, max bytes, the duplicates
//     window, subjects, discard policy, message size, KV history, description)
//     is updated, and each change is logged with its old and new value.
//     Scaling replicas from 1 to 3 works on a running cluster: the server
//     copies the stream to the new peers while it keeps serving;
//   - what it cannot (retention, storage) makes the process refuse to start,
//     with an error naming the stream, the field and both values, rather than
//     run on a stream that does not keep the promises sluice makes.
//
// # Replicas and durability
//
// One server: replicas 1 (`sluice dev`, the default of `serve`). A fleet runs
// a three-node JetStream cluster with replicas 3 (`--replicas 3`,
// SLUICE_REPLICAS=3): every stream and bucket survives the loss of one node,
// publishes and reads keep working while it is down, and a publish is
// acknowledged only once a majority of the replicas has it.
//
// A majority holding a message is not the same as a majority having it on
// disk. By default nats-server flushes its stores to disk every two minutes
// (sync_interval), and the 2025 Jepsen analysis of NATS 2.10 showed that a
// power loss (or kernel crash) on a majority of nodes within that interval
// loses writes that were acknowledged. sluice acknowledges an activation to
// its API client once JetStream acknowledged the publish, so run the cluster
// with
//
//	jetstream {
//	    store_dir: /var/lib/nats
//	    sync_interval: always
//	}
//
// which fsyncs every write before it is acknowledged. The trade-off is
// throughput: each acknowledged write waits for an fsync (batched by the
// server across concurrent publishes). Keeping the default interval is a
// defensible choice only when the nodes cannot lose power together (separate
// failure domains, battery-backed write caches) and losing up to the interval
// of acknowledged messages on a correlated power loss is acceptable; a process
// crash (kill -9) loses nothing either way, since the operating system still
// holds the written pages.
package jsensure
