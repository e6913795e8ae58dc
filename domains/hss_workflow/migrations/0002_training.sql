-- ml_training_smart_ensemble: the processed dataset (in batches) and the ensemble's metrics
CREATE TABLE training_rows (
    training_id  text    NOT NULL,
    row_index    integer NOT NULL,
    batch_index  integer NOT NULL,
    song_id      text    NOT NULL,
    is_hit       smallint NOT NULL CHECK (is_hit IN (0, 1)),
    features     jsonb   NOT NULL,
    PRIMARY KEY (training_id, row_index)
);
CREATE INDEX training_rows_batch ON training_rows (training_id, batch_index);

CREATE TABLE training_runs (
    training_id  text        PRIMARY KEY,
    dataset_path text        NOT NULL,
    rows         integer     NOT NULL,
    rejected     integer     NOT NULL,
    batches      integer     NOT NULL,
    job_id       text,
    finished_at  timestamptz
);

CREATE TABLE training_model_metrics (
    training_id  text             NOT NULL REFERENCES training_runs ON DELETE CASCADE,
    model        text             NOT NULL,
    accuracy     double precision NOT NULL,
    f1           double precision NOT NULL,
    weight       double precision NOT NULL,
    PRIMARY KEY (training_id, model)
);
