"""
### daily_model_training

Daily at 02:00 (the seed's "Sensor-Based Triggering"): wait for a training file in the drop
folder, then start `ml_training_smart_ensemble` on it.

`wait_for_new_dataset` → `pick_new_dataset` → `start_training`

1. `wait_for_new_dataset`: a deferrable `FileSensor` for `*.csv` in the drop folder
   (connection `hss_workflow_training_drop`, type `fs`, extra `path`: `incoming/` under
   `HSS_WORKFLOW_TRAINING_ROOT`); it waits on the triggerer, holding no worker slot, up to 20 h;
   its lineage names the folder it waited for (`DropFolderSensor`, domains/hss_workflow/operators.py).
2. `pick_new_dataset`: the oldest file not trained on yet (by content hash, `dataset_files`);
   a file counts as trained on once its training run succeeded, so a file whose training
   failed is handed over again; none new: the run skips the training.
3. `start_training`: triggers `ml_training_smart_ensemble` with conf `dataset_path`,
   `training_id` (from the file); the run id follows from the training id and the attempt,
   so a retry starts nothing twice.
"""

from datetime import timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag, task

from domains.hss_workflow.operators import DropFolderSensor
from shared.dag_defaults import dag_kwargs


@dag(schedule="0 2 * * *",
     **dag_kwargs("hss_workflow", doc_md=__doc__, description="Train on each new file of the drop folder",
                  tags=["training"]))
def daily_model_training():
    wait_for_new_dataset = DropFolderSensor(
        task_id="wait_for_new_dataset", fs_conn_id="hss_workflow_training_drop", filepath="*.csv",
        deferrable=True, poke_interval=60, timeout=timedelta(hours=20).total_seconds(),
    )

    @task(multiple_outputs=True)
    def pick_new_dataset(ti=None) -> dict:
        from airflow.providers.standard.hooks.filesystem import FSHook

        from domains.hss_workflow.drop import DROP_CONN, TRAINING_DAG, pick_new_dataset
        from shared.runs import run_key

        def run_state(run_id: str) -> str | None:
            if not ti.get_dr_count(TRAINING_DAG, run_ids=[run_id]):
                return None
            return ti.get_dagrun_state(TRAINING_DAG, run_id)

        return pick_new_dataset(FSHook(DROP_CONN).get_path(), run_key(), run_state)

    picked = pick_new_dataset()
    start_training = TriggerDagRunOperator(
        task_id="start_training", trigger_dag_id="ml_training_smart_ensemble",
        trigger_run_id="{{ ti.xcom_pull(task_ids='pick_new_dataset', key='training_run_id') }}",
        conf={"dataset_path": picked["dataset_path"], "training_id": picked["training_id"]},
        skip_when_already_exists=True,
    )
    wait_for_new_dataset >> picked >> start_training


daily_model_training()
