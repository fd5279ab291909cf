-- Feature-importance drift (detectors/importance.py): per window and model version, each listed
-- feature's importance and share of the total (mean |attribution|, or mutual information with the
-- prediction) next to the reference's, its rank before and after, and whether its share moved by
-- at least `importance.min_share_change` (`changed`). At most `importance.max_features` features
-- per window (the changed ones first), so the table stays bounded with thousands of features.
-- The `importance_drift` events themselves arrive in drift_events.
CREATE TABLE feature_importance (
    model                text             NOT NULL,
    model_version        text             NOT NULL,
    window_start         timestamptz      NOT NULL,
    window_end           timestamptz      NOT NULL,
    feature              text             NOT NULL,
    source               text             NOT NULL,  -- attributions | prediction_mi | label_mi
    importance           double precision,
    reference_importance double precision,
    share                double precision,           -- of the window's total importance
    reference_share      double precision,
    share_change         double precision,
    rank                 integer,                    -- 1 = most important
    reference_rank       integer,
    changed              boolean          NOT NULL,
    window_drifted       boolean          NOT NULL,  -- the window had importance drift
    n                    bigint,                     -- records behind the window's importances
    written_at           timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (model, model_version, window_start, feature)
) PARTITION BY RANGE (window_start);
CREATE INDEX feature_importance_model_feature_time
    ON feature_importance (model, feature, window_start DESC);
