-- The error log: one row per undeliverable message, and exact per-minute counters.
--
-- error_log is partitioned by day on event_time. errorlog.Log creates the day
-- partitions (error_log_pYYYYMMDD, UTC) ahead of time; rows for days without a
-- partition land in error_log_default. Retention drops whole partitions, never
-- mass DELETE.

CREATE TABLE error_log (
  event_id     text        NOT NULL,   -- stable per event: activation id, or "seq:<stream seq>" for undecodable messages
  event_time   timestamptz NOT NULL,   -- the activation's enqueue time (stable across redeliveries); partition key
  recorded_at  timestamptz NOT NULL DEFAULT now(),
  tenant       text        NOT NULL,
  conversation text        NOT NULL,
  lane         text        NOT NULL,
  channel      text        NOT NULL,
  reason       text        NOT NULL,
  detail       text        NOT NULL DEFAULT '',
  address      text        NOT NULL DEFAULT '',  -- masked by default
  CONSTRAINT error_log_pkey PRIMARY KEY (event_id, event_time)
) PARTITION BY RANGE (event_time);

CREATE TABLE error_log_default PARTITION OF error_log DEFAULT;

-- On the partitioned parent, so every partition gets it.
CREATE INDEX error_log_conversation_time_idx ON error_log (conversation, event_time);

-- Exact counts per (tenant, conversation, channel, reason) and minute of recording,
-- derived in the same transaction from the error_log rows that were really new.
CREATE TABLE error_counts (
  tenant       text        NOT NULL,
  conversation text        NOT NULL,
  channel      text        NOT NULL,
  reason       text        NOT NULL,
  minute       timestamptz NOT NULL,
  count        bigint      NOT NULL,
  CONSTRAINT error_counts_pkey PRIMARY KEY (tenant, conversation, channel, reason, minute)
);
