-- Delivery-status webhooks: the endpoints each tenant registered (package
-- webhook owns the table). The secret is kept to sign every request; it is
-- shown once, at registration. failing_since starts a streak of failed
-- deliveries (cleared by the next success); an endpoint that keeps failing
-- past the configured time is disabled (disabled_at).
CREATE TABLE webhooks (
  id            text        NOT NULL,
  tenant        text        NOT NULL,
  url           text        NOT NULL,
  events        text[]      NOT NULL,
  secret        text        NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  failing_since timestamptz,
  last_error    text        NOT NULL DEFAULT '',
  disabled_at   timestamptz,
  CONSTRAINT webhooks_pkey PRIMARY KEY (id),
  CONSTRAINT webhooks_events_check CHECK (cardinality(events) > 0)
);
CREATE INDEX webhooks_tenant_idx ON webhooks (tenant, created_at);
