-- The referral database: Bullhorn mirrors, embeddings, matches, sync state.
CREATE TABLE candidates (
    id                 bigint PRIMARY KEY,
    first_name         text,
    last_name          text,
    email              text,
    skill_set          text,
    description        text,
    status             text,
    date_added         timestamptz,
    date_last_modified timestamptz NOT NULL,
    is_deleted         boolean NOT NULL DEFAULT false,
    content_hash       text NOT NULL
);
CREATE TABLE positions (
    id                 bigint PRIMARY KEY,
    title              text,
    description        text,
    public_description text,
    skill_list         text,
    is_open            boolean NOT NULL DEFAULT true,
    is_public          boolean,
    is_deleted         boolean NOT NULL DEFAULT false,
    date_added         timestamptz,
    date_last_modified timestamptz NOT NULL,
    content_hash       text NOT NULL
);
CREATE TABLE sync_watermarks (
    entity                text PRIMARY KEY,
    last_modified_ms      bigint NOT NULL,
    last_id               bigint NOT NULL,
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE rejected_records (
    id            bigserial PRIMARY KEY,
    entity        text NOT NULL,
    record_id     text,
    reason        text NOT NULL,
    payload       jsonb NOT NULL,
    payload_hash  text NOT NULL,
    run_id        text NOT NULL,
    rejected_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (entity, run_id, payload_hash)
);
CREATE TABLE candidate_embeddings (
    candidate_id   bigint PRIMARY KEY REFERENCES candidates (id),
    vector         double precision[] NOT NULL,
    model_version  text NOT NULL,
    content_hash   text NOT NULL,
    embedded_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE position_embeddings (
    position_id    bigint PRIMARY KEY REFERENCES positions (id),
    vector         double precision[] NOT NULL,
    model_version  text NOT NULL,
    content_hash   text NOT NULL,
    embedded_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE matches (
    candidate_id    bigint NOT NULL REFERENCES candidates (id),
    position_id     bigint NOT NULL REFERENCES positions (id),
    score           numeric(5, 2) NOT NULL,
    model_version   text NOT NULL,
    run_id          text NOT NULL,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
    retired_reason  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (candidate_id, position_id)
);
CREATE INDEX matches_position ON matches (position_id) WHERE status = 'active';
CREATE TABLE matching_state (
    id                   boolean PRIMARY KEY DEFAULT true CHECK (id),
    candidates_through   timestamptz NOT NULL,
    positions_through    timestamptz NOT NULL
);
