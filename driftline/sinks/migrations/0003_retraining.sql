-- Retraining, model registry and A/B tests (driftline/retrain/, docs/RETRAINING.md).
-- Small tables, not partitioned; the training sample is bounded per model version and by
-- event-time retention (driftline/retrain/sample.py), the rest is history kept as is.

-- The registry: one row per model version (0001 created the table; this adds the lifecycle).
ALTER TABLE model_versions
    ADD COLUMN parent_version    text,
    ADD COLUMN status            text        NOT NULL DEFAULT 'candidate'
        CHECK (status IN ('candidate', 'challenger', 'champion', 'retired', 'rolled_back')),
    ADD COLUMN metrics           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN artifact_path     text,
    ADD COLUMN artifact_sha256   text,
    ADD COLUMN run_id            text,
    ADD COLUMN status_changed_at timestamptz NOT NULL DEFAULT now();
-- At most one champion and one challenger per model, whatever the processes do.
CREATE UNIQUE INDEX model_versions_one_champion ON model_versions (model) WHERE status = 'champion';
CREATE UNIQUE INDEX model_versions_one_challenger ON model_versions (model) WHERE status = 'challenger';

-- Every status change of a version, with why.
CREATE TABLE model_version_history (
    id            bigserial   PRIMARY KEY,
    model         text        NOT NULL,
    model_version text        NOT NULL,
    from_status   text,
    to_status     text        NOT NULL,
    reason        text        NOT NULL,
    changed_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX model_version_history_model_time ON model_version_history (model, changed_at DESC);

-- Retraining runs (0001 created the table): policy, trigger, reason, error.
ALTER TABLE retraining_runs
    ADD COLUMN policy       text,
    ADD COLUMN trigger_kind text,
    ADD COLUMN reason       text,
    ADD COLUMN error        text;

-- Every evaluation of a retraining policy, fired or suppressed, with the reason.
CREATE TABLE retraining_evaluations (
    id            bigserial   PRIMARY KEY,
    model         text        NOT NULL,
    policy        text        NOT NULL,
    trigger_kind  text        NOT NULL,
    event_id      text,
    fired         boolean     NOT NULL,
    reason        text        NOT NULL,
    run_id        text,
    details       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    evaluated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX retraining_evaluations_model_time ON retraining_evaluations (model, evaluated_at DESC);
CREATE INDEX retraining_evaluations_fired ON retraining_evaluations (model, policy, evaluated_at DESC) WHERE fired;

-- A/B tests: one running test per model at most.
CREATE TABLE ab_tests (
    test_id            text             PRIMARY KEY,
    model              text             NOT NULL,
    champion_version   text             NOT NULL,
    challenger_version text             NOT NULL,
    traffic_share      double precision NOT NULL,
    status             text             NOT NULL
        CHECK (status IN ('running', 'promoted', 'rolled_back', 'inconclusive', 'stopped')),
    started_at         timestamptz      NOT NULL DEFAULT now(),
    decided_at         timestamptz,
    looks              integer          NOT NULL DEFAULT 0,
    p_value            double precision NOT NULL DEFAULT 1.0,  -- always-valid: running minimum
    reason             text,
    evidence           jsonb            NOT NULL DEFAULT '{}'::jsonb
);
CREATE UNIQUE INDEX ab_tests_one_running ON ab_tests (model) WHERE status = 'running';
CREATE INDEX ab_tests_model_time ON ab_tests (model, started_at DESC);

-- The training sample: hash-chosen predictions (by prediction_id, a rate per model), the
-- label filled in when it arrives. Bounded per (model, model_version) and by event time.
CREATE TABLE training_samples (
    prediction_id text             NOT NULL,
    model         text             NOT NULL,
    model_version text             NOT NULL,
    event_time    timestamptz      NOT NULL,
    features      jsonb            NOT NULL,
    prediction    jsonb,
    score         double precision,
    latency_ms    double precision,
    error         text,
    label         jsonb,
    labelled_at   timestamptz,
    inserted_at   timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (prediction_id, model)
);
CREATE INDEX training_samples_version_time ON training_samples (model, model_version, event_time DESC, prediction_id DESC);
CREATE INDEX training_samples_labelled ON training_samples (model, labelled_at) WHERE label IS NOT NULL;
CREATE INDEX training_samples_event_time ON training_samples (event_time);

-- Labels that arrived before their prediction (or whose prediction was not sampled: those
-- expire with the retention).
CREATE TABLE training_pending_labels (
    prediction_id text        PRIMARY KEY,
    label         jsonb       NOT NULL,
    label_time    timestamptz NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX training_pending_labels_received ON training_pending_labels (received_at);
