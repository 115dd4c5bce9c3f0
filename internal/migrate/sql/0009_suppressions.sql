-- Suppression: per tenant, the recipients that must not be sent to. An
-- address is never stored: hash is the HMAC-SHA256, under the deployment's
-- mask key (SLUICE_ERRORLOG_MASK_KEY), of the normalised address (trimmed;
-- email addresses lower-cased; E.164 numbers and push tokens as they are).
-- Package suppression owns the table; the workers never query it per
-- message: each loads it once at start and follows the changes published
-- on the NATS stream SLUICE_SUPPRESSIONS.
--
--   kind     email, phone or token (what the normalised address looked like)
--   reason   why: a provider's permanent refusal (recipient_rejected,
--            unregistered, unsubscribed, invalid_number), or what the tenant
--            said through the API (manual by default)
--   source   provider (a worker), api (a tenant's key)
CREATE TABLE suppressions (
  tenant     text        NOT NULL,
  hash       bytea       NOT NULL,
  kind       text        NOT NULL,
  reason     text        NOT NULL,
  source     text        NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT suppressions_pkey PRIMARY KEY (tenant, hash),
  CONSTRAINT suppressions_hash_check CHECK (octet_length(hash) = 32),
  CONSTRAINT suppressions_tenant_check CHECK (tenant ~ '^[A-Za-z0-9_-]{1,64}$'),
  CONSTRAINT suppressions_kind_check CHECK (kind IN ('email', 'phone', 'token')),
  CONSTRAINT suppressions_source_check CHECK (source IN ('provider', 'api'))
);
