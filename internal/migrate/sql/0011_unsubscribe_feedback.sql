-- Unsubscribe and feedback. A suppression can now come from a recipient's
-- one-click unsubscribe (source unsubscribe) or from a bounce or complaint
-- reported to POST /v1/feedback (source feedback).
ALTER TABLE suppressions DROP CONSTRAINT suppressions_source_check;
ALTER TABLE suppressions ADD CONSTRAINT suppressions_source_check
  CHECK (source IN ('provider', 'api', 'unsubscribe', 'feedback'));

-- Per conversation, the feedback reported for its messages: the shares of
-- hard bounces and complaints among its delivered messages decide whether
-- it is paused (package feedback owns the table).
CREATE TABLE feedback_counts (
  tenant       text   NOT NULL,
  conversation text   NOT NULL,
  hard_bounces bigint NOT NULL DEFAULT 0,
  soft_bounces bigint NOT NULL DEFAULT 0,
  complaints   bigint NOT NULL DEFAULT 0,
  CONSTRAINT feedback_counts_pkey PRIMARY KEY (tenant, conversation)
);
