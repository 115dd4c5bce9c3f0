-- Every counted event carries the outcome the pipeline decided for it, so that
-- readers (the API's counts, sluice ctl errors top, the load test, dashboards)
-- read the outcome instead of re-deriving it from the reason's spelling.
--
-- The backfill applies the rule this release's wire.OutcomeOf applies: the
-- reasons of a bad envelope or a bad address are invalid, everything else (a
-- provider's refusal, max_deliveries) failed. Rows written from now on carry
-- the outcome decided when the message was handled.
ALTER TABLE error_counts ADD COLUMN outcome text;
UPDATE error_counts SET outcome = CASE WHEN reason IN (
    'undecodable', 'unknown_schema', 'missing_field', 'subject_mismatch', 'vars_too_large',
    'empty', 'syntax', 'too_long', 'bad_domain', 'not_e164', 'invalid_number', 'bad_token', 'unknown_channel')
  THEN 'invalid' ELSE 'failed' END
WHERE outcome IS NULL;
ALTER TABLE error_counts ALTER COLUMN outcome SET NOT NULL;
ALTER TABLE error_counts ADD CONSTRAINT error_counts_outcome_check CHECK (outcome IN ('invalid', 'failed', 'suppressed', 'expired'));

-- Delivered is counted exactly once per activation, like the other outcomes:
-- the error log's writer adds it in the same transaction that records the
-- message's stream sequence in error_seen, and the message is acked after.
COMMENT ON TABLE delivery_counts IS 'Messages delivered to a provider, per conversation, channel and minute; each activation counted once (errorlog writer, deduplicated by stream sequence through error_seen).';
