"""The fixture DAG ``platform_shared_check`` run for real: HTTP stand-in, Postgres,
common-sql, OpenLineage events read back, summary mail read back from the SMTP sink."""

from __future__ import annotations

import re

import psycopg2
import pytest

from conftest import run_dag, set_connection, set_variable
from devplatform.smtp_sink import body_text
from tests.catalog_standin import create_catalog_app


@pytest.fixture
def wired(domain_db, mail_sink, standin, tmp_path):
    db = domain_db("platform_tests")
    api = standin(create_catalog_app(items=23))
    set_connection("platform_tests_api", conn_type="http", host=api.url, password="test-key",
                   extra={"auth_type": "api_key", "api_key_header": "X-API-Key", "backoff_initial": 0.01})
    set_variable("platform_tests_alert_emails", "ops@platform.local,data@platform.local")
    return db, api, mail_sink


def test_runs_end_to_end_and_reruns_change_nothing(wired, lineage_events):
    db, api, sink = wired
    api.faults.add(status=503, times=1, path="/items")
    dr, states = run_dag("platform_shared_check")
    assert dr.state == "success", states
    conn = psycopg2.connect(host=db["host"], port=db["port"], dbname=db["schema"], user=db["login"], password=db["password"])
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), sum(price) FROM items")
        assert cur.fetchone() == (23, sum(round(i * 1.5, 2) for i in range(1, 24)))
        cur.execute("SELECT n_items FROM item_summary")
        assert cur.fetchall() == [(23,)]

    mails = sink.messages()
    assert len(mails) == 1
    assert mails[0]["To"] == "ops@platform.local, data@platform.local"
    assert "items loaded  23" in body_text(mails[0])
    assert mails[0].get_body(preferencelist=("html",)) is not None

    dr2, _ = run_dag("platform_shared_check")
    assert dr2.state == "success"
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM items")
        assert cur.fetchone() == (23,)
        cur.execute("SELECT count(*) FROM item_summary")
        assert cur.fetchone() == (1,)
    conn.close()

    events = [e for e in lineage_events() if e["eventType"] == "COMPLETE"]
    by_job = {e["job"]["name"]: e for e in events if e["run"]["runId"]}
    load = by_job["platform_shared_check.load_items"]
    ns = f"postgres://127.0.0.1:{db['port']}"
    assert {(d["namespace"], d["name"]) for d in load["outputs"]} == {(ns, f"{db['schema']}.public.items")}
    summarize = by_job["platform_shared_check.summarize"]
    assert (ns, f"{db['schema']}.public.items") in {(d["namespace"], d["name"]) for d in summarize["inputs"]}
    assert (ns, f"{db['schema']}.public.item_summary") in {(d["namespace"], d["name"]) for d in summarize["outputs"]}


@pytest.mark.parametrize("logical_date", ["now", None], ids=["with-logical-date", "without-logical-date"])
def test_failure_notification_reaches_the_domain_recipients(wired, logical_date):
    """Also for a run triggered without a logical date (REST ``{"logical_date": null}``, the UI's
    button without a date): its context has no ``logical_date`` and no data interval."""
    db, api, sink = wired
    set_connection("platform_tests_api", conn_type="http", host=api.url, password="wrong-key",
                   extra={"auth_type": "api_key", "api_key_header": "X-API-Key"})
    dr, states = run_dag("platform_shared_check", **({} if logical_date == "now" else {"logical_date": None}))
    assert dr.state == "failed" and states["load_items"] == "failed"
    mails = sink.messages()
    assert len(mails) == 1
    assert mails[0]["Subject"].startswith("[platform_tests] FAILED platform_shared_check.load_items")
    assert "GET /items answered 401" in body_text(mails[0])
    assert "wrong-key" not in mails[0].as_string()
    body = body_text(mails[0])
    assert re.search(rf"^run +{re.escape(dr.run_id)}$", body, re.M)
    assert ("none (triggered without a logical date)" in body) == (logical_date is None)
