"""
### ml_training_smart_ensemble

Smart-ensemble training, triggered through the REST API with conf
`{"dataset_path": "filtered/filtered_audio_only_corrected_20250621_180350.csv",
"training_id": "airflow_smart_training_1", "batch_size": 400, "max_concurrent_requests": 50}`
(`dataset_path` relative to, or absolute under, `HSS_WORKFLOW_TRAINING_ROOT`).

`validate_training_config` → `process_training_dataset` → `send_training_batches` →
`smart_ensemble_training` → `aggregate_training_results`

1. The conf is checked by its JSON schema before the run exists, and again on the worker.
2. The CSV is read into `training_rows` in batches of `batch_size` (bad rows counted; more
   than 5% fails the run).
3. One task sends every batch to the training service with at most
   `max_concurrent_requests` in flight (asyncio), honouring its 429s.
4. The training job is submitted and waited for deferrably (no worker slot while it trains).
5. The five models' metrics go to `training_model_metrics` and a summary mail to
   `hss_workflow_alert_emails`.

Variables: `hss_workflow_training_poll_seconds` (30), `hss_workflow_training_timeout_seconds`
(6 h). Connections: `hss_workflow_ml_training`, `hss_workflow_postgres`, `smtp_default`.
"""

from airflow.sdk import dag, task

from domains.hss_workflow.conf import training_params
from domains.hss_workflow.operators import MLTrainingOperator
from shared.dag_defaults import dag_kwargs


@dag(schedule=None, params=training_params(),
     **dag_kwargs("hss_workflow", doc_md=__doc__, description="Smart-ensemble training over batches of a CSV",
                  tags=["training"], max_active_runs=4))
def ml_training_smart_ensemble():
    @task(multiple_outputs=False)
    def validate_training_config(params=None) -> dict:
        from domains.hss_workflow.training import validate_training_config

        return validate_training_config(params)

    @task(multiple_outputs=False)
    def process_training_dataset(config: dict) -> dict:
        from domains.hss_workflow.training import process_dataset

        return process_dataset(config)

    @task(multiple_outputs=False)
    def send_training_batches(config: dict, dataset: dict) -> dict:
        from domains.hss_workflow.training import send_batches

        return send_batches(config)

    config = validate_training_config()
    dataset = process_training_dataset(config)
    sent = send_training_batches(config, dataset)
    training = MLTrainingOperator(
        task_id="smart_ensemble_training",
        payload={"training_id": "{{ params.training_id }}"},
    )
    sent >> training

    @task(multiple_outputs=False)
    def aggregate_training_results(config: dict, dataset: dict, sent: dict, status: dict) -> dict:
        from domains.hss_workflow.training import aggregate_results

        return aggregate_results(config, dataset, sent, status)

    aggregate_training_results(config, dataset, sent, training.output)


ml_training_smart_ensemble()
