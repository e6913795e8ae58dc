-- The seed's tables (its /api/setup-airflow-tables) plus the global image catalogue the
-- crawler fills and the idempotency keys the API honours.
CREATE TABLE global_images (
    id          bigserial PRIMARY KEY,
    source      text NOT NULL,
    url         text NOT NULL UNIQUE,
    title       text,
    crawled_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE user_favorites (
    user_id     text NOT NULL,
    image_id    bigint NOT NULL REFERENCES global_images (id),
    hearted     boolean NOT NULL DEFAULT true,
    marked_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, image_id)
);
CREATE TABLE user_database (
    user_id     text NOT NULL,
    image_id    bigint NOT NULL REFERENCES global_images (id),
    synced_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, image_id)
);
CREATE TABLE review_sessions (
    id            text PRIMARY KEY,
    run_id        text NOT NULL UNIQUE,
    status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'completed')),
    images        integer NOT NULL,
    decisions     integer NOT NULL DEFAULT 0,
    opened_at     timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz
);
CREATE TABLE learning_patterns (
    id           bigserial PRIMARY KEY,
    session_id   text REFERENCES review_sessions (id),
    pattern      text NOT NULL,
    weight       double precision NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (session_id, pattern)
);
CREATE TABLE pipeline_logs (
    run_id       text NOT NULL,
    step         text NOT NULL,
    status       text NOT NULL CHECK (status IN ('running', 'success', 'failed')),
    details      jsonb NOT NULL DEFAULT '{}',
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE api_idempotency (
    key          text PRIMARY KEY,
    endpoint     text NOT NULL,
    response     jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
