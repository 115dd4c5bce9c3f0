-- The campaign API: conversations, API keys, and the progress of activation
-- requests made with an Idempotency-Key.

-- One row per conversation (campaign). The workers never read this table: the
-- API publishes each conversation to the NATS KV bucket sluice_conversations
-- (key <tenant>.<id>) and the workers cache that.
--
-- accepted counts the activations the stream has stored for the conversation
-- (incremented by the API as publishes are acknowledged); purged counts queued
-- activations removed by a stop. With delivery_counts and error_counts they
-- give the accounting invariant accepted = delivered + invalid + failed + purged.
CREATE TABLE conversations (
  tenant           text        NOT NULL,
  id               text        NOT NULL,
  name             text        NOT NULL,
  channel          text        NOT NULL,
  lane             text        NOT NULL,
  template         jsonb       NOT NULL,   -- {"subject": ..., "text": ..., "html": ...}
  template_version integer     NOT NULL DEFAULT 1,
  state            text        NOT NULL DEFAULT 'active',
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  accepted         bigint      NOT NULL DEFAULT 0,
  purged           bigint      NOT NULL DEFAULT 0,
  CONSTRAINT conversations_pkey PRIMARY KEY (tenant, id),
  -- Both are NATS subject tokens: sluice.act.<lane>.<tenant>.<id>.
  CONSTRAINT conversations_tenant_check CHECK (tenant ~ '^[A-Za-z0-9_-]{1,64}$'),
  CONSTRAINT conversations_id_check CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
  CONSTRAINT conversations_channel_check CHECK (channel IN ('email', 'sms', 'push')),
  CONSTRAINT conversations_lane_check CHECK (lane IN ('transactional', 'bulk')),
  CONSTRAINT conversations_state_check CHECK (state IN ('active', 'paused', 'quarantined', 'stopped')),
  CONSTRAINT conversations_counts_check CHECK (accepted >= 0 AND purged >= 0)
);
CREATE INDEX conversations_state_idx ON conversations (state) WHERE state <> 'active';

-- API keys. A key is shown once at creation and only its SHA-256 is kept; id
-- is the public part of the key (sk_<tenant>_<id>_<secret>) used to find the
-- row, list and revoke it.
CREATE TABLE api_keys (
  id          text        NOT NULL,
  tenant      text        NOT NULL,
  name        text        NOT NULL DEFAULT '',
  hash        bytea       NOT NULL,
  scopes      text[]      NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at  timestamptz,
  CONSTRAINT api_keys_pkey PRIMARY KEY (id),
  CONSTRAINT api_keys_hash_key UNIQUE (hash),
  CONSTRAINT api_keys_hash_check CHECK (octet_length(hash) = 32),
  CONSTRAINT api_keys_tenant_check CHECK (tenant ~ '^[A-Za-z0-9_-]{1,64}$'),
  CONSTRAINT api_keys_scopes_check CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['send', 'read', 'admin']::text[])
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant);

-- Activation requests made with an Idempotency-Key: who is publishing them
-- (a lease, so a crashed attempt can be taken over), how far they got, and
-- for completed ones the answer to replay.
--
--   state        running (owner holds the lease until lease_until), failed
--                (ended early; a retry with the same key continues) or done
--                (a retry replays response and publishes nothing).
--   rows_done    rows 1..rows_done of the body are stored in the stream and
--                counted in conversations.accepted.
--   rows_hash    a SHA-256 chain over the raw bytes of rows 1..rows_done, so a
--                retry is checked to send the same rows before any is skipped.
--   extra_rows   rows after rows_done also stored and counted (at most the
--                publish window, when a publish failed in the middle).
--   accepted     rows_done + cardinality(extra_rows).
CREATE TABLE activation_requests (
  tenant          text        NOT NULL,
  conversation    text        NOT NULL,
  idempotency_key text        NOT NULL,
  state           text        NOT NULL,
  owner           text        NOT NULL,
  lease_until     timestamptz NOT NULL,
  rows_done       bigint      NOT NULL DEFAULT 0,
  rows_hash       bytea       NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea,
  extra_rows      bigint[]    NOT NULL DEFAULT '{}',
  accepted        bigint      NOT NULL DEFAULT 0,
  response        jsonb,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT activation_requests_pkey PRIMARY KEY (tenant, conversation, idempotency_key),
  CONSTRAINT activation_requests_conversation_fkey FOREIGN KEY (tenant, conversation)
    REFERENCES conversations (tenant, id),
  CONSTRAINT activation_requests_state_check CHECK (state IN ('running', 'failed', 'done')),
  CONSTRAINT activation_requests_done_check CHECK (state <> 'done' OR response IS NOT NULL)
);
CREATE INDEX activation_requests_created_at_idx ON activation_requests (created_at);
