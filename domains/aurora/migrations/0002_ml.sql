-- ml_training_pipeline: the data handed from task to task, and the model registry.

-- A run's training snapshot and feature sets (compressed numpy archives, no pickles), keyed by
-- the run's key so a retried or rerun task overwrites its own rows and nothing else.
CREATE TABLE training_datasets (
    run_key     text        NOT NULL,
    name        text        NOT NULL,       -- snapshot:<table> | features:<target>
    as_of       timestamptz NOT NULL,
    rows        integer     NOT NULL,
    columns     text[]      NOT NULL,
    payload     bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_key, name)
);
CREATE INDEX training_datasets_created ON training_datasets (created_at);

-- Every trained version, promoted or not: its artifact in the library's native format,
-- the hold-out metrics of this version, of the naive baseline and of the version that was
-- current when it was trained (on the same hold-out), and the decision.
CREATE TABLE model_registry (
    model_name        text        NOT NULL,   -- aurora_energy | aurora_mood | aurora_sleep_quality
    version           integer     NOT NULL,
    run_key           text        NOT NULL,
    as_of             timestamptz NOT NULL,   -- the end of the training window
    trained_at        timestamptz NOT NULL DEFAULT now(),
    algorithm         text        NOT NULL,   -- xgboost | lightgbm | sklearn-hgb
    artifact_format   text        NOT NULL,   -- xgboost-ubj | lightgbm-text | sklearn-joblib
    artifact          bytea       NOT NULL,
    artifact_sha256   text        NOT NULL,
    features          text[]      NOT NULL,
    params            jsonb       NOT NULL,
    metrics           jsonb       NOT NULL,   -- this version on the hold-out
    baseline_metrics  jsonb       NOT NULL,   -- the naive baseline on the same hold-out
    current_metrics   jsonb,                  -- the then-current version on the same hold-out
    training_rows     integer     NOT NULL,
    holdout_rows      integer     NOT NULL,
    holdout_from      timestamptz NOT NULL,
    promoted          boolean     NOT NULL,
    decision          text        NOT NULL,
    is_current        boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (model_name, version),
    UNIQUE (model_name, run_key)
);
CREATE UNIQUE INDEX model_registry_one_current ON model_registry (model_name) WHERE is_current;
