-- daily_model_training: every training file handed to ml_training_smart_ensemble, by content
CREATE TABLE dataset_files (
    sha256       text        PRIMARY KEY,
    dataset_path text        NOT NULL,
    training_id  text        NOT NULL UNIQUE,
    claimed_by   text        NOT NULL,  -- the daily run (shared.runs.run_key) that handed it over
    handed_at    timestamptz NOT NULL DEFAULT now()
);
