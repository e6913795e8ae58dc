-- feature_engineering_pipeline: the offline feature store, one row per user and as-of time
-- (the seed's twelve features, domains/aurora/feature_store.py). A whole as-of snapshot is
-- written in one transaction; training reads a complete snapshot by as_of.
CREATE TABLE feature_store (
    user_id                     bigint           NOT NULL,
    as_of                       timestamptz      NOT NULL,
    activity_count_24h          double precision,
    activity_count_7d           double precision,
    activity_count_30d          double precision,
    activity_diversity_7d       double precision,
    total_minutes_7d            double precision,
    avg_sleep_duration_7d       double precision,
    sleep_consistency_7d        double precision,
    sleep_debt_minutes          double precision,
    exercise_count_7d           double precision,
    exercise_consistency_score  double precision,
    friend_count                double precision,
    social_engagement_score     double precision,
    computed_at                 timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, as_of)
);
CREATE INDEX feature_store_as_of ON feature_store (as_of);

-- prediction_pipeline: one row per user, target, target day and horizon. Energy: 12 rows a
-- day (2, 4, ... 24 hours after as_of); mood and sleep quality: horizon 0. A rerun of the
-- same day upserts the same keys (domains/aurora/predictions.py).
CREATE TABLE predictions (
    user_id          bigint           NOT NULL,
    target           text             NOT NULL,   -- energy | mood | sleep_quality
    target_date      date             NOT NULL,
    horizon_hours    smallint         NOT NULL,
    target_time      timestamptz,                 -- energy: the hour predicted
    predicted_value  double precision NOT NULL,
    model_name       text             NOT NULL,
    model_version    integer          NOT NULL,
    as_of            timestamptz      NOT NULL,
    predicted_at     timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, target, target_date, horizon_hours)
);
CREATE INDEX predictions_target_date ON predictions (target_date, target);
