"""looklyy_crawler_pipeline run for real: the Looklyy API stand-in on the looklyy database,
the deferrable review wait on the (in-process) triggerer, mail read back from the sink."""

from __future__ import annotations

import threading
import time

import pendulum
import psycopg2
import pytest

from conftest import run_dag, set_connection, set_variable
from devplatform.smtp_sink import body_text
from domains.looklyy.local.looklyy_api import create_looklyy_app

DAG_ID = "looklyy_crawler_pipeline"
STEPS = ["global_database_refresh", "user_database_sync", "surface_for_manual_review", "wait_for_manual_review",
         "apply_model_learning", "send_completion_notification"]


class Looklyy:
    def __init__(self, api, db, mail):
        self.api, self.db, self.mail = api, db, mail

    def dsn(self) -> str:
        d = self.db
        return f"host={d['host']} port={d['port']} dbname={d['schema']} user={d['login']} password={d['password']}"

    def query(self, sql, params=()):
        with psycopg2.connect(self.dsn()) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def complete_review_when_opened(self, decisions: int = 6, within: float = 60) -> threading.Thread:
        """The admin: completes the run's review as soon as the pipeline opens it."""
        def admin():
            deadline = time.monotonic() + within
            while time.monotonic() < deadline:
                rows = self.query("SELECT id FROM review_sessions WHERE status = 'open'")
                if rows:
                    import requests

                    requests.post(f"{self.api.url}/api/admin/review/{rows[0][0]}/complete",
                                  params={"decisions": decisions}, headers={"X-API-Key": "looklyy-test-key"}, timeout=5)
                    return
                time.sleep(0.1)

        t = threading.Thread(target=admin, daemon=True)
        t.start()
        return t


@pytest.fixture
def looklyy(standin, domain_db, mail_sink):
    db = domain_db("looklyy")
    dsn = f"host={db['host']} port={db['port']} dbname={db['schema']} user={db['login']} password={db['password']}"
    api = standin(create_looklyy_app(dsn=dsn, api_key="looklyy-test-key"))
    set_connection("looklyy_api", conn_type="http", host=api.url, password="looklyy-test-key",
                   extra={"auth_type": "api_key", "api_key_header": "X-API-Key", "timeout": 2,
                          "backoff_initial": 0.01, "backoff_max": 0.05})
    set_variable("looklyy_alert_emails", "looklyy-ops@platform.local")
    set_variable("looklyy_review_timeout_seconds", "20")
    set_variable("looklyy_review_poll_seconds", "0.2")
    lk = Looklyy(api, db, mail_sink)
    # users have heart-marked some images earlier; one mark was taken back
    import requests

    requests.post(f"{api.url}/api/setup-airflow-tables", headers={"X-API-Key": "looklyy-test-key"}, timeout=30)
    lk.query("INSERT INTO global_images (source, url) SELECT 'seed', 'https://img/' || g FROM generate_series(1, 5) g"
             " RETURNING id")
    lk.query("INSERT INTO user_favorites (user_id, image_id, hearted) VALUES ('u1', 1, true), ('u1', 2, true),"
             " ('u2', 3, true), ('u2', 4, false) RETURNING user_id")
    lk.query("INSERT INTO user_database (user_id, image_id) VALUES ('u2', 4), ('u2', 5) RETURNING user_id")
    return lk


def summary(looklyy) -> str:
    mails = looklyy.mail.messages()
    assert len(mails) == 1, [m["Subject"] for m in mails]
    assert mails[0]["To"] == "looklyy-ops@platform.local"
    return " ".join(body_text(mails[0]).split())  # columns aligned for people; compared word by word


def test_review_completed_run(looklyy, lineage_events):
    looklyy.complete_review_when_opened(decisions=6)
    dr, states = run_dag(DAG_ID)
    assert dr.state == "success", states
    assert looklyy.query("SELECT count(*) FROM global_images") == [(5 + 12,)]
    assert sorted(looklyy.query("SELECT user_id, image_id FROM user_database")) == [("u1", 1), ("u1", 2), ("u2", 3)]
    assert looklyy.query("SELECT status, decisions FROM review_sessions") == [("completed", 6)]
    assert looklyy.query("SELECT count(*) FROM learning_patterns") == [(3,)]
    assert sorted(looklyy.query("SELECT step, status FROM pipeline_logs")) == sorted(
        (s, "success") for s in STEPS)
    text = summary(looklyy)
    for line in ("images crawled 12", "user images kept 3", "user images dropped 2",
                 "manual review completed with 6 decisions",
                 "learning applied 3 patterns (from review)", "wait_for_manual_review | success"):
        assert line in text, text

    # OpenLineage: each step's API resource (namespace = the API's scheme://host:port) and the pipeline log
    api = looklyy.api.url.rstrip("/")
    logs = (f"postgres://127.0.0.1:{looklyy.db['port']}", f"{looklyy.db['schema']}.public.pipeline_logs")
    done = {e["job"]["name"].removeprefix(DAG_ID + "."): e for e in lineage_events() if e["eventType"] == "COMPLETE"}

    def io(step):
        return ({(d["namespace"], d["name"]) for d in done[step]["inputs"]},
                {(d["namespace"], d["name"]) for d in done[step]["outputs"]})

    assert io("global_database_refresh") == (set(), {(api, "/api/crawler/harper-bazaar"), logs})
    assert io("user_database_sync") == (set(), {(api, "/api/user/sync-database"), logs})
    assert io("surface_for_manual_review") == (set(), {(api, "/api/training/setup-review"), logs})
    assert io("wait_for_manual_review") == ({(api, "/api/training/review-status")}, {logs})
    assert io("apply_model_learning") == (set(), {(api, "/api/training/apply-learning"), logs})
    inputs, outputs = io("send_completion_notification")
    mailed = {d for d in outputs if d[0].startswith("smtp://")}  # the summary mail's recipients (shared.notifications)
    assert (inputs, outputs - mailed) == ({logs}, {logs}) and mailed


def test_review_timeout_still_finishes_with_previous_patterns(looklyy):
    looklyy.query("INSERT INTO review_sessions (id, run_id, images, status, decisions) VALUES"
                  " ('old', 'earlier-run', 4, 'completed', 4) RETURNING id")
    looklyy.query("INSERT INTO learning_patterns (session_id, pattern, weight) VALUES ('old', 'palette', 0.7),"
                  " ('old', 'texture', 0.6) RETURNING id")
    set_variable("looklyy_review_timeout_seconds", "1.5")
    dr, states = run_dag(DAG_ID)
    assert dr.state == "success", states
    assert states["apply_model_learning"] == "success"
    assert looklyy.query("SELECT count(*) FROM learning_patterns") == [(2,)]
    text = summary(looklyy)
    assert "manual review timed out after" in text and "previous learning patterns applied" in text
    assert "learning applied 2 patterns (from previous)" in text


def test_crawler_503s_then_success_crawls_once(looklyy):
    looklyy.api.faults.add(status=503, times=2, path="/api/crawler")
    looklyy.complete_review_when_opened()
    dr, states = run_dag(DAG_ID)
    assert dr.state == "success", states
    calls = looklyy.api.faults.calls_to("/api/crawler/harper-bazaar")
    assert [c.status for c in calls] == [503, 503, 200]
    assert len({c.idempotency_key for c in calls}) == 1
    assert looklyy.query("SELECT count(*) FROM global_images WHERE source = 'harper-bazaar'") == [(12,)]


def test_lost_response_is_retried_with_the_same_key_and_not_crawled_twice(looklyy):
    looklyy.api.faults.add(hang=3, times=1, path="/api/crawler")  # the work is done, the answer comes too late
    looklyy.complete_review_when_opened()
    dr, states = run_dag(DAG_ID)
    assert dr.state == "success", states
    calls = looklyy.api.faults.calls_to("/api/crawler/harper-bazaar")
    assert len(calls) == 2 and calls[0].idempotency_key == calls[1].idempotency_key
    assert looklyy.query("SELECT count(*) FROM global_images WHERE source = 'harper-bazaar'") == [(12,)]


def test_permanent_400_fails_the_run_with_a_clear_error_and_a_failure_mail(looklyy):
    looklyy.api.faults.add(status=400, times=1, path="/api/crawler")
    dr, states = run_dag(DAG_ID)
    assert dr.state == "failed"
    assert states["global_database_refresh"] == "failed"
    assert looklyy.query("SELECT step, status, details->>'error' FROM pipeline_logs") == [
        ("global_database_refresh", "failed",
         'POST /api/crawler/harper-bazaar answered 400: {"errorMessage":"injected fault 400","errorCode":400}')]
    mails = looklyy.mail.messages()
    assert len(mails) == 1
    assert mails[0]["Subject"].startswith("[looklyy] FAILED looklyy_crawler_pipeline.global_database_refresh")
    assert "POST /api/crawler/harper-bazaar answered 400" in body_text(mails[0])


def test_rerun_of_the_same_logical_date_changes_nothing(looklyy):
    when = pendulum.datetime(2026, 11, 20, 2, tz="UTC")
    tables = ["global_images", "user_database", "review_sessions", "learning_patterns", "pipeline_logs"]

    def snapshot():
        return {t: looklyy.query(f"SELECT count(*) FROM {t}")[0][0] for t in tables}

    looklyy.complete_review_when_opened()
    dr, _ = run_dag(DAG_ID, logical_date=when)
    assert dr.state == "success"
    first = snapshot()
    dr2, _ = run_dag(DAG_ID, logical_date=when)
    assert dr2.state == "success"
    assert snapshot() == first
    assert looklyy.query("SELECT count(*) FROM api_idempotency") == [(3,)]


def test_review_status_401_fails_the_wait_with_the_services_answer(looklyy):
    looklyy.api.faults.add(status=401, times=1, path="/api/training/review-status")
    dr, states = run_dag(DAG_ID)
    assert dr.state == "failed"
    assert states["wait_for_manual_review"] == "failed"
    assert states["apply_model_learning"] == "upstream_failed"
    assert [c.status for c in looklyy.api.faults.calls_to("/api/training/review-status")] == [401]  # not retried
    mails = looklyy.mail.messages()
    assert mails[0]["Subject"].startswith("[looklyy] FAILED looklyy_crawler_pipeline.wait_for_manual_review")
    assert "GET /api/training/review-status answered 401" in body_text(mails[0])


def open_review(looklyy, run: str, complete: bool = False) -> str:
    import requests

    headers = {"X-API-Key": "looklyy-test-key"}
    sid = requests.post(f"{looklyy.api.url}/api/training/setup-review", json={"run_id": run}, headers=headers,
                        timeout=5).json()["session_id"]
    if complete:
        requests.post(f"{looklyy.api.url}/api/admin/review/{sid}/complete", params={"decisions": 2},
                      headers=headers, timeout=5).raise_for_status()
    return sid


@pytest.mark.parametrize(("complete", "opened_ago", "status"), [(True, 0, "completed"), (False, 3600, "timed_out")])
def test_wait_ends_on_its_worker_when_the_review_is_done_or_its_original_deadline_passed(
        looklyy, complete, opened_ago, status):
    """A review already completed, or a retry after the deadline counted from the review's
    opening: one check, no deferral (a TaskDeferred would fail this test)."""
    from types import SimpleNamespace

    from domains.looklyy.operators import WaitForReviewOperator

    sid = open_review(looklyy, "retry-run", complete)
    op = WaitForReviewOperator(task_id="wait_for_manual_review", session_id=sid, opened_at=time.time() - opened_ago,
                               timeout_seconds=60, poll_seconds=1)
    out = op.execute({"ti": SimpleNamespace(dag_id=DAG_ID, run_id="retry-run"), "logical_date": None})
    assert out["status"] == status and out["polls"] == 1
    assert len(looklyy.api.faults.calls_to("/api/training/review-status")) == 1


def test_wait_defers_with_the_deadline_from_the_reviews_opening(looklyy):
    from airflow.sdk.exceptions import TaskDeferred

    from domains.looklyy.operators import DEFERRAL_MARGIN, WaitForReviewOperator

    sid = open_review(looklyy, "wait-run")
    opened = time.time() - 20
    op = WaitForReviewOperator(task_id="wait_for_manual_review", session_id=sid, opened_at=str(opened),
                               timeout_seconds=60, poll_seconds=5)
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({})
    trigger = deferred.value.trigger
    assert trigger.deadline == opened + 60 and trigger.started == opened
    assert trigger.first_poll_at >= before + 5  # the worker just checked; the trigger waits an interval
    assert deferred.value.timeout <= pendulum.duration(seconds=40) + DEFERRAL_MARGIN
