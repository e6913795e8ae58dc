"""daily_model_training with dag.test(): the deferrable FileSensor on the drop folder, the pick of
a file not trained on yet, the trigger of ml_training_smart_ensemble (a real DagRun row)."""

from __future__ import annotations

import shutil
from contextlib import closing

import pendulum
import pytest

from conftest import lineage_io, run_dag, set_connection
from domains.hss_workflow.db import DATABASE
from domains.hss_workflow.standins.samples import write_dataset

DAG_ID = "daily_model_training"


@pytest.fixture
def drop(domain_db, mail_sink, tmp_path, monkeypatch):
    root = tmp_path / "training_data"
    (root / "incoming").mkdir(parents=True)
    monkeypatch.setenv("HSS_WORKFLOW_TRAINING_ROOT", str(root))
    domain_db("hss_workflow")
    set_connection("hss_workflow_training_drop", conn_type="fs", extra={"path": str(root / "incoming")})
    return root


def triggered_runs() -> list[tuple[str, dict]]:
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return sorted((r.run_id, r.conf) for r in session.query(DagRun).filter(
            DagRun.dag_id == "ml_training_smart_ensemble", DagRun.run_id.like("daily__%")))


def test_a_new_file_starts_training_once_and_a_trained_file_is_not_trained_again(drop, lineage_events):
    write_dataset(drop / "incoming" / "songs_2026_06.csv", 50)
    dr, states = run_dag(DAG_ID, logical_date=pendulum.datetime(2026, 6, 21, 2, tz="UTC"))
    assert dr.state == "success", states
    assert states["start_training"] == "success"
    runs = triggered_runs()
    assert len(runs) == 1
    run_id, conf = runs[0]
    assert conf["dataset_path"] == "incoming/songs_2026_06.csv" and run_id == f"daily__{conf['training_id']}"
    db = DATABASE.hook().get_connection(DATABASE.conn_id)
    assert lineage_io(lineage_events(), f"{DAG_ID}.pick_new_dataset") == (
        {("file", str((drop / "incoming").resolve()))}, {(f"postgres://{db.host}:{db.port}", f"{db.schema}.public.dataset_files")})

    # the next day: the same content under another name is not new
    shutil.copy(drop / "incoming" / "songs_2026_06.csv", drop / "incoming" / "copy.csv")
    dr, states = run_dag(DAG_ID, logical_date=pendulum.datetime(2026, 6, 22, 2, tz="UTC"))
    assert states["pick_new_dataset"] == "skipped" and states["start_training"] == "skipped", states
    assert len(triggered_runs()) == 1
    with closing(DATABASE.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT dataset_path FROM dataset_files")
        assert cur.fetchall() == [("incoming/songs_2026_06.csv",)]
