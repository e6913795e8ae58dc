"""data_quality_pipeline end to end with dag.test(): generated data with planted defects in the
embedded PostgreSQL, a real SMTP sink. Every planted defect is reported by its check with its
severity and the planted ids; the report is stored; the mail names only the critical checks,
goes once per run, and not at all without a critical finding."""

from __future__ import annotations

from contextlib import closing
from datetime import date

import pandas as pd

from conftest import lineage_io, run_dag
from devplatform.smtp_sink import body_text
from domains.aurora.db import DATABASE
from domains.aurora.local.generator import DEFECT_KINDS, generate, load
from domains.aurora.quality import CHECKS_BY_NAME
from domains.aurora.tests.realtime import query

DAG_ID = "data_quality_pipeline"
END = date(2026, 11, 30)
AS_OF = pd.Timestamp("2026-11-30T04:00:00Z")


def load_with(defects) -> dict:
    ds = generate(users=40, days=20, end=END, defects=list(defects), defect_count=3)
    with closing(DATABASE.connect()) as conn:
        load(conn, ds)
    return {DEFECT_KINDS[k]: ids for k, ids in ds.planted.items()}


def test_four_check_groups_in_parallel_before_the_report():
    from airflow.dag_processing.dagbag import BundleDagBag

    from devplatform.paths import bundle_dir

    path = bundle_dir("aurora")
    dag = BundleDagBag(dag_folder=path, bundle_path=path, bundle_name="aurora").dags[DAG_ID]
    groups = {"check_life_events", "check_users", "check_integrations", "check_gamification"}
    assert all(not dag.get_task(t).upstream_task_ids for t in groups)
    assert dag.get_task("store_quality_report").upstream_task_ids == groups
    assert dag.get_task("send_critical_alerts").upstream_task_ids == {"store_quality_report"}
    assert dag.timetable.expression == "0 */4 * * *"


def test_every_planted_defect_is_reported_and_only_critical_ones_are_mailed_once(domain_db, mail_sink, lineage_events):
    db = domain_db("aurora")
    expected = load_with(DEFECT_KINDS)
    dr, states = run_dag(DAG_ID, logical_date=AS_OF)
    assert dr.state == "success", states
    run_key = f"{DAG_ID}@{AS_OF.isoformat()}"
    results = {r[0]: r[1:] for r in query(
        db, "SELECT check_name, severity, failed_rows, sample_ids, passed, checked_rows FROM quality_results"
            " WHERE run_key = %s", (run_key,))}
    assert set(results) == set(CHECKS_BY_NAME)  # metrics for every check, passing or not
    failed = {name for name, r in results.items() if not r[3]}
    assert failed == set(expected)
    for name, ids in expected.items():
        severity, count, sample, _, checked = results[name]
        assert severity == CHECKS_BY_NAME[name].severity and count == len(ids) and checked > 0
        assert sorted(map(str, sample)) == sorted(map(str, ids)), name
    critical = sorted(n for n in expected if CHECKS_BY_NAME[n].severity == "critical")
    assert query(db, "SELECT status, critical, errors, warnings FROM quality_runs WHERE run_key = %s", (run_key,)) \
        == [("critical", len(critical), 8, 4)]

    mails = mail_sink.messages()
    assert len(mails) == 1 and "ALERT" in mails[0]["Subject"]
    body = body_text(mails[0])
    for name in critical:
        assert name in body and all(str(i) in body for i in expected[name]), (name, body)
    for name in set(expected) - set(critical):
        assert name not in body
    print(body)

    # lineage (issue 23): each check group reports the tables it read; the alert reads and marks
    # the run's quality_runs row
    conn = DATABASE.hook().get_connection(DATABASE.conn_id)
    ns = f"postgres://{conn.host}:{conn.port}"

    def tables(*names):
        return {(ns, f"{conn.schema}.public.{n}") for n in names}

    events = lineage_events()
    for task_id, read in (("check_life_events", ["life_events"]), ("check_users", ["users"]),
                          ("check_integrations", ["integrations", "integration_syncs"]),
                          ("check_gamification", ["user_gamification", "user_achievements", "users", "achievements"])):
        assert lineage_io(events, f"{DAG_ID}.{task_id}") == (tables(*read), set()), task_id
    inputs, outputs = lineage_io(events, f"{DAG_ID}.send_critical_alerts")
    mail = (f"smtp://127.0.0.1:{mail_sink.port}", mails[0]["To"])
    assert (inputs, outputs) == (tables("quality_runs"), tables("quality_runs") | {mail})

    # a rerun: same report, no second mail
    dr, states = run_dag(DAG_ID, logical_date=AS_OF)
    assert dr.state == "success", states
    assert len(mail_sink.messages()) == 1
    assert query(db, "SELECT count(*), count(*) FILTER (WHERE NOT passed) FROM quality_results") == [(17, 17)]


def test_errors_and_warnings_are_reported_without_a_mail(domain_db, mail_sink):
    """The DAG's steps called directly (no scheduler run needed): no critical finding, no mail."""
    from domains.aurora import quality

    db = domain_db("aurora")
    kinds = [k for k, check in DEFECT_KINDS.items() if CHECKS_BY_NAME[check].severity != "critical"]
    expected = load_with(kinds)
    groups = [quality.check_group(g, AS_OF) for g in quality.GROUPS]
    report = quality.store_quality_report("manual", AS_OF, groups)
    assert {f["check_name"] for f in report["findings"]} == set(expected)
    assert quality.send_critical_alerts(report, AS_OF) == {"sent": False, "reason": "no critical finding"}
    assert query(db, "SELECT status, critical, alert_sent_at FROM quality_runs") == [("error", 0, None)]
    assert mail_sink.messages() == []
