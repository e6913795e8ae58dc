"""
### prediction_pipeline

Daily at 06:00: predictions for every active premium and pro user, with the current models
of `ml_training_pipeline`.

`get_active_users` → (`predict_energy`, `predict_mood`, `predict_sleep_quality` in parallel)
→ `save_predictions` → `cache_predictions` → `publish_prediction_events`

- Energy 24 hours ahead at 2-hour steps (12 values), the day's mood, tonight's sleep quality,
  from the history known at the end of the data interval (`domains/aurora/predictions.py`).
- `save_predictions`: PostgreSQL `predictions`, idempotent per user, target, day (and
  horizon), with one `aurora.prediction.created` event per user and target written to the
  outbox in the same transaction.
- `cache_predictions`: Redis hash `aurora:predictions:<user_id>`, TTL 36 hours. With Redis
  down the task fails with `RedisUnavailable` and its retries try again.
- `publish_prediction_events`: the outbox to Kafka topic `aurora.predictions` (at least
  once; consumers de-duplicate by `event_id`). With the broker down the task succeeds, the
  events wait in the outbox (warning with the count) and go out with the next publish.
- The heavy tasks run in the team's pool `aurora_default`.

Connections: `aurora_postgres`, `aurora_redis`, `aurora_kafka`.
"""

from airflow.sdk import dag, task

from shared.dag_defaults import dag_kwargs


@dag(
    schedule="0 6 * * *",
    **dag_kwargs("aurora", doc_md=__doc__, description="Generate predictions for active premium and pro users",
                 tags=["ml", "predictions"]),
)
def prediction_pipeline():
    @task(multiple_outputs=False)
    def get_active_users(**context) -> dict:
        from domains.aurora.predictions import select_users
        from shared.runs import RunWindow

        return select_users(RunWindow.from_context(context).as_of)

    @task(multiple_outputs=False)
    def predict_energy(**context) -> dict:
        from domains.aurora.predictions import predict_target
        from shared.runs import RunWindow

        return predict_target("energy", RunWindow.from_context(context).as_of)

    @task(multiple_outputs=False)
    def predict_mood(**context) -> dict:
        from domains.aurora.predictions import predict_target
        from shared.runs import RunWindow

        return predict_target("mood", RunWindow.from_context(context).as_of)

    @task(multiple_outputs=False)
    def predict_sleep_quality(**context) -> dict:
        from domains.aurora.predictions import predict_target
        from shared.runs import RunWindow

        return predict_target("sleep_quality", RunWindow.from_context(context).as_of)

    @task(multiple_outputs=False)
    def save_predictions(**context) -> dict:
        from domains.aurora.predictions import save_predictions as save
        from shared.runs import RunWindow

        return save(RunWindow.from_context(context).as_of)

    @task(multiple_outputs=False)
    def cache_predictions(**context) -> dict:
        from domains.aurora.predictions import cache_predictions as cache
        from shared.runs import RunWindow

        return cache(RunWindow.from_context(context).as_of)

    @task(multiple_outputs=False)
    def publish_prediction_events() -> dict:
        from domains.aurora.predictions import publish_events

        return publish_events()

    users = get_active_users()
    saved = save_predictions()
    users >> [predict_energy(), predict_mood(), predict_sleep_quality()] >> saved
    saved >> cache_predictions() >> publish_prediction_events()


prediction_pipeline()
