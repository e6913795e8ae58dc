"""No credential of a referral sync run is written anywhere: plant unique secrets, run the DAG end
to end (session expiry, a lost answer, 429s: every login path), then search every log and record.

Searched: the task and process logs (everything the run logged at the platform's level, stdout and
stderr), the stand-ins' access logs (served at INFO, as ``make start`` does), ``/_standin/calls``,
the OpenLineage events file and everything else under the session's directory (Airflow home and
logs, the metadata database's files), and the mail sink's messages.
"""

from __future__ import annotations

import logging
import os
import secrets
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from conftest import run_dag, set_connection
from domains.referral.local.bullhorn import create_bullhorn_app
from domains.referral.local.ml_service import create_ml_app
from domains.referral.tests.conftest import FAST_RETRIES

DAG_ID = "bullhorn_sync_optimized"


class Recorded(set):
    """A set that remembers everything ever added (the stand-in's one-time codes)."""

    def __init__(self) -> None:
        super().__init__()
        self.ever: set[str] = set()

    def add(self, value) -> None:
        self.ever.add(value)
        super().add(value)


@contextmanager
def task_logs_at(level: str, monkeypatch):
    """Airflow configures task logging once per process (``configure_logging`` is cached);
    redo it at ``level`` for the block, then back at the session's level."""
    from airflow.sdk.log import configure_logging

    before = os.environ.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
    monkeypatch.setenv("AIRFLOW__LOGGING__LOGGING_LEVEL", level)
    configure_logging.cache_clear()
    configure_logging()
    try:
        yield
    finally:
        monkeypatch.setenv("AIRFLOW__LOGGING__LOGGING_LEVEL", before)
        configure_logging.cache_clear()
        configure_logging()


def hits(needles: set[str], name: str, data: bytes) -> list[str]:
    return [f"{name}: {n[:6]}…" for n in needles if n.encode() in data]


@pytest.fixture
def planted(standin, domain_db, mail_sink, tmp_path, monkeypatch):
    password, client_secret, ml_key = (f"{p}-{secrets.token_hex(16)}" for p in ("pw", "cs", "mlk"))
    bullhorn = standin(create_bullhorn_app(client_secret=client_secret, password=password))
    ml = standin(create_ml_app(api_key=ml_key))
    set_connection("referral_bullhorn", conn_type="http", host=bullhorn.url, login="api.user", password=password,
                   extra={"auth_type": "none", "client_id": "platform-client", "client_secret": client_secret,
                          **FAST_RETRIES})
    set_connection("referral_ml_service", conn_type="http", host=ml.url, password=ml_key,
                   extra={"auth_type": "api_key", "api_key_header": "X-API-Key", **FAST_RETRIES})
    os.environ["AIRFLOW_VAR_REFERRAL_MATCHING_SCORE_THRESHOLD"] = "70"
    os.environ["AIRFLOW_VAR_REFERRAL_ALERT_EMAILS"] = "recruiting@platform.local"
    domain_db("referral")

    # the stand-ins' logs, at the level `make start` serves them
    standin_log = tmp_path / "standin.log"
    handler = logging.FileHandler(standin_log)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    loggers = [logging.getLogger(n) for n in ("uvicorn.access", "uvicorn.error")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
        # In `make start` each stand-in is a process of its own and keeps its log handlers; here
        # the in-process task runner reconfigures logging (dictConfig drops every logger's
        # handlers), which would silence the stand-ins' log instead of testing it.
        monkeypatch.setattr(lg, "removeHandler", lambda h, lg=lg, keep=handler: None if h is keep
                            else logging.Logger.removeHandler(lg, h))
    yield {"bullhorn": bullhorn, "ml": ml, "secrets": {password, client_secret, ml_key}, "mail": mail_sink,
           "standin_log": standin_log}
    for lg, level in zip(loggers, levels, strict=True):
        logging.Logger.removeHandler(lg, handler)
        lg.setLevel(level)
    handler.close()


def test_no_secret_of_the_run_reaches_any_log_or_record(planted, caplog, capfd, tmp_path, monkeypatch, platform_tmp):
    bullhorn, ml = planted["bullhorn"], planted["ml"]
    state = bullhorn.app.state.bullhorn
    state.seed(candidates=600, positions=5)
    state.codes = Recorded()
    issued: list[dict] = []
    issue = state.issue_tokens
    state.issue_tokens = lambda: issued.append(issue()) or issued[-1]
    state.expire_after_calls = 2  # a relogin with the refresh token, mid-paging
    bullhorn.faults.add(drop_after_apply=True, times=1, path="/oauth/token")  # a lost answer: a new code
    bullhorn.faults.add(status=429, retry_after=0.01, times=1, path="/rest-services/corp7/query")

    caplog.set_level(logging.INFO)
    with task_logs_at("INFO", monkeypatch):  # the platform's level (tests run at WARNING)
        dr, states = run_dag(DAG_ID)
    assert dr.state == "success", states
    assert state.logins >= 2 and len(issued) >= 3 and state.codes.ever

    tokens = {t[k] for t in issued for k in ("access_token", "refresh_token")}
    needles = planted["secrets"] | tokens | set(state.sessions) | state.codes.ever
    assert all(len(n) >= 16 for n in needles)

    out = capfd.readouterr()
    assert "Logged in to Bullhorn" in out.out  # the task logs were captured, at INFO
    found = hits(needles, "task/process stdout", out.out.encode()) + hits(needles, "stderr", out.err.encode())
    found += hits(needles, "task/process log records", caplog.text.encode())
    access_log = planted["standin_log"].read_bytes()
    assert b"/oauth/token?" in access_log and b"/rest-services/corp7/query/Candidate?" in access_log
    found += hits(needles, "stand-in access log", access_log)
    for name, server in (("bullhorn", bullhorn), ("ml", ml)):
        calls = requests.get(f"{server.url}/_standin/calls", timeout=10, headers=server.admin_headers)
        assert calls.status_code == 200 and len(calls.json()) > 3
        found += hits(needles, f"{name} /_standin/calls", calls.content)
    lineage = platform_tmp / "openlineage.jsonl"
    assert lineage.exists() and lineage.stat().st_size > 0
    searched = 0
    for root in (platform_tmp, tmp_path):  # Airflow home, logs, OpenLineage file, metadata DB; mail sink
        for f in Path(root).rglob("*"):
            if f.is_file():
                try:
                    found += hits(needles, str(f.relative_to(root)), f.read_bytes())
                    searched += 1
                except OSError:  # a file PostgreSQL removed meanwhile
                    pass
    assert searched > 100
    assert planted["mail"].messages()  # the summary was sent (and searched, in the sink's files)
    places = sorted({f.rsplit(": ", 1)[0] for f in found})
    assert found == [], f"{len(found)} secret(s) found in: {places}"
