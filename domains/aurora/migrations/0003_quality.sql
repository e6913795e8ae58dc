-- data_quality_pipeline: one report per run and one result (the check's metrics) per check.
CREATE TABLE quality_runs (
    run_key        text        PRIMARY KEY,
    as_of          timestamptz NOT NULL,
    checked_at     timestamptz NOT NULL DEFAULT now(),
    status         text        NOT NULL CHECK (status IN ('passed', 'warning', 'error', 'critical')),
    critical       integer     NOT NULL,   -- failed checks per severity
    errors         integer     NOT NULL,
    warnings       integer     NOT NULL,
    alert_sent_at  timestamptz,
    alert_to       text[]
);

CREATE TABLE quality_results (
    run_key       text             NOT NULL REFERENCES quality_runs ON DELETE CASCADE,
    check_name    text             NOT NULL,   -- <group>.<check>, domains/aurora/quality.py
    check_group   text             NOT NULL,   -- life_events | users | integrations | gamification
    severity      text             NOT NULL CHECK (severity IN ('critical', 'error', 'warning')),
    description   text             NOT NULL,
    checked_rows  integer          NOT NULL,
    failed_rows   integer          NOT NULL,
    failure_rate  double precision NOT NULL,
    sample_ids    jsonb            NOT NULL,   -- up to 10 ids of failing rows
    passed        boolean          NOT NULL,
    PRIMARY KEY (run_key, check_name)
);
CREATE INDEX quality_results_failed ON quality_results (check_name, run_key) WHERE NOT passed;
