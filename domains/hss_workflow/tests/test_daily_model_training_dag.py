"""daily_model_training with dag.test(): the deferrable FileSensor on the drop folder, the pick of
a file not trained on yet, the trigger of ml_training_smart_ensemble (a real DagRun row)."""

from __future__ import annotations

import shutil
from contextlib import closing

import pendulum
import pytest

from conftest import lineage_io, load_dag, run_dag, set_connection
from domains.hss_workflow.db import DATABASE
from domains.hss_workflow.local.samples import write_dataset

DAG_ID = "daily_model_training"


@pytest.fixture
def drop(domain_db, mail_sink, tmp_path, monkeypatch):
    root = tmp_path / "training_data"
    (root / "incoming").mkdir(parents=True)
    monkeypatch.setenv("HSS_WORKFLOW_TRAINING_ROOT", str(root))
    domain_db("hss_workflow")
    set_connection("hss_workflow_training_drop", conn_type="fs", extra={"path": str(root / "incoming")})
    return root


def triggered_runs(file_stem: str) -> list[tuple[str, dict]]:
    """The training runs started for the file named ``file_stem`` (the metadata DB is the session's)."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return sorted((r.run_id, r.conf) for r in session.query(DagRun).filter(
            DagRun.dag_id == "ml_training_smart_ensemble", DagRun.run_id.like(f"daily__daily_{file_stem}_%")))


def test_a_new_file_starts_training_once_and_a_trained_file_is_not_trained_again(drop, lineage_events):
    write_dataset(drop / "incoming" / "songs_2026_06.csv", 50)
    dr, states = run_dag(DAG_ID, logical_date=pendulum.datetime(2026, 6, 21, 2, tz="UTC"))
    assert dr.state == "success", states
    assert states["start_training"] == "success"
    runs = triggered_runs("songs_2026_06")
    assert len(runs) == 1
    run_id, conf = runs[0]
    assert conf["dataset_path"] == "incoming/songs_2026_06.csv" and run_id == f"daily__{conf['training_id']}"
    db = DATABASE.hook().get_connection(DATABASE.conn_id)
    events, folder = lineage_events(), ("file", str((drop / "incoming").resolve()))
    assert lineage_io(events, f"{DAG_ID}.pick_new_dataset") == (
        {folder}, {(f"postgres://{db.host}:{db.port}", f"{db.schema}.public.dataset_files")})
    # issue 23: the sensor reports what it waited for, the trigger the parent of the run it started
    assert lineage_io(events, f"{DAG_ID}.wait_for_new_dataset") == ({folder}, set())
    parent = conf["openlineage"]  # the provider's TriggerDagRunOperator support: the child run's parent
    assert (parent["parentJobName"], parent["rootParentJobName"]) == (f"{DAG_ID}.start_training", DAG_ID), parent
    started = [e for e in events if e["job"]["name"] == f"{DAG_ID}.start_training" and e["eventType"] == "START"]
    assert started and started[-1]["run"]["runId"] == parent["parentRunId"], parent

    # the next day: the same content under another name is not new
    shutil.copy(drop / "incoming" / "songs_2026_06.csv", drop / "incoming" / "copy.csv")
    dr, states = run_dag(DAG_ID, logical_date=pendulum.datetime(2026, 6, 22, 2, tz="UTC"))
    assert states["pick_new_dataset"] == "skipped" and states["start_training"] == "skipped", states
    assert len(triggered_runs("songs_2026_06")) == 1
    with closing(DATABASE.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT dataset_path FROM dataset_files")
        assert cur.fetchall() == [("incoming/songs_2026_06.csv",)]


def set_training_run_state(run_id: str, state: str) -> None:
    """The outcome of a triggered training run (its own DAG's tests run it for real)."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        dr = session.query(DagRun).filter(DagRun.dag_id == "ml_training_smart_ensemble",
                                          DagRun.run_id == run_id).one()
        dr.state = state


def test_a_file_whose_training_failed_is_handed_over_again_and_a_trained_one_is_not(drop):
    write_dataset(drop / "incoming" / "songs_2026_07.csv", 50)
    day = pendulum.datetime(2026, 7, 1, 2, tz="UTC")
    dr, states = run_dag(DAG_ID, logical_date=day)
    assert dr.state == "success" and states["start_training"] == "success", states
    [(first, conf)] = triggered_runs("songs_2026_07")

    set_training_run_state(first, "failed")
    dr, states = run_dag(DAG_ID, logical_date=day.add(days=1))
    assert states["start_training"] == "success", states
    runs = dict(triggered_runs("songs_2026_07"))
    retry = f"daily__{conf['training_id']}__attempt2"
    assert set(runs) == {first, retry}
    keys = ("dataset_path", "training_id")  # the same file and training id, in a new run
    assert {k: runs[retry][k] for k in keys} == {k: conf[k] for k in keys}

    set_training_run_state(retry, "success")
    dr, states = run_dag(DAG_ID, logical_date=day.add(days=2))
    assert states["pick_new_dataset"] == "skipped" and states["start_training"] == "skipped", states
    assert len(triggered_runs("songs_2026_07")) == 2
    with closing(DATABASE.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT dataset_path, status, attempt FROM dataset_files")
        assert cur.fetchall() == [("incoming/songs_2026_07.csv", "trained", 2)]


def test_the_sensor_defers_while_the_folder_is_empty_and_resumes_on_a_new_file(drop):
    """The FileSensor's first poke finds nothing and the task defers to a FileTrigger (a trigger
    row for the drop folder, the task instance handed to it); only then does a file arrive, and
    the same try resumes and the run goes on to hand it over."""
    import threading
    import time

    from airflow.models import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session

    seen: dict = {}

    def deliver_once_deferred() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not seen:
            with create_session() as session:
                for trigger in session.query(Trigger).filter(Trigger.classpath.like("%.FileTrigger")):
                    if trigger.kwargs.get("filepath") == str(drop / "incoming" / "*.csv"):
                        tis = session.query(TaskInstance).filter(TaskInstance.trigger_id == trigger.id).all()
                        seen.update(trigger=trigger.classpath, tasks=[(t.dag_id, t.task_id, t.try_number) for t in tis],
                                    next_method=[t.next_method for t in tis])
            time.sleep(0.1)
        write_dataset(drop / "incoming" / "arrived_later.csv", 40)

    dag = load_dag(DAG_ID)
    dag.get_task("wait_for_new_dataset").poke_interval = 0.2  # the trigger's poll, 60 s in the DAG
    courier = threading.Thread(target=deliver_once_deferred, daemon=True)
    courier.start()
    dr, states = run_dag(DAG_ID, logical_date=pendulum.datetime(2026, 8, 1, 2, tz="UTC"), dag=dag)
    courier.join()
    assert seen == {"trigger": "airflow.providers.standard.triggers.file.FileTrigger",
                    "tasks": [(DAG_ID, "wait_for_new_dataset", 1)], "next_method": ["execute_complete"]}, seen
    assert dr.state == "success" and states["start_training"] == "success", states
    tis = {ti.task_id: ti for ti in dr.get_task_instances()}
    assert tis["wait_for_new_dataset"].try_number == 1  # resumed in its first try, not retried
    [(_, conf)] = triggered_runs("arrived_later")
    assert conf["dataset_path"] == "incoming/arrived_later.csv"
