-- comprehensive_analysis: one row per song and run (idempotent per song_id + run_key)
CREATE TABLE song_analyses (
    song_id         text        NOT NULL,
    run_key         text        NOT NULL,  -- shared.runs.run_key: logical date if any, else run_id
    song_path       text        NOT NULL,
    hit_probability double precision NOT NULL,
    audio           jsonb       NOT NULL,
    content         jsonb       NOT NULL,
    prediction      jsonb       NOT NULL,
    insights        jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (song_id, run_key)
);

-- service answers too large for XCom: the XCom holds only (run_key, task_id)
CREATE TABLE service_results (
    run_key    text        NOT NULL,
    task_id    text        NOT NULL,
    body       jsonb       NOT NULL,
    stored_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_key, task_id)
);
