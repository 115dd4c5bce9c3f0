-- "Which conversations fail most in the last N minutes" (sluice ctl errors top,
-- GET /v1/admin/errors/top) scans error_counts by minute; the primary key has
-- minute last. A plain index: INCLUDE (count) would defeat HOT updates of the
-- counter upserts.
CREATE INDEX error_counts_minute_idx ON error_counts (minute);
