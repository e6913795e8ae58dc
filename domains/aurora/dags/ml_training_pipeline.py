"""
### ml_training_pipeline

Daily at 02:00: train the three models on the last 90 days (the seed's six tasks).

`extract_training_data` → `engineer_features` → `train_energy_model` | `train_mood_model` |
`train_sleep_model` (in parallel) → `publish_training_results`

1. `extract_training_data`: the valid rows (what data quality would pass) of the 90 days
   before the run's as-of time, read in one repeatable-read snapshot from `aurora_postgres`
   and kept in `training_datasets` for the next tasks.
2. `engineer_features`: temporal (hour, weekday), aggregations (24 h / 7 d / 30 d) and derived
   metrics (sleep debt and consistency, engagement, the user's own 30-day levels) per model;
   `domains/aurora/features.py`, the same definition the predictions use.
3. `train_energy_model` (XGBoost), `train_mood_model` (LightGBM), `train_sleep_model`
   (scikit-learn): each trains on all but the last 14 days, is scored on those 14 days
   against the naive baseline (the user's own mean) and the current version, is stored in the
   registry (`model_registry`, native artifact, metrics either way) and promoted only if it
   beats both; the registry writes an `aurora.model.trained` event in the same transaction.
4. `publish_training_results`: the current version of each model to Redis (`aurora_redis`,
   `aurora:models:<target>` → artifact `aurora:models:<target>:v<version>`) and the
   outbox's events to Kafka (`aurora_kafka`, topic `aurora.training`); a broker outage leaves
   them in the outbox for the next publish.

One run at a time (`max_active_runs=1`); the heavy tasks run in the team's pool
`aurora_default`. A rerun of the same logical date trains nothing new and adds no event.
Access (domains/aurora/README.md): the ML team (`aurora_op`) triggers and reads logs; ops
(`aurora_viewer`) views.
"""

from airflow.sdk import dag, task

from shared.dag_defaults import dag_kwargs


@dag(
    schedule="0 2 * * *",
    **dag_kwargs("aurora", doc_md=__doc__, description="Train all ML models with the latest data",
                 tags=["ml", "training"], max_active_runs=1),
)
def ml_training_pipeline():
    @task(multiple_outputs=False)
    def extract_training_data(**context) -> dict:
        from domains.aurora.training import extract_training_data
        from shared.runs import RunWindow, run_key

        return extract_training_data(run_key(context), RunWindow.from_context(context).as_of)

    @task(multiple_outputs=False)
    def engineer_features(extracted: dict, **context) -> dict:
        from domains.aurora.training import engineer_features
        from shared.runs import RunWindow

        return engineer_features(extracted["run_key"], RunWindow.from_context(context).as_of, extracted["days"])

    @task(multiple_outputs=False)
    def train_energy_model(extracted: dict, **context) -> dict:
        from domains.aurora.training import train_model
        from shared.runs import RunWindow

        return train_model(extracted["run_key"], RunWindow.from_context(context).as_of, "energy")

    @task(multiple_outputs=False)
    def train_mood_model(extracted: dict, **context) -> dict:
        from domains.aurora.training import train_model
        from shared.runs import RunWindow

        return train_model(extracted["run_key"], RunWindow.from_context(context).as_of, "mood")

    @task(multiple_outputs=False)
    def train_sleep_model(extracted: dict, **context) -> dict:
        from domains.aurora.training import train_model
        from shared.runs import RunWindow

        return train_model(extracted["run_key"], RunWindow.from_context(context).as_of, "sleep_quality")

    @task(multiple_outputs=False)
    def publish_training_results(extracted: dict, results: list) -> dict:
        from domains.aurora.training import publish_training_results

        return publish_training_results(extracted["run_key"], results)

    extracted = extract_training_data()
    features = engineer_features(extracted)
    trained = [train_energy_model(extracted), train_mood_model(extracted), train_sleep_model(extracted)]
    features >> trained
    publish_training_results(extracted, trained)


ml_training_pipeline()
