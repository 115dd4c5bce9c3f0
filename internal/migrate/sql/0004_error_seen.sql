-- Which activation stream sequences the error log has already counted, so that
-- a message redelivered after its count committed (a worker killed between the
-- commit and the ack, an ack lost on the wire) is never counted twice, in any
-- mode, including those that keep no row per event.
--
-- One row per written batch: the batch's stream sequences as a multirange,
-- which stays compact because a conversation's messages arrive in sequence
-- order. Rows older than the redelivery horizon are useless; errorlog deletes
-- them (a handful of rows, one per batch, not a mass DELETE of events).
CREATE TABLE error_seen (
  id          bigserial       PRIMARY KEY,
  source      text            NOT NULL,   -- the stream's identity: name and creation time
  seqs        int8multirange  NOT NULL,
  recorded_at timestamptz     NOT NULL DEFAULT now()
);
CREATE INDEX error_seen_seqs_idx ON error_seen USING gist (seqs);
CREATE INDEX error_seen_recorded_at_idx ON error_seen (recorded_at);
