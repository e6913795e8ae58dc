-- One row per output of every ecommerce_ml DAG: what it is, which version, where, how big,
-- its schema and the run that produced its current content (domains/ecommerce_ml/registry.py).
CREATE TABLE dataset_registry (
    dataset       text        NOT NULL,
    version       text        NOT NULL,               -- the data interval (YYYY-MM-DD, or ...THHMM) or a model version
    kind          text        NOT NULL CHECK (kind IN ('table', 'artifact')),
    path          text        NOT NULL,               -- table name, or the lake path of the artifact
    row_count     bigint      NOT NULL CHECK (row_count >= 0),
    schema        jsonb       NOT NULL,               -- [{"name": ..., "type": ...}, ...]
    content_hash  text        NOT NULL,               -- sha256 of the artifact, or of the rows the version holds
    asset_uri     text        NOT NULL,
    dag_id        text        NOT NULL,
    run_id        text        NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dataset, kind, version)   -- a dataset may be both a table and a lake artifact
);
CREATE INDEX dataset_registry_dataset_registered ON dataset_registry (dataset, registered_at DESC);
