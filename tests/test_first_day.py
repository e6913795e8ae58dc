"""A newcomer's first day, on the real platform (the session's ``live_platform``: ``make start``'s
processes, every stand-in): every DAG of every team triggered the way the README shows, with
``{"logical_date": null}``, succeeds with its outputs; and when the first task of every DAG
fails in such a run, one alert mail per failed task reaches the mail sink.

The failures come first: unpausing a DAG also starts its latest scheduled run, and those runs
fail too there, so the newcomer's runs afterwards have the platform to themselves. This
module's name sorts before test_isolation.py, which shares the platform and stops it last.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest

from devplatform.smtp_sink import body_text, read_mailbox
from tests.newcomer import DAGS, FINISHED, Newcomer, Run, report
from tests.newcomer_outputs import follow_up_runs, output_problems


@pytest.fixture(scope="module")
def newcomer(live_platform) -> Newcomer:
    return Newcomer(live_platform, standin_urls={name: s.url for name, s in live_platform.standins.items()})


# How the test makes each team's first tasks fail (restored afterwards): what a misconfigured
# deployment or a broken service does to them.
CONNECTIONS_REMOVED = {  # the team op deletes the connections its first tasks use
    "ecommerce_ml": ["ecommerce_ml_lake", "ecommerce_ml_postgres"],
    "aurora": ["aurora_postgres"],
    "hss_workflow": ["hss_workflow_training_drop"],  # daily_model_training's file sensor
}
BROKEN_SERVICES = ["looklyy_api", "bullhorn"]  # every call answered 403
MISSING_INPUT_CONFS = {  # a conf naming a file that is not there (valid by the schema)
    "comprehensive_analysis": {"song_id": "missing_song", "song_path": "missing.mp3"},
    "ml_training_smart_ensemble": {"dataset_path": "missing.csv", "training_id": "missing_training"},
}


@pytest.mark.timeout(1200)
def test_a_failure_in_the_first_task_of_every_dag_is_mailed_once_per_failed_task(live_platform, newcomer):
    mail_dir = live_platform.config.mail_dir
    for team, conn_ids in CONNECTIONS_REMOVED.items():
        for conn_id in conn_ids:
            r = newcomer.call(team, "DELETE", f"/connections/{conn_id}")
            assert r.status_code == 204, (conn_id, r.status_code, r.text)
    for name in BROKEN_SERVICES:
        live_platform.standins[name].faults.add(status=403, times=10**6)
    try:
        runs = {d: newcomer.trigger(d, MISSING_INPUT_CONFS.get(d)) for d in DAGS}
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and not all(r.state in FINISHED for r in runs.values()):
            time.sleep(3)
            for run in runs.values():
                if run.state not in FINISHED:
                    newcomer.refresh(run)
        for run in runs.values():
            newcomer.refresh(run)
    finally:
        for name in BROKEN_SERVICES:
            live_platform.standins[name].faults.clear()
        live_platform.prepare_db(migrate=False)  # the settings again: the removed connections are back
    print("\n" + report(runs))
    assert {d: r.state for d, r in runs.items()} == {d: "failed" for d in DAGS}, report(runs)

    time.sleep(5)  # the last callbacks' mails
    mails = read_mailbox(mail_dir)  # the runs are new: a mail about one of them is about this test
    missing, extra = {}, {}
    for dag_id, run in runs.items():
        failed = sorted(t for t, s in run.tasks.items() if s == "failed")
        first = _first_tasks(newcomer, run)
        assert failed and set(failed) <= first, (dag_id, failed, first)  # it failed in its first task(s)
        for task_id in failed:
            about = [m for m in mails if re.match(rf"\[{DAGS[dag_id]}\] FAILED {dag_id}\.{re.escape(task_id)} \(try \d+\)$",
                                                  m["Subject"]) and run.run_id in body_text(m)]
            if len(about) != 1:
                (missing if not about else extra)[f"{dag_id}.{task_id}"] = len(about)
                continue
            body = body_text(about[0])
            assert "none (triggered without a logical date)" in body, body
            assert re.search(r"^error +\S", body, re.M), body  # the error, named
    failed_tasks = sum(s == "failed" for r in runs.values() for s in r.tasks.values())
    print(f"{failed_tasks} failed tasks in {len(runs)} runs; alert mails found for "
          f"{failed_tasks - len(missing) - len(extra)} of them")
    assert (missing, extra) == ({}, {})


def _first_tasks(newcomer, run) -> set[str]:
    """The DAG's tasks with no upstream task."""
    r = newcomer.call(run.team, "GET", f"/dags/{run.dag_id}/tasks")
    r.raise_for_status()
    tasks = r.json()["tasks"]
    downstream = {d for t in tasks for d in t["downstream_task_ids"]}
    return {t["task_id"] for t in tasks} - downstream


@pytest.mark.timeout(2400)
def test_every_dag_of_every_team_succeeds_when_triggered_as_the_readme_shows(live_platform, newcomer):
    """16 of 16: REST as each team's op user, ``{"logical_date": null}`` (no logical date, no
    data interval: the DAGs that process an interval take the last complete one of their
    schedule), the seed's example conf for the two triggered hss_workflow DAGs, looklyy's review
    completed through its stand-in, hss_workflow's daily DAG handed a new CSV; then each run's
    outputs are looked for in its domain's database, lake and the mail sink."""
    runs = newcomer.run_all(timeout=1500)
    print("\n" + report(runs))
    assert {d: r.state for d, r in runs.items()} == {d: "success" for d in DAGS}, report(runs)
    problems = {}
    infos = {}
    for dag_id, run in runs.items():
        domain = DAGS[dag_id]
        info = {"run_id": run.run_id, "run_key": f"{dag_id}/{run.run_id}", "run_after": run.triggered_at, "conf": run.conf,
                "start_date": datetime.fromisoformat(run.detail["start_date"]),
                "end_date": datetime.fromisoformat(run.detail["end_date"]),
                "lake_dir": live_platform.config.tenant_dir(domain) / "lake",
                "mail_dir": live_platform.config.mail_dir}
        infos[dag_id] = info
        with psycopg2.connect(live_platform.pg.admin_dsn(domain)) as conn, conn.cursor() as cur:
            follow_ups = follow_up_runs(dag_id, cur, info)
        for other, run_id in follow_ups:  # daily_model_training's training run: wait for it
            follow = newcomer.wait(Run(other, DAGS[other], run_id, run.triggered_at), timeout=600)
            assert follow.state == "success", (dag_id, report({other: follow}))
            info["end_date"] = max(info["end_date"], datetime.fromisoformat(follow.detail["end_date"]))
    for dag_id, info in infos.items():
        with psycopg2.connect(live_platform.pg.admin_dsn(DAGS[dag_id])) as conn, conn.cursor() as cur:
            if found := output_problems(dag_id, cur, info):
                problems[dag_id] = found
    assert problems == {}
    # nothing a team legitimately does is refused by the lineage explorer's integrity checks:
    # every DAG's runs reached its store, and no event was refused
    deadline, missing = time.monotonic() + 120, set(DAGS)
    while missing and time.monotonic() < deadline:
        with psycopg2.connect(live_platform.pg.admin_dsn("lineage")) as conn, conn.cursor() as cur:
            cur.execute("SELECT DISTINCT job_name FROM lineage_run")
            missing = set(DAGS) - {row[0] for row in cur.fetchall()}
        time.sleep(0 if not missing else 3)
    assert missing == set(), f"no lineage stored for the runs of {sorted(missing)}"
    log = live_platform.proc("api-server").logfile.read_text()
    refused = [line for line in log.splitlines() if "lineage ingest refused" in line]
    assert refused == [], refused[:5]


@pytest.mark.timeout(300)
def test_every_task_of_the_full_run_reports_what_it_read_and_wrote(live_platform, newcomer):
    """Issue 23, "every task accounted for", over the runs of the test above (the lineage store's
    events): every task of the 16 DAGs has a job in the store, and every task job reports at least
    one dataset (on its own events or on its SQL child jobs'), or, for a task that triggers a DAG,
    the parent run relation (the triggered run's events name the task's run as their parent), unless
    it is in the policy's allow-list of tasks that touch nothing (devplatform/policy.py)."""
    from devplatform.policy import LINEAGE_TOUCHES_NOTHING

    tasks: dict[str, str] = {}  # "<dag_id>.<task_id>" -> dag_id
    for dag_id, team in DAGS.items():
        r = newcomer.call(team, "GET", f"/dags/{dag_id}/tasks")
        r.raise_for_status()
        tasks.update({f"{dag_id}.{t['task_id']}": dag_id for t in r.json()["tasks"]})
    assert set(LINEAGE_TOUCHES_NOTHING) <= set(tasks), "stale allow-list entries: " + str(
        sorted(set(LINEAGE_TOUCHES_NOTHING) - set(tasks)))
    with psycopg2.connect(live_platform.pg.admin_dsn("lineage")) as conn, conn.cursor() as cur:
        cur.execute("""SELECT job_name, payload->'run'->'facets'->'parent'->'job'->>'name',
                              jsonb_array_length(coalesce(payload->'inputs', '[]'))
                              + jsonb_array_length(coalesce(payload->'outputs', '[]'))
                       FROM lineage_event""")
        events = cur.fetchall()
    seen, accounted = set(), {}
    for job, parent, datasets in events:
        seen.add(job)
        if job in tasks and datasets:
            accounted.setdefault(job, "its datasets")
        elif parent in tasks and job.startswith(parent + ".") and datasets:
            accounted.setdefault(parent, f"the datasets of its child job {job}")
        elif parent in tasks and job in DAGS:
            accounted.setdefault(parent, f"the run of {job} it triggered (parent run facet)")
    never = sorted(set(tasks) - seen)
    unaccounted = sorted(set(tasks) - set(accounted) - set(LINEAGE_TOUCHES_NOTHING) - set(never))
    print(f"\n{len(tasks)} tasks in {len(DAGS)} DAGs: {len(accounted)} report lineage, "
          f"{len(LINEAGE_TOUCHES_NOTHING)} touch nothing (allow-list), {len(unaccounted)} report nothing, "
          f"{len(never)} have no events")
    assert never == [], f"tasks of the full run with no job in the lineage store: {never}"
    assert unaccounted == [], f"task jobs that report no dataset and are not in the allow-list: {unaccounted}"
    reporting = sorted(set(accounted) & set(LINEAGE_TOUCHES_NOTHING))
    assert reporting == [], f"allow-listed as touching nothing, yet they report datasets: {reporting}"


@pytest.mark.timeout(900)
def test_the_other_ways_to_start_a_dag_run_it_too(live_platform, newcomer):
    """After the newcomer's runs: ``airflow dags trigger`` as the platform's admin (no logical
    date) and REST with a logical date both succeed, and each works on the same window as the
    run without a logical date (the UI's Trigger button: tests/test_first_day_ui.py)."""
    before = datetime.now(UTC)
    live_platform.airflow("dags", "trigger", "ecommerce_ml_time_series")
    listed = newcomer.call("ecommerce_ml", "GET", "/dags/ecommerce_ml_time_series/dagRuns",
                           params={"order_by": "-run_after", "limit": 1}).json()["dag_runs"]
    assert listed and datetime.fromisoformat(listed[0]["run_after"]) >= before, listed
    cli_run = newcomer.wait(Run("ecommerce_ml_time_series", "ecommerce_ml", listed[0]["dag_run_id"], before))
    assert cli_run.state == "success", report({"cli": cli_run})
    assert cli_run.detail["logical_date"] is None and cli_run.detail["data_interval_start"] is None

    # REST with a logical date that is no scheduled run's (those exist since the DAG was unpaused):
    # Airflow infers the interval from it, the same day the newcomer's run without one processed
    from airflow.timetables.interval import CronDataIntervalTimetable

    from shared.runs import last_complete_interval

    now = datetime.now(UTC)
    start, end = last_complete_interval(CronDataIntervalTimetable("0 2 * * *", "UTC"), now)
    r = newcomer.call("ecommerce_ml", "POST", "/dags/ecommerce_ml_user_item_interactions/dagRuns",
                      json={"logical_date": (end + timedelta(minutes=45)).isoformat()})  # :30 is the UI test's
    assert r.status_code == 200, r.text
    dated = newcomer.wait(Run("ecommerce_ml_user_item_interactions", "ecommerce_ml", r.json()["dag_run_id"], now))
    assert dated.state == "success", report({"dated": dated})
    assert (datetime.fromisoformat(dated.detail["data_interval_start"]),
            datetime.fromisoformat(dated.detail["data_interval_end"])) == (start, end)
    with psycopg2.connect(live_platform.pg.admin_dsn("ecommerce_ml")) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM dataset_registry WHERE dag_id = %s AND version = %s",
                    ("ecommerce_ml_user_item_interactions", start.date().isoformat()))
        assert cur.fetchone()[0] > 0

