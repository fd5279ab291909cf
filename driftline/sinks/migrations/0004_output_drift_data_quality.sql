-- Output drift (detectors/output.py): the verdict on the model's outputs per window, with the
-- figures the drift dashboard plots (score distance, low-confidence share) as columns and the
-- whole output evaluation (signals, confidence quantiles, class shares, CBPE agreement) as jsonb.
ALTER TABLE window_metrics
    ADD COLUMN output_drifted        boolean,
    ADD COLUMN output_severity       text,              -- warning | critical (agrees with CBPE)
    ADD COLUMN score_drift           double precision,  -- 1-Wasserstein, score units
    ADD COLUMN low_confidence_ratio  double precision,
    ADD COLUMN output                jsonb;
CREATE INDEX window_metrics_output_drifted_time ON window_metrics (window_start DESC)
    WHERE output_drifted;

-- Data quality (detectors/quality.py): findings per window (feature, check, figures) as jsonb and
-- their count (new features excluded) as a column; one row per finding also arrives in
-- drift_events as a `data_quality` event.
ALTER TABLE window_metrics
    ADD COLUMN data_quality_issues   integer,
    ADD COLUMN data_quality          jsonb;
CREATE INDEX window_metrics_quality_time ON window_metrics (window_start DESC)
    WHERE data_quality_issues > 0;
