-- Operator keys: the credential of the fleet-wide controls (error-log mode,
-- intake, channels, top errors) and of every tenant's conversations. An
-- operator key belongs to no tenant: its tenant is NULL and its scopes are
-- exactly {operator}. A tenant's key keeps a tenant and tenant scopes only
-- (send, read, admin), so no tenant key can carry the operator scope.
ALTER TABLE api_keys ALTER COLUMN tenant DROP NOT NULL;
ALTER TABLE api_keys DROP CONSTRAINT api_keys_scopes_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scopes_check CHECK (
  cardinality(scopes) > 0 AND (
    (tenant IS NOT NULL AND scopes <@ ARRAY['send', 'read', 'admin']::text[])
    OR (tenant IS NULL AND scopes = ARRAY['operator']::text[])
  )
);
