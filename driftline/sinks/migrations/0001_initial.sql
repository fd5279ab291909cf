-- driftline PostgreSQL store, version 1.
-- Applied once, in one transaction, by `driftline db upgrade` (and by `driftline sink postgres`
-- at start); recorded in schema_migrations. Unqualified names: the objects go into the first
-- schema of the connection's search_path.
--
-- Time-series tables are partitioned by day (RANGE on a timestamptz, UTC days); partitions are
-- named <table>_pYYYYMMDD and created by driftline/sinks/store.py ahead of time (yesterday ..
-- +7 days) and on demand for any day a write needs. Retention drops whole partitions.
-- A partitioned table's primary key must contain the partition key, hence window_start /
-- event_time in every key below.

-- One row per closed data window (type "window" on the metrics topic).
CREATE TABLE window_metrics (
    model                 text             NOT NULL,
    model_version         text             NOT NULL,
    window_start          timestamptz      NOT NULL,
    window_end            timestamptz      NOT NULL,
    status                text             NOT NULL,   -- evaluated | insufficient_samples
    drifted               boolean          NOT NULL,
    drift_share           double precision,
    n_records             bigint           NOT NULL,
    error_count           bigint,
    error_rate            double precision,
    latency_p50_seconds   double precision,
    latency_p95_seconds   double precision,
    latency_p99_seconds   double precision,
    mean_score            double precision,
    estimated_accuracy    double precision,            -- CBPE, label-free
    estimated_performance jsonb,
    reasons               text[],
    drifted_features      text[],
    multivariate          jsonb,
    prediction_tests      jsonb,
    summary               jsonb,                       -- the evaluation's whole summary
    event_ids             text[],
    sources               integer[],
    written_at            timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (model, model_version, window_start)
) PARTITION BY RANGE (window_start);
CREATE INDEX window_metrics_model_time ON window_metrics (model, window_start DESC);
CREATE INDEX window_metrics_drifted_time ON window_metrics (window_start DESC) WHERE drifted;

-- One row per feature per evaluated window: the verdict test, the corrected p-value and the
-- effect gate; every test of the feature (KS, PSI, JS, Hellinger, Wasserstein...) in `tests`.
CREATE TABLE feature_drift (
    model            text             NOT NULL,
    model_version    text             NOT NULL,
    window_start     timestamptz      NOT NULL,
    window_end       timestamptz      NOT NULL,
    feature          text             NOT NULL,
    kind             text,                             -- numeric | categorical
    test             text,                             -- the verdict test
    statistic        double precision,
    p_value          double precision,
    adjusted_p_value double precision,
    alpha            double precision,
    effect_measure   text,
    effect           double precision,
    min_effect       double precision,
    drifted          boolean          NOT NULL,
    critical         boolean,
    n                bigint,
    missing          bigint,
    invalid          bigint,
    missing_rate     double precision,
    tests            jsonb,
    written_at       timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (model, model_version, window_start, feature)
) PARTITION BY RANGE (window_start);
CREATE INDEX feature_drift_model_feature_time ON feature_drift (model, feature, window_start DESC);

-- One row per performance window (type "performance_window": labels joined).
CREATE TABLE performance_windows (
    model             text             NOT NULL,
    model_version     text             NOT NULL,
    window_start      timestamptz      NOT NULL,
    window_end        timestamptz      NOT NULL,
    labelled          bigint           NOT NULL,
    label_coverage    double precision,
    accuracy          double precision,
    precision         double precision,
    recall            double precision,
    f1                double precision,
    roc_auc           double precision,
    metrics           jsonb,
    baseline_accuracy double precision,
    accuracy_drop     double precision,
    event_ids         text[],
    sources           integer[],
    written_at        timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (model, model_version, window_start)
) PARTITION BY RANGE (window_start);
CREATE INDEX performance_windows_model_time ON performance_windows (model, window_start DESC);

-- Drift events from the alerts topic. event_time is deterministic (window_start, or for a
-- concept-drift detection the event time of the prediction that triggered it), so a replayed
-- event lands in the same partition and the same key: written once.
CREATE TABLE drift_events (
    event_id       text             NOT NULL,
    event_time     timestamptz      NOT NULL,
    schema_version integer,
    type           text             NOT NULL,
    severity       text             NOT NULL,
    model          text             NOT NULL,
    model_version  text             NOT NULL,
    feature        text,
    test           text,
    statistic      double precision,
    p_value        double precision,
    threshold      double precision,
    window_start   timestamptz,
    window_end     timestamptz,
    detected_at    timestamptz      NOT NULL,
    evidence       jsonb            NOT NULL,
    written_at     timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, event_time)
) PARTITION BY RANGE (event_time);
CREATE INDEX drift_events_model_time ON drift_events (model, event_time DESC);
CREATE INDEX drift_events_type_time ON drift_events (type, event_time DESC);

-- Notification outcomes, one row per alert and channel (written by the notification work).
-- Small, so not partitioned: retention deletes rows older than postgres.retention_days.
CREATE TABLE alerts (
    alert_id    text        NOT NULL,
    channel     text        NOT NULL,
    event_id    text,
    action      text,                                  -- e.g. firing | escalation | resolved
    status      text        NOT NULL,                  -- e.g. pending | sent | failed | suppressed
    attempts    integer     NOT NULL DEFAULT 0,
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (alert_id, channel)
);
CREATE INDEX alerts_event ON alerts (event_id);
CREATE INDEX alerts_created ON alerts (created_at);

-- For a later issue (retraining): simple, not partitioned, not subject to retention.
CREATE TABLE model_versions (
    model         text        NOT NULL,
    model_version text        NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    deployed_at   timestamptz,
    retired_at    timestamptz,
    metadata      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (model, model_version)
);

CREATE TABLE retraining_runs (
    run_id           text        PRIMARY KEY,
    model            text        NOT NULL,
    from_version     text,
    to_version       text,
    trigger_event_id text,
    status           text        NOT NULL,
    requested_at     timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    details          jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX retraining_runs_model_time ON retraining_runs (model, requested_at DESC);

CREATE TABLE reference_profiles (
    model         text        NOT NULL,
    model_version text        NOT NULL,
    fingerprint   text,
    profile       jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, model_version)
);
