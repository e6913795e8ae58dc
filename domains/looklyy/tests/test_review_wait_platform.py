"""The review wait on the real platform: api-server, dag-processor, scheduler, LocalExecutor and
the looklyy team's own triggerer (``airflow triggerer --team-name looklyy``), on a platform
instance of its own (state folder, ports). The Looklyy API stand-in runs in the test on the
platform's looklyy database; the wait's deadline and poll interval are the team's variables,
set to seconds, so the 6-hour path runs in a few seconds.

What the tests prove, from the stand-in's call record and the Airflow API: several polls of the
review status happened while the task instance stayed ``deferred`` (no worker held between
polls), the deferral's timeout is the deadline plus the margin, and the pipeline ends with the
review's learning (completed) or the previous patterns (timed out), as the summary mail says.
"""

from __future__ import annotations

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
from devplatform.smtp_sink import body_text, read_mailbox
from devplatform.standin import StandInServer, free_port
from domains.looklyy.operators import DEFERRAL_MARGIN, REVIEW_STATUS
from domains.looklyy.standins.looklyy_api import create_looklyy_app

DAG_ID = "looklyy_crawler_pipeline"
TASK = "wait_for_manual_review"
KEY = "looklyy-platform-test-key"


class Env:
    def __init__(self, platform: LocalPlatform, api: StandInServer, token: str) -> None:
        self.platform, self.api, self.token = platform, api, token

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

    def assert_one_try(self, run_id: str) -> None:
        """The wait ran as one try (deferred once, resumed once); else show the tries' logs."""
        ti = self.rest("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{TASK}").json()
        if ti["try_number"] != 1:
            logs = [self.rest("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{TASK}/logs/{n}",
                              headers={"Accept": "text/plain"}).text[-3000:] for n in range(1, ti["try_number"] + 1)]
            raise AssertionError(f"{TASK} took {ti['try_number']} tries: {logs}")

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
    cfg = PlatformConfig(state=state, pg_port=free_port(), api_port=free_port(), smtp_port=free_port(),
                         trigger_log_port=free_port(), parallelism=4)
    api_port = free_port()
    # Read by the settings' placeholders (the team's looklyy_api connection) and by the
    # `apply-settings` subprocess, which builds its own PlatformConfig from the environment.
    pinned = {"LOOKLYY_API_URL": f"http://127.0.0.1:{api_port}", "LOOKLYY_API_KEY": KEY,
              "PLATFORM_STATE_DIR": str(state), "PLATFORM_PG_PORT": str(cfg.pg_port)}
    saved = {k: os.environ.get(k) for k in pinned}
    os.environ.update(pinned)
    p = LocalPlatform(cfg, quiet=True)
    p.standin_specs = lambda: []  # the stand-in runs here, where the test can read its call record
    api = None
    try:
        p.start(wait_timeout=300)
        dsn = (f"host=127.0.0.1 port={cfg.pg_port} dbname=looklyy user=looklyy"
               f" password={cfg.secrets.domain_db_passwords['looklyy']}")
        api = StandInServer(create_looklyy_app(dsn=dsn, api_key=KEY), port=api_port).__enter__()
        requests.post(f"{api.url}/api/setup-airflow-tables", headers={"X-API-Key": KEY}, timeout=30).raise_for_status()
        logins = p.logins()
        token = requests.post(f"{cfg.api_url}/auth/token", timeout=10,
                              json={"username": "looklyy_op", "password": logins["looklyy_op"]}).json()["access_token"]
        yield Env(p, api, token)
    finally:
        if api is not None:
            api.__exit__(None, None, None)
        p.stop()
        shutil.rmtree(state, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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
    logs = {n: env.platform.proc(n).logfile.read_text()[-2000:] for n in ("triggerer-looklyy", "triggerer")}
    raise TimeoutError(f"{DAG_ID} {run_id} still running; samples: {samples[-3:]}; calls: {calls}; logs: {logs}")


def assert_deferred_between_polls(samples, polls) -> None:
    """Every sample taken between the first and the last poll saw the task deferred, and
    there was at least one sample in every gap between two polls."""
    ats = [c.at for c in polls]
    between = [(t, s) for t, s in samples if ats[0] < t < ats[-1]]
    assert between and {s for _, s in between} == {"deferred"}, between
    for a, b in zip(ats, ats[1:], strict=False):
        assert any(a < t < b for t, _ in samples) or b - a < 0.2, (a, b)


def test_review_completed_after_several_polls_uses_the_new_review(env):
    env.set_variable("looklyy_review_timeout_seconds", "120")
    env.set_variable("looklyy_review_poll_seconds", "1")
    env.api.faults.reset_calls()
    # the service stumbles during the wait: both are retried inside the trigger's poll loop
    env.api.faults.add(status=503, times=1, path=REVIEW_STATUS)
    env.api.faults.add(status=429, retry_after=1, times=1, path=REVIEW_STATUS)
    run_id = env.unpause()  # the scheduler starts the latest daily run (catchup off)
    samples, trigger_timeout, trigger = watch(env, run_id, until_polls=3)
    assert trigger == ("shared.triggers.HttpPollTrigger", "looklyy")
    assert env.run_state(run_id) == "success"

    sid, key = env.session(run_id), env.key(run_id)
    polls = env.polls(sid)
    env.assert_one_try(run_id)
    assert [c.status for c in polls[:2]] == [503, 429] and len(polls) >= 5, [c.status for c in polls]
    assert_deferred_between_polls(samples, polls)
    assert "running" not in {s for t, s in samples if polls[0].at < t < polls[-1].at}
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
    env.set_variable("looklyy_review_timeout_seconds", "5")
    env.set_variable("looklyy_review_poll_seconds", "1")
    env.api.faults.reset_calls()
    env.unpause()
    run_id = env.trigger_run()
    samples, trigger_timeout, trigger = watch(env, run_id)
    assert trigger == ("shared.triggers.HttpPollTrigger", "looklyy")
    assert env.run_state(run_id) == "success"

    sid, key = env.session(run_id), env.key(run_id)
    polls = env.polls(sid)
    env.assert_one_try(run_id)
    assert len(polls) >= 4 and {c.status for c in polls} == {200}
    assert polls[-1].at - polls[0].at <= 6
    assert_deferred_between_polls(samples, polls)
    [(started,)] = env.looklyy("SELECT started_at FROM pipeline_logs WHERE run_id = %s AND step = %s", (key, TASK))
    assert abs((trigger_timeout - started).total_seconds() - (5 + DEFERRAL_MARGIN.total_seconds())) < 10

    assert env.looklyy("SELECT status FROM review_sessions WHERE id = %s", (sid,)) == [("open",)]
    assert env.looklyy("SELECT count(*), count(DISTINCT pattern) FROM learning_patterns")[0] == before
    [(details,)] = env.looklyy("SELECT details FROM pipeline_logs WHERE run_id = %s AND step = %s", (key, TASK))
    assert details["status"] == "timed_out" and details["polls"] == len(polls)
    text = env.summary(key)
    assert "manual review timed out after" in text and "previous learning patterns applied" in text, text
    assert f"learning applied {before[1]} patterns (from previous)" in text, text

