-- Feedback is counted per minute, so that a conversation's complaint and
-- hard-bounce shares are judged over a recent window (feedback.Thresholds.Window,
-- default 24 hours) against the messages delivered in the same window, as the
-- mailbox providers' bulk-sender rules measure a rate, not a lifetime total.
-- Existing rows (totals) become the minute of this migration.
ALTER TABLE feedback_counts ADD COLUMN minute timestamptz NOT NULL DEFAULT date_trunc('minute', now());
ALTER TABLE feedback_counts DROP CONSTRAINT feedback_counts_pkey;
ALTER TABLE feedback_counts ADD CONSTRAINT feedback_counts_pkey PRIMARY KEY (tenant, conversation, minute);
