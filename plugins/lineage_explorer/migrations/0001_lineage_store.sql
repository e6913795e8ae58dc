-- The lineage explorer's store: every raw OpenLineage run event, and the current jobs,
-- datasets, runs and job<->dataset edges derived from them (in the same transaction).

CREATE TABLE lineage_event (
    id            bigserial   PRIMARY KEY,
    run_id        uuid        NOT NULL,
    event_type    text        NOT NULL,          -- '' when the event has none
    event_time    timestamptz NOT NULL,
    job_namespace text        NOT NULL,
    job_name      text        NOT NULL,
    team          text,                          -- the team the ingest key belonged to (NULL: platform key)
    received_at   timestamptz NOT NULL DEFAULT now(),
    payload       jsonb       NOT NULL,
    CONSTRAINT lineage_event_once UNIQUE (run_id, event_type, event_time)
);
CREATE INDEX lineage_event_time ON lineage_event (event_time);

CREATE TABLE lineage_job (
    namespace       text        NOT NULL,
    name            text        NOT NULL,
    dag_id          text,                        -- the Airflow DAG the job belongs to (NULL: unknown)
    team            text,                        -- the DAG's team at ingest time
    parent_job_name text,
    description     text,
    location        text,
    facets          jsonb       NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (namespace, name)
);
CREATE INDEX lineage_job_dag ON lineage_job (dag_id);
CREATE INDEX lineage_job_name_trgm ON lineage_job (lower(name) text_pattern_ops);

CREATE TABLE lineage_dataset (
    namespace       text        NOT NULL,
    name            text        NOT NULL,
    facets          jsonb       NOT NULL DEFAULT '{}',
    lifecycle_state text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (namespace, name)
);

CREATE TABLE lineage_run (
    run_id             uuid        PRIMARY KEY,
    job_namespace      text        NOT NULL,
    job_name           text        NOT NULL,
    state              text        NOT NULL,     -- Marquez's: NEW RUNNING COMPLETED FAILED ABORTED
    state_time         timestamptz NOT NULL,     -- event time of the event that set the state
    nominal_start_time timestamptz,
    nominal_end_time   timestamptz,
    started_at         timestamptz,
    ended_at           timestamptz,
    facets             jsonb       NOT NULL DEFAULT '{}',
    inputs             jsonb       NOT NULL DEFAULT '[]',   -- [{namespace, name}]
    outputs            jsonb       NOT NULL DEFAULT '[]',
    created_at         timestamptz NOT NULL,     -- earliest event time seen for the run
    updated_at         timestamptz NOT NULL      -- latest event time seen for the run
);
CREATE INDEX lineage_run_job ON lineage_run (job_namespace, job_name, created_at DESC);
CREATE INDEX lineage_run_updated ON lineage_run (updated_at);

CREATE TABLE lineage_edge (
    job_namespace     text        NOT NULL,
    job_name          text        NOT NULL,
    direction         text        NOT NULL CHECK (direction IN ('in', 'out')),
    dataset_namespace text        NOT NULL,
    dataset_name      text        NOT NULL,
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (job_namespace, job_name, direction, dataset_namespace, dataset_name)
);
CREATE INDEX lineage_edge_dataset ON lineage_edge (dataset_namespace, dataset_name);
