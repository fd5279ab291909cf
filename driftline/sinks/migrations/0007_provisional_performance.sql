-- Provisional performance (issue 15 item 7): a performance window is written as soon as its data
-- window closes and rewritten (same key: an upsert) as labels arrive, with `final` false, until
-- the label horizon passes and the final row replaces it (`final` true). Rows written before
-- this migration were all final.
ALTER TABLE performance_windows ADD COLUMN final boolean NOT NULL DEFAULT true;
