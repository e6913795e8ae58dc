-- The Aurora Life app's data, as the app writes it: the tables the aurora DAGs read.
--
-- The app's own validation is not trusted: the columns that data_quality_pipeline checks
-- (email format and uniqueness, tiers, 1-10 levels, durations, XP, providers, ...) carry no
-- CHECK constraint here on purpose, so a bad row lands and is reported, as it would be in
-- production. Keys and types are enforced.

CREATE TABLE users (
    id                 bigint      PRIMARY KEY,
    email              text,
    subscription_tier  text,                          -- free | premium | pro
    is_active          boolean     NOT NULL DEFAULT true,
    deactivated_at     timestamptz,                   -- set exactly when is_active is false
    timezone           text        NOT NULL DEFAULT 'UTC',
    created_at         timestamptz NOT NULL,
    last_active_at     timestamptz
);
CREATE INDEX users_email ON users (lower(email));

-- One thing a user did, with how they felt: energy and mood on the app's 1-10 scale.
CREATE TABLE life_events (
    id                bigint      PRIMARY KEY,
    user_id           bigint,
    event_type        text,       -- work, social, exercise, hobby, rest, learning, family, chores, commute, entertainment
    started_at        timestamptz,
    duration_minutes  integer,
    energy_level      smallint,
    mood_level        smallint,
    created_at        timestamptz NOT NULL           -- when the app received it
);
CREATE INDEX life_events_user_started ON life_events (user_id, started_at);
CREATE INDEX life_events_created ON life_events (created_at);

-- One night per row: the night that starts on sleep_date.
CREATE TABLE sleep_records (
    id                bigint      PRIMARY KEY,
    user_id           bigint      NOT NULL,
    sleep_date        date        NOT NULL,
    bedtime           timestamptz NOT NULL,
    wake_time         timestamptz NOT NULL,
    duration_minutes  integer     NOT NULL,
    quality_score     smallint,                       -- 1-10, reported on waking
    created_at        timestamptz NOT NULL,
    UNIQUE (user_id, sleep_date)
);

CREATE TABLE exercise_sessions (
    id                bigint      PRIMARY KEY,
    user_id           bigint      NOT NULL,
    exercise_type     text        NOT NULL,           -- run, walk, cycling, strength, yoga, swim, hiit
    started_at        timestamptz NOT NULL,
    duration_minutes  integer     NOT NULL,
    intensity         smallint    NOT NULL,           -- 1-10
    created_at        timestamptz NOT NULL
);
CREATE INDEX exercise_sessions_user_started ON exercise_sessions (user_id, started_at);

-- Social ties: one row per direction of an accepted (or pending) friendship.
CREATE TABLE social_connections (
    user_id              bigint      NOT NULL,
    friend_id            bigint      NOT NULL,
    status               text        NOT NULL DEFAULT 'accepted',  -- accepted | pending
    connected_at         timestamptz NOT NULL,
    last_interaction_at  timestamptz,
    PRIMARY KEY (user_id, friend_id)
);

-- Connected data sources and every sync's outcome.
CREATE TABLE integrations (
    id            bigint      PRIMARY KEY,
    user_id       bigint      NOT NULL,
    provider      text,       -- apple_health, google_fit, fitbit, oura, garmin, strava, google_calendar
    status        text        NOT NULL DEFAULT 'active',   -- active | paused | revoked
    connected_at  timestamptz NOT NULL,
    last_sync_at  timestamptz
);
CREATE INDEX integrations_user ON integrations (user_id);

CREATE TABLE integration_syncs (
    id                bigint      PRIMARY KEY,
    integration_id    bigint      NOT NULL,
    started_at        timestamptz NOT NULL,
    finished_at       timestamptz,
    status            text        NOT NULL,           -- success | failed
    records_expected  integer,
    records_received  integer,
    error             text
);
CREATE INDEX integration_syncs_integration_started ON integration_syncs (integration_id, started_at);

-- Gamification: XP and level per user, the achievement catalogue and unlocks.
CREATE TABLE user_gamification (
    user_id     bigint      PRIMARY KEY,
    total_xp    bigint      NOT NULL,
    level       integer     NOT NULL,                 -- level_for_xp(total_xp), see domains/aurora/app.py
    updated_at  timestamptz NOT NULL
);

CREATE TABLE achievements (
    id              bigint   PRIMARY KEY,
    code            text     NOT NULL UNIQUE,
    name            text     NOT NULL,
    xp_reward       integer  NOT NULL,
    required_level  integer  NOT NULL DEFAULT 1
);

CREATE TABLE user_achievements (
    id              bigint      PRIMARY KEY,
    user_id         bigint      NOT NULL,
    achievement_id  bigint      NOT NULL,
    unlocked_at     timestamptz NOT NULL
);
CREATE INDEX user_achievements_user ON user_achievements (user_id);

-- What the generator loaded (domains/aurora/local/generator.py): its parameters, so a second
-- `make aurora-data` with the same parameters does nothing.
CREATE TABLE generated_datasets (
    id          integer     PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    params      jsonb       NOT NULL,
    row_counts  jsonb       NOT NULL,
    planted     jsonb       NOT NULL,
    loaded_at   timestamptz NOT NULL DEFAULT now()
);
