-- A conversation's default time-to-live: the API stamps each activation
-- that does not carry its own expires_at with acceptance time + ttl_seconds,
-- and a worker that takes the message after that counts it expired instead
-- of sending it. NULL: messages do not expire unless their row says so.
ALTER TABLE conversations ADD COLUMN ttl_seconds integer;
ALTER TABLE conversations ADD CONSTRAINT conversations_ttl_check CHECK (ttl_seconds IS NULL OR ttl_seconds > 0);
