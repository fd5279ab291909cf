-- Alert history for `driftline notify` and `driftline alerts list`: one row per alert, channel
-- and action (firing, escalated, resolved), with what was sent and how it went.
ALTER TABLE alerts
    ADD COLUMN model         text,
    ADD COLUMN model_version text,
    ADD COLUMN type          text,
    ADD COLUMN subject       text,
    ADD COLUMN severity      text,
    ADD COLUMN title         text;
UPDATE alerts SET action = 'firing' WHERE action IS NULL;
ALTER TABLE alerts ALTER COLUMN action SET NOT NULL;
ALTER TABLE alerts DROP CONSTRAINT alerts_pkey;
ALTER TABLE alerts ADD PRIMARY KEY (alert_id, channel, action);
CREATE INDEX alerts_model_created ON alerts (model, created_at DESC);
