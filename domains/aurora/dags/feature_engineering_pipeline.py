"""
### feature_engineering_pipeline

Every 6 hours: the four feature groups of every active user, in parallel, then the feature
store (the seed's twelve features).

`compute_user_activity_features` (`activity_count_24h`, `activity_count_7d`,
`activity_count_30d`, `activity_diversity_7d`, `total_minutes_7d`),
`compute_sleep_features` (`avg_sleep_duration_7d`, `sleep_consistency_7d`, `sleep_debt_minutes`),
`compute_exercise_features` (`exercise_count_7d`, `exercise_consistency_score`),
`compute_social_features` (`friend_count`, `social_engagement_score`) → `update_feature_store`

- Features at the end of the data interval (`as_of`), from `domains/aurora/features.py`, the
  definition the models train and predict on.
- `update_feature_store`: PostgreSQL `feature_store` (one row per user and `as_of`, the whole
  snapshot in one transaction) and Redis hashes `aurora:features:<user_id>` (replaced
  atomically per user, `MULTI`/`EXEC`; only for the newest snapshot).
- Idempotent per data interval; the heavy tasks run in the team's pool `aurora_default`.

Connections: `aurora_postgres`, `aurora_redis`.
"""

from airflow.sdk import dag, task

from shared.dag_defaults import dag_kwargs


@dag(
    schedule="0 */6 * * *",
    **dag_kwargs("aurora", doc_md=__doc__, description="Compute and update features in the feature store",
                 tags=["ml", "features"]),
)
def feature_engineering_pipeline():
    def as_of(context):
        from shared.runs import RunWindow

        return RunWindow.from_context(context).as_of

    @task(multiple_outputs=False)
    def compute_user_activity_features(**context) -> dict:
        from domains.aurora.feature_store import compute_group

        return compute_group("activity", as_of(context))

    @task(multiple_outputs=False)
    def compute_sleep_features(**context) -> dict:
        from domains.aurora.feature_store import compute_group

        return compute_group("sleep", as_of(context))

    @task(multiple_outputs=False)
    def compute_exercise_features(**context) -> dict:
        from domains.aurora.feature_store import compute_group

        return compute_group("exercise", as_of(context))

    @task(multiple_outputs=False)
    def compute_social_features(**context) -> dict:
        from domains.aurora.feature_store import compute_group

        return compute_group("social", as_of(context))

    @task(multiple_outputs=False)
    def update_feature_store(**context) -> dict:
        from domains.aurora.feature_store import update_feature_store as update

        return update(as_of(context))

    [compute_user_activity_features(), compute_sleep_features(), compute_exercise_features(),
     compute_social_features()] >> update_feature_store()


feature_engineering_pipeline()
