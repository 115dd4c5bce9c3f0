-- The control plane's audit trail and the workers' delivered counters.

-- Every change made through the control plane (error-log mode, conversation
-- state, intake, channels): who, when, the old and the new value. The NATS KV
-- bucket sluice_control keeps the live value and its history; this table keeps
-- the record for as long as the database does.
CREATE TABLE control_audit (
  id         bigserial   PRIMARY KEY,
  at         timestamptz NOT NULL DEFAULT now(),
  actor      text        NOT NULL,
  key        text        NOT NULL,
  old_value  jsonb,
  new_value  jsonb
);
CREATE INDEX control_audit_key_at_idx ON control_audit (key, at);

-- Messages delivered to a provider, per conversation, channel and minute,
-- written in batches by the workers (never a row per message).
CREATE TABLE delivery_counts (
  tenant       text        NOT NULL,
  conversation text        NOT NULL,
  channel      text        NOT NULL,
  minute       timestamptz NOT NULL,
  count        bigint      NOT NULL,
  CONSTRAINT delivery_counts_pkey PRIMARY KEY (tenant, conversation, channel, minute)
);
