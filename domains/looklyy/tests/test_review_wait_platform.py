"""The review wait on the real platform: api-server, dag-processor, scheduler, the looklyy
team's own Celery worker (its own Redis broker, OS user and environment, issue 11) and triggerer
(``airflow triggerer --team-name looklyy``), on a platform instance of its own (state folder,
ports). The Looklyy API stand-in runs in the test, on the platform's looklyy database; the
worker reaches it through the team's ``looklyy_api`` connection (Execution API); the wait's
deadline and poll interval are the team's variables, set to seconds, so the 6-hour path runs in a few seconds.

What the tests prove, from the stand-in's call record, the task instance's state in the
metadata DB read as each poll arrived, and the Airflow API: the worker checked once (task
running), then every later poll came from the trigger while the task instance was
``deferred`` in its one try (no worker held between polls), the deferral's timeout is the
deadline (counted from the review's opening) plus the margin, and the pipeline ends with the
review's learning (completed) or the previous patterns (timed out), as the summary mail says.
The proof needs no sampling in time: the stand-in holds the trigger's first poll until the
scheduler has read the executor's report for the worker that deferred (see
``deferral_exit_seen``). One assumption is left: the timed-out case's 30 s must outlast the
run's way from opening the review to the wait (else the wait ends on its worker at once,
without deferring, and the test fails saying no trigger was seen). ``KEEP_PLATFORM_STATE=1`` keeps the platform's folder (every log).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs

import psycopg2
import pytest
import requests

from devplatform.config import PlatformConfig
from devplatform.platform import LocalPlatform
from devplatform.ports import free_port_range, free_ports
from devplatform.smtp_sink import body_text, read_mailbox
from devplatform.standin import StandInServer
from domains.looklyy.local.looklyy_api import create_looklyy_app
from domains.looklyy.operators import DEFERRAL_MARGIN, REVIEW_STATUS

DAG_ID = "looklyy_crawler_pipeline"
TASK = "wait_for_manual_review"
KEY = "looklyy-platform-test-key"


class Env:
    def __init__(self, platform: LocalPlatform, api: StandInServer, token: str, seen: list) -> None:
        self.platform, self.api, self.token = platform, api, token
        self.seen = seen  # per review-status request: (session id, {run id: (TI state, try)}) at arrival

    def poll_states(self, run_id: str, sid: str) -> list[tuple[str, int] | None]:
        """The wait's (state, try number) in the metadata DB when each poll of ``sid`` arrived."""
        return [states.get(run_id) for s, states in self.seen if s == sid]

    def rest(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, f"{self.platform.config.api_url}/api/v2{path}",
                                headers={"Authorization": f"Bearer {self.token}"}, timeout=90, **kw)

    def set_variable(self, key: str, value: str) -> None:
        r = self.rest("PATCH", f"/variables/{key}", json={"key": key, "value": value, "team_name": "looklyy"})
        assert r.status_code == 200, r.text

    def looklyy(self, sql: str, params=()) -> list[tuple]:
        with psycopg2.connect(self.platform.pg.admin_dsn("looklyy")) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def airflow(self, sql: str, params=()) -> list[tuple]:
        with psycopg2.connect(self.platform.pg.admin_dsn("airflow")) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def unpause(self) -> str:
        """Unpause the DAG; returns the id of the scheduled run the scheduler then creates."""
        assert self.rest("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False}).status_code == 200
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            runs = self.rest("GET", f"/dags/{DAG_ID}/dagRuns", params={"run_type": "scheduled"}).json()["dag_runs"]
            if runs:
                return runs[0]["dag_run_id"]
            time.sleep(0.5)
        raise TimeoutError("no scheduled run after unpausing")

    def trigger_run(self) -> str:
        r = self.rest("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None})
        assert r.status_code == 200, r.text
        return r.json()["dag_run_id"]

    def ti_state(self, run_id: str) -> str | None:
        return self.rest("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{TASK}").json().get("state")

    def try_logs(self, run_id: str) -> str:
        """The wait's task log of every try so far, read from the log files the workers wrote."""
        folder = self.platform.config.task_log_dir / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={TASK}"
        files = sorted(folder.glob("attempt=*.log")) if folder.is_dir() else []
        return "\n".join(f"--- {f.name}\n{f.read_text()[-4000:]}" for f in files) or f"no task log under {folder}"

    def assert_one_try(self, run_id: str) -> None:
        """The wait ran as one try (deferred once, resumed once); else show the tries' logs."""
        ti = self.rest("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{TASK}").json()
        if ti["try_number"] != 1:
            raise AssertionError(f"{TASK} took {ti['try_number']} tries: {self.try_logs(run_id)}")

    def run_state(self, run_id: str) -> str:
        return self.rest("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}").json()["state"]

    def key(self, run_id: str) -> str:
        """The run key (shared.runs.run_key) the pipeline files the run's work under."""
        logical = self.rest("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}").json()["logical_date"]
        if logical:
            return f"{DAG_ID}@{datetime.fromisoformat(logical.replace('Z', '+00:00')).isoformat()}"
        return f"{DAG_ID}/{run_id}"

    def session(self, run_id: str) -> str | None:
        rows = self.looklyy("SELECT id FROM review_sessions WHERE run_id = %s", (self.key(run_id),))
        return rows[0][0] if rows else None

    def polls(self, sid: str) -> list:
        """The stand-in's record of the review-status calls for session ``sid``."""
        return [c for c in self.api.faults.calls_to(REVIEW_STATUS) if parse_qs(c.query).get("session_id") == [sid]]

    def summary(self, key: str) -> str:
        [text] = [" ".join(body_text(m).split()) for m in read_mailbox(self.platform.config.mail_dir)
                  if m["Subject"].endswith(f"Crawler pipeline {key}")]
        return text


@pytest.fixture(scope="module")
def env():
    # PostgreSQL runs as its own user: the state folder must be reachable (pytest's tmp is 0700)
    state = Path(tempfile.mkdtemp(prefix="looklyy-wait-platform-"))
    os.chmod(state, 0o755)
    # the looklyy team alone (its Celery worker, Redis, triggerer, bundle), as `PLATFORM_DOMAINS=looklyy
    # make start` runs it: the other teams' processes and local data (aurora's generated users,
    # ecommerce_ml's lake) take no part in the wait and only made the start and the stop slower
    cfg = PlatformConfig(state=state, parallelism=4, executor="celery", domains=["looklyy"])
    n = len(cfg.domains)
    ports = free_ports(6 + 2 * n)
    pg, airflow_api, smtp, worker_log, api_port = ports[:5]  # api_port: the Looklyy stand-in
    cfg.pg_port, cfg.api_port, cfg.smtp_port, cfg.worker_log_port = pg, airflow_api, smtp, worker_log
    cfg.domain_redis_port = ports[-1]  # the domains' Redis
    cfg.redis_ports = dict(zip(cfg.domains, ports[5:5 + n], strict=True))  # each team's broker
    cfg.flower_ports = dict(zip(cfg.domains, ports[5 + n:5 + 2 * n], strict=True))
    cfg.trigger_log_port = free_port_range(n + 1, exclude=ports)  # one per triggerer
    # Read by the settings' placeholders (the team's looklyy_api connection) and by the
    # `apply-settings` subprocess, which builds its own PlatformConfig from the environment.
    pinned = {"LOOKLYY_API_URL": f"http://127.0.0.1:{api_port}", "LOOKLYY_API_KEY": KEY,
              "PLATFORM_STATE_DIR": str(state), "PLATFORM_PG_PORT": str(cfg.pg_port),
              "PLATFORM_DOMAINS": ",".join(cfg.domains)}
    saved = {k: os.environ.get(k) for k in pinned}
    os.environ.update(pinned)
    p = LocalPlatform(cfg, quiet=True)
    p.standin_specs = lambda: []  # the stand-in runs here, where the test can read its call record
    api = None
    try:
        p.start(wait_timeout=300)
        dsn = (f"host=127.0.0.1 port={cfg.pg_port} dbname=looklyy user=looklyy"
               f" password={cfg.secrets.domain_db_passwords['looklyy']}")
        seen: list = []
        app = create_looklyy_app(dsn=dsn, api_key=KEY)
        record_polls(app, p.pg.admin_dsn("airflow"), p.proc("scheduler").logfile, seen)
        api = StandInServer(app, port=api_port).__enter__()
        requests.post(f"{api.url}/api/setup-airflow-tables", headers={"X-API-Key": KEY}, timeout=30).raise_for_status()
        logins = p.logins()
        token = requests.post(f"{cfg.api_url}/auth/token", timeout=10,
                              json={"username": "looklyy_op", "password": logins["looklyy_op"]}).json()["access_token"]
        yield Env(p, api, token, seen)
    finally:
        if api is not None:
            api.__exit__(None, None, None)
        p.stop()
        if os.environ.get("KEEP_PLATFORM_STATE"):  # to read every log of a failed run afterwards
            print(f"platform state kept in {state}")
        else:
            shutil.rmtree(state, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def deferral_exit_seen(scheduler_log: Path, run_id: str) -> bool:
    """Has the scheduler taken in the executor's report for the worker that deferred the wait?

    Airflow 3.3.2 marks a resumed task ``up_for_retry`` when that report is read after the
    trigger fired and the task was queued again (apache/airflow#72716); the stand-in holds
    the trigger's first poll until then, so the tests cannot hit that race whatever the load."""
    key = f"TaskInstanceKey(dag_id='{DAG_ID}', task_id='{TASK}', run_id='{run_id}', try_number=1"
    # the exit's report, not the CeleryExecutor's "queued" event for the same key
    return f"Received executor event with state success for task instance {key}" in scheduler_log.read_text()


def record_polls(app, airflow_dsn: str, scheduler_log: Path, seen: list) -> None:
    """Stand-in middleware: note the wait's state in the metadata DB as each review-status
    request arrives; hold a poll made while deferred until the deferral's exit was reported."""

    def states() -> dict[str, tuple[str, int]]:
        with psycopg2.connect(airflow_dsn) as conn, conn.cursor() as cur:
            cur.execute("SELECT run_id, state, try_number FROM task_instance WHERE dag_id = %s AND task_id = %s",
                        (DAG_ID, TASK))
            return {r: (st, n) for r, st, n in cur.fetchall()}

    @app.middleware("http")
    async def note_state(request, call_next):
        if request.url.path == REVIEW_STATUS:
            now = states()
            seen.append((request.query_params.get("session_id"), now))
            for run_id, (state, _) in now.items():
                deadline = time.monotonic() + 120
                while state == "deferred" and not deferral_exit_seen(scheduler_log, run_id) \
                        and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
        return await call_next(request)


def watch(env: Env, run_id: str, until_polls: int | None = None, timeout: float = 150):
    """Sample the wait's task state until the run ends; optionally complete the review once
    the stand-in has answered ``until_polls`` status polls.

    Returns (samples, the deferral's timeout, the trigger's classpath and team)."""
    samples: list[tuple[float, str | None]] = []
    trigger_timeout = trigger = None
    completed = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        samples.append((time.time(), env.ti_state(run_id)))
        if samples[-1][1] == "deferred" and trigger_timeout is None:
            rows = env.airflow(
                "SELECT ti.trigger_timeout, t.classpath, t.team_name FROM task_instance ti"
                " JOIN trigger t ON t.id = ti.trigger_id WHERE ti.run_id = %s AND ti.task_id = %s", (run_id, TASK))
            if rows:  # else the trigger fired between the two reads
                trigger_timeout, *trigger = rows[0]
        sid = env.session(run_id) if until_polls and not completed else None
        if sid:
            polls = [c for c in env.polls(sid) if c.status == 200]
            if len(polls) >= until_polls:
                r = requests.post(f"{env.api.url}/api/admin/review/{sid}/complete", params={"decisions": 6},
                                  headers={"X-API-Key": KEY}, timeout=5)
                r.raise_for_status()
                completed = True
        if env.run_state(run_id) in ("success", "failed"):
            return samples, trigger_timeout, tuple(trigger or ())
        time.sleep(0.2)
    calls = [(c.path, c.status) for c in env.api.faults.calls]
    logs = {n: env.platform.proc(n).logfile.read_text()[-2000:] for n in ("triggerer-looklyy", "scheduler")}
    raise TimeoutError(f"{DAG_ID} {run_id} still running; samples: {samples[-3:]}; calls: {calls};"
                       f" task logs: {env.try_logs(run_id)}; logs: {logs}")


def assert_polled_while_deferred(env: Env, run_id: str, sid: str, polls: list) -> None:
    """The first poll is the worker's check (task running); every later one came from the
    trigger while the task instance was deferred, in its first and only try."""
    states = env.poll_states(run_id, sid)
    assert len(states) == len(polls) and states[0] == ("running", 1), states
    assert set(states[1:]) == {("deferred", 1)}, states


def test_review_completed_after_several_polls_uses_the_new_review(env):
    env.set_variable("looklyy_review_timeout_seconds", "120")
    env.set_variable("looklyy_review_poll_seconds", "1")
    env.api.faults.reset_calls()
    # the service stumbles during the wait: both are retried inside the trigger's poll loop
    env.api.faults.add(delay=0.01, times=1, path=REVIEW_STATUS)  # the worker's check goes through
    env.api.faults.add(status=503, times=1, path=REVIEW_STATUS)
    env.api.faults.add(status=429, retry_after=1, times=1, path=REVIEW_STATUS)
    run_id = env.unpause()  # the scheduler starts the latest daily run (catchup off)
    _, trigger_timeout, trigger = watch(env, run_id, until_polls=3)
    assert trigger == ("shared.triggers.HttpPollTrigger", "looklyy")
    assert env.run_state(run_id) == "success"

    sid, key = env.session(run_id), env.key(run_id)
    polls = env.polls(sid)
    env.assert_one_try(run_id)
    # the worker's check, then the trigger's: 503 and 429 retried, 3 open answers, completed
    assert [c.status for c in polls[:3]] == [200, 503, 429] and len(polls) >= 6, [c.status for c in polls]
    assert_polled_while_deferred(env, run_id, sid, polls)
    [(started,)] = env.looklyy("SELECT started_at FROM pipeline_logs WHERE run_id = %s AND step = %s", (key, TASK))
    assert abs((trigger_timeout - started).total_seconds() - (120 + DEFERRAL_MARGIN.total_seconds())) < 10

    assert env.looklyy("SELECT status, decisions FROM review_sessions WHERE id = %s", (sid,)) == [("completed", 6)]
    [(details,)] = env.looklyy("SELECT details FROM pipeline_logs WHERE run_id = %s AND step = %s", (key, TASK))
    assert details["status"] == "completed" and details["polls"] == len(polls)
    text = env.summary(key)
    assert "manual review completed with 6 decisions" in text
    assert "learning applied 3 patterns (from review)" in text, text


def test_review_never_completed_carries_on_with_previous_patterns(env):
    env.looklyy("INSERT INTO review_sessions (id, run_id, images, status, decisions) VALUES"
                " ('old', 'earlier-run', 4, 'completed', 4) ON CONFLICT DO NOTHING")
    env.looklyy("INSERT INTO learning_patterns (session_id, pattern, weight) VALUES ('old', 'palette', 0.7),"
                " ('old', 'texture', 0.6) ON CONFLICT DO NOTHING")
    before = env.looklyy("SELECT count(*), count(DISTINCT pattern) FROM learning_patterns")[0]
    # long enough for the run to get from opening the review to the wait under load
    env.set_variable("looklyy_review_timeout_seconds", "30")
    env.set_variable("looklyy_review_poll_seconds", "1")
    env.api.faults.reset_calls()
    env.unpause()
    run_id = env.trigger_run()
    _, trigger_timeout, trigger = watch(env, run_id)
    assert trigger == ("shared.triggers.HttpPollTrigger", "looklyy")
    assert env.run_state(run_id) == "success"

    sid, key = env.session(run_id), env.key(run_id)
    polls = env.polls(sid)
    env.assert_one_try(run_id)
    assert len(polls) >= 3 and {c.status for c in polls} == {200}
    assert_polled_while_deferred(env, run_id, sid, polls)
    [(started,)] = env.looklyy("SELECT started_at FROM pipeline_logs WHERE run_id = %s AND step = %s", (key, TASK))
    assert abs((trigger_timeout - started).total_seconds() - (30 + DEFERRAL_MARGIN.total_seconds())) < 10

    assert env.looklyy("SELECT status FROM review_sessions WHERE id = %s", (sid,)) == [("open",)]
    assert env.looklyy("SELECT count(*), count(DISTINCT pattern) FROM learning_patterns")[0] == before
    [(details,)] = env.looklyy("SELECT details FROM pipeline_logs WHERE run_id = %s AND step = %s", (key, TASK))
    assert details["status"] == "timed_out" and details["polls"] == len(polls) and details["waited_seconds"] >= 30
    text = env.summary(key)
    assert "manual review timed out after" in text and "previous learning patterns applied" in text, text
    assert f"learning applied {before[1]} patterns (from previous)" in text, text

