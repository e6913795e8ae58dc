"""ml_training_smart_ensemble run for real with dag.test(): the training stand-in (its
concurrency limit answering 429, an asynchronous job), the embedded PostgreSQL, the mail sink."""

from __future__ import annotations

import random
from contextlib import closing

import pendulum
import psycopg2
import pytest
import requests

from conftest import lineage_io, load_dag, run_dag, set_connection, set_variable
from devplatform.smtp_sink import body_text
from domains.hss_workflow.db import DATABASE
from domains.hss_workflow.local.samples import write_dataset
from domains.hss_workflow.local.training import MODELS, create_training_app

DAG_ID = "ml_training_smart_ensemble"
KEY = "hss-test-key"


@pytest.fixture
def training(standin, domain_db, mail_sink, tmp_path, monkeypatch):
    root = tmp_path / "training_data"
    (root / "filtered").mkdir(parents=True)
    monkeypatch.setenv("HSS_WORKFLOW_TRAINING_ROOT", str(root))
    db = domain_db("hss_workflow")
    with closing(DATABASE.connect()):
        pass
    server = standin(create_training_app(api_key=KEY, max_concurrent=3, latency=0.05, train_seconds=0.3))
    set_connection("hss_workflow_ml_training", conn_type="http", host=server.url, password=KEY,
                   extra={"auth_type": "api_key", "api_key_header": "X-API-Key", "timeout": 2, "max_attempts": 8,
                          "backoff_initial": 0.01, "backoff_max": 0.05, "retry_after_max": 0.2})
    set_variable("hss_workflow_training_poll_seconds", "0.2")
    set_variable("hss_workflow_training_timeout_seconds", "60")
    set_variable("hss_workflow_alert_emails", "hss-ops@platform.local")

    def query(sql, params=()):
        with psycopg2.connect(host=db["host"], port=db["port"], dbname=db["schema"], user=db["login"],
                              password=db["password"]) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    return server, root, query, mail_sink


CONF = {"dataset_path": "filtered/filtered_audio_only_corrected_20250621_180350.csv",
        "training_id": "airflow_smart_training_1", "batch_size": 100, "max_concurrent_requests": 6}


def test_training_end_to_end_throttled_fan_out_and_rerun(training, lineage_events):
    server, root, query, mail = training
    write_dataset(root / CONF["dataset_path"], 1000, bad=10)
    server.faults.add(status=503, times=2, path="/train/smart_ensemble/batches")
    when = pendulum.datetime(2026, 6, 21, 18, 3, 50, tz="UTC")
    dr, states = run_dag(DAG_ID, CONF, logical_date=when)
    assert dr.state == "success", states
    state = server.app.state.training
    assert sorted(state["batches"][CONF["training_id"]]) == list(range(10))
    assert sum(b.rows for b in state["batches"][CONF["training_id"]].values()) == 1000
    assert state["load"]["peak"] <= 3  # the service's limit held
    calls = server.faults.calls_to("/train/smart_ensemble/batches")
    assert sum(c.status == 429 for c in calls) > 0 and sum(c.status == 503 for c in calls) == 2
    assert len({c.idempotency_key for c in calls}) == 10  # one key per batch, reused by its retries
    assert query("SELECT rows, rejected, batches, job_id IS NOT NULL FROM training_runs") == [(1000, 10, 10, True)]
    metrics = query("SELECT model, accuracy, f1, weight FROM training_model_metrics ORDER BY model")
    assert [m[0] for m in metrics] == sorted(MODELS)
    assert max(m[1] for m in metrics) > 0.7 and abs(sum(m[3] for m in metrics) - 1) < 0.01
    mails = mail.messages()
    assert len(mails) == 1 and mails[0]["To"] == "hss-ops@platform.local"
    text = " ".join(body_text(mails[0]).split())
    assert "rows trained 1000" in text and "rows rejected 10" in text and "logistic_regression |" in text

    work = dict(server.app.state.work)
    dr2, states2 = run_dag(DAG_ID, CONF, logical_date=when)
    assert dr2.state == "success", states2
    assert dict(server.app.state.work) == work  # every batch and the job: the service did nothing again
    assert query("SELECT count(*) FROM training_rows") == [(1000,)]
    assert query("SELECT model, accuracy, f1, weight FROM training_model_metrics ORDER BY model") == metrics

    # OpenLineage: the CSV (a local file), the tables, the training service's resources
    events, db = lineage_events(), query("SELECT current_database(), inet_server_port()")[0]
    pg = {t: (f"postgres://127.0.0.1:{db[1]}", f"{db[0]}.public.{t}") for t in
          ("training_runs", "training_rows", "training_model_metrics")}
    csv_file = ("file", str((root / CONF["dataset_path"]).resolve()))
    assert lineage_io(events, f"{DAG_ID}.validate_training_config") == ({csv_file}, set())  # the file it checked
    assert lineage_io(events, f"{DAG_ID}.process_training_dataset") == (
        {csv_file}, {pg["training_runs"], pg["training_rows"]})
    assert lineage_io(events, f"{DAG_ID}.send_training_batches") == (
        {pg["training_rows"]}, {(server.url, "/train/smart_ensemble/batches")})
    assert lineage_io(events, f"{DAG_ID}.smart_ensemble_training") == (set(), {(server.url, "/train/smart_ensemble")})
    inputs, outputs = lineage_io(events, f"{DAG_ID}.aggregate_training_results")
    mailed = {d for d in outputs if d[0].startswith("smtp://")}  # the summary mail's recipients
    assert (inputs, outputs - mailed) == (set(), {pg["training_runs"], pg["training_model_metrics"]}) and mailed


def test_a_file_with_too_many_bad_rows_fails_before_any_call(training):
    server, root, query, mail = training
    write_dataset(root / CONF["dataset_path"], 100, bad=20)
    dr, states = run_dag(DAG_ID, CONF)
    assert dr.state == "failed" and states["process_training_dataset"] == "failed", states
    assert server.faults.calls == []
    assert "20 of 120 rows rejected" in body_text(mail.messages()[0])


def test_the_training_service_refuses_jobs_beyond_its_limit(standin):
    server = standin(create_training_app(api_key=KEY, max_jobs=1, train_seconds=2))
    h = {"X-API-Key": KEY}
    batch = {"training_id": "t", "batch_index": 0,
             "rows": [{"song_id": f"s{i}", "is_hit": i % 2, "features": {"x": i % 2 + random.random()}} for i in range(20)]}
    assert requests.post(f"{server.url}/train/smart_ensemble/batches", json=batch, headers=h, timeout=5).ok
    first = requests.post(f"{server.url}/train/smart_ensemble", json={"training_id": "t"}, headers=h, timeout=5)
    assert first.status_code == 202 and first.json()["status"] == "running"
    second = requests.post(f"{server.url}/train/smart_ensemble", json={"training_id": "t"}, headers=h, timeout=5)
    assert second.status_code == 429 and second.headers["Retry-After"] == "1"
    status = requests.get(f"{server.url}/train/status/{first.json()['job_id']}", headers=h, timeout=5).json()
    assert status["status"] == "running" and status["rows"] == 20


def write_one_class(path, rows: int) -> None:
    """A valid training CSV whose songs are all non-hits: the service cannot train on it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["song_id,tempo_bpm,energy,spectral_centroid_hz,is_hit"]
    lines += [f"song_{i},{100 + i % 30},{0.3 + (i % 7) / 20},{1800 + i % 400},0" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")


def test_a_failed_training_job_fails_the_task_with_the_services_error(training):
    server, root, query, mail = training
    write_one_class(root / CONF["dataset_path"], 200)
    dr, states = run_dag(DAG_ID, CONF)
    assert dr.state == "failed", states
    assert states["send_training_batches"] == "success" and states["smart_ensemble_training"] == "failed", states
    assert states["aggregate_training_results"] == "upstream_failed"
    [job] = server.app.state.training["jobs"].values()
    assert job["status"] == "failed"
    polls = server.faults.calls_to("/train/status/")
    assert len(polls) >= 1 and {c.status for c in polls} == {200}
    submits = [c for c in server.faults.calls if c.path == "/train/smart_ensemble"]
    assert len(submits) == 1  # a failed job is not submitted again: retrying cannot fix it
    assert query("SELECT count(*) FROM training_model_metrics") == [(0,)]
    [msg] = mail.messages()
    assert msg["Subject"].startswith("[hss_workflow] FAILED ml_training_smart_ensemble.smart_ensemble_training ")
    text = " ".join(body_text(msg).split())
    assert f"training job {job['job_id']} failed: ValueError: the training set holds one class only" in text, text


def test_a_training_job_past_its_deadline_fails_the_wait_clearly(training, standin):
    server, root, query, mail = training
    slow = standin(create_training_app(api_key=KEY, latency=0.0, train_seconds=60))
    set_connection("hss_workflow_ml_training", conn_type="http", host=slow.url, password=KEY,
                   extra={"auth_type": "api_key", "api_key_header": "X-API-Key", "timeout": 2, "max_attempts": 3,
                          "backoff_initial": 0.01, "backoff_max": 0.05})
    set_variable("hss_workflow_training_timeout_seconds", "2")
    write_dataset(root / CONF["dataset_path"], 200)
    dag = load_dag(DAG_ID)
    dag.get_task("smart_ensemble_training").retries = 0  # one try: the test reads its failure
    dr, states = run_dag(DAG_ID, CONF, dag=dag)
    assert dr.state == "failed" and states["smart_ensemble_training"] == "failed", states
    [job] = slow.app.state.training["jobs"].values()
    assert job["status"] == "running"  # the service is still training: the wait gave up, on time
    polls = slow.faults.calls_to("/train/status/")
    assert len(polls) >= 3  # polled every 0.2 s until the 2 s deadline
    [msg] = mail.messages()
    text = " ".join(body_text(msg).split())
    assert "training not finished by its deadline" in text and f"({len(polls)} polls" in text, text
