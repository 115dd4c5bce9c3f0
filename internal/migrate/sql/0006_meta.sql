-- Facts about the deployment this database belongs to, one row per key,
-- written once at first start and checked at every start after. The key
-- "env" holds the deployment's environment (SLUICE_ENV: dev, test, staging,
-- production): a process configured for another environment refuses to start,
-- so that a test or a staging worker pointed at the production database by
-- mistake stops at the door.
CREATE TABLE sluice_meta (
  key        text        NOT NULL,
  value      text        NOT NULL,
  set_at     timestamptz NOT NULL DEFAULT now(),
  set_by     text        NOT NULL DEFAULT '',
  CONSTRAINT sluice_meta_pkey PRIMARY KEY (key)
);
