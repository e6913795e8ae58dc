"""The lineage store on a real PostgreSQL: idempotent ingest, derived state, retention."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
import pytest

from lineage_explorer.store import InvalidEvent, Owner, RunEvent
from tests.lineage_explorer.events import events_for, three_teams
from tests.lineage_explorer.sql import rows

REAL_EVENTS = Path(__file__).parent / "data" / "platform_shared_check.jsonl"


def counts(dsn: str) -> dict[str, int]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            out = {}
            for t in ("lineage_event", "lineage_job", "lineage_dataset", "lineage_run", "lineage_edge"):
                cur.execute(f"SELECT count(*) FROM {t}")
                out[t] = cur.fetchone()[0]
            return out
    finally:
        conn.close()


def test_replay_changes_nothing(store, lineage_dsn):
    events = [RunEvent.parse(e) for e in events_for(three_teams())]
    owner = Owner("bullhorn_sync", "referral")
    assert [store.ingest(e, owner) for e in events] == [True] * len(events)
    first = counts(lineage_dsn)
    snapshot = rows(lineage_dsn, "SELECT run_id, state, started_at, ended_at, updated_at FROM lineage_run ORDER BY 1")
    # the same events again, in reverse order: nothing stored, nothing changed
    assert [store.ingest(e, owner) for e in reversed(events)] == [False] * len(events)
    assert counts(lineage_dsn) == first
    assert rows(lineage_dsn, "SELECT run_id, state, started_at, ended_at, updated_at FROM lineage_run ORDER BY 1") == snapshot
    # 3 DAGs: 3 DAG runs + 5 task runs; 2 events per run
    assert first == {"lineage_event": 16, "lineage_job": 8, "lineage_dataset": 8, "lineage_run": 8, "lineage_edge": 11}


def test_run_state_follows_event_time_not_arrival(store, lineage_dsn):
    start, complete = [e for e in events_for(three_teams()) if e["job"]["name"] == "bullhorn_sync.extract"]
    owner = Owner("bullhorn_sync", "referral")
    store.ingest(RunEvent.parse(complete), owner)
    store.ingest(RunEvent.parse(start), owner)  # late START must not reopen the run
    [(state, started, ended)] = rows(lineage_dsn, "SELECT state, started_at, ended_at FROM lineage_run")
    assert state == "COMPLETED"
    assert ended - started == timedelta(seconds=2)


def test_real_provider_events_load(store, lineage_dsn):
    """Events the OpenLineage provider wrote for a real dag.test() run of the platform's
    fixture DAG (captured from the file transport): the tables and child query jobs."""
    events = [RunEvent.parse(json.loads(line)) for line in REAL_EVENTS.read_text().splitlines()]
    stored, dupes = store.ingest_many(events, lambda e: Owner("platform_shared_check", None))
    assert (stored, dupes) == (len(events), 0)
    edges = rows(lineage_dsn, "SELECT job_name, direction, dataset_name FROM lineage_edge ORDER BY 1, 2, 3")
    assert ("platform_shared_check.load_items", "out", "platform_tests_d9aeef8e.public.items") in edges
    assert ("platform_shared_check.summarize", "in", "platform_tests_d9aeef8e.public.items") in edges
    assert ("platform_shared_check.summarize", "out", "platform_tests_d9aeef8e.public.item_summary") in edges
    parents = dict(rows(lineage_dsn, "SELECT name, parent_job_name FROM lineage_job"))
    assert parents["platform_shared_check.mail_summary.query.1"] == "platform_shared_check.mail_summary"
    assert parents["platform_shared_check.summarize"] == "platform_shared_check"
    assert store.ingest_many(events, lambda e: Owner(None, None)) == (0, len(events))


def test_retention_purges_by_age(store, lineage_dsn):
    old = events_for(three_teams(), start=datetime(2026, 1, 1, tzinfo=UTC))
    new = events_for(three_teams()[:1], start=datetime(2026, 12, 1, tzinfo=UTC))
    for e in old + new:
        store.ingest(RunEvent.parse(e), Owner(None, None))
    purged = store.purge_older_than(datetime(2026, 6, 1, tzinfo=UTC))
    assert purged["lineage_event"] == len(old)
    after = counts(lineage_dsn)
    # only the recent bullhorn_sync run is left: 3 runs (DAG + 2 tasks), its 3 datasets and 4 edges
    assert after == {"lineage_event": len(new), "lineage_job": 3, "lineage_dataset": 3, "lineage_run": 3, "lineage_edge": 4}
    assert {r[0] for r in rows(lineage_dsn, "SELECT name FROM lineage_job")} == {
        "bullhorn_sync", "bullhorn_sync.extract", "bullhorn_sync.match"}


def test_retention_setting_drives_purge(store, lineage_dsn):
    from lineage_explorer.retention import purge

    recent = datetime.now(UTC) - timedelta(days=2)
    for e in events_for(three_teams()[:1], start=recent - timedelta(days=30)) + events_for(three_teams()[1:2], start=recent):
        store.ingest(RunEvent.parse(e), Owner(None, None))
    assert purge(store, retention_days=0) == {}  # 0 keeps everything
    out = purge(store, retention_days=7)
    assert out["lineage_event"] == 6
    assert {r[0] for r in rows(lineage_dsn, "SELECT DISTINCT job_name FROM lineage_event")} == {
        "looklyy_crawler", "looklyy_crawler.crawl", "looklyy_crawler.enrich"}


@pytest.mark.parametrize("bad", [
    {"eventType": "START"},
    {"eventType": "START", "eventTime": "2026-12-01T00:00:00Z", "run": {"runId": "not-a-uuid"}, "job": {"namespace": "n", "name": "j"}},
    {"eventType": "START", "eventTime": "2026-12-01T00:00:00", "run": {"runId": "9b2a8d5e-0b6e-4c54-8d3c-3b1b1b1b1b1b"},
     "job": {"namespace": "n", "name": "j"}},
    {"eventType": "NOPE", "eventTime": "2026-12-01T00:00:00Z", "run": {"runId": "9b2a8d5e-0b6e-4c54-8d3c-3b1b1b1b1b1b"},
     "job": {"namespace": "n", "name": "j"}},
])
def test_invalid_events_are_refused(bad):
    with pytest.raises(InvalidEvent):
        RunEvent.parse(bad)


def test_load_file_resolves_owners_and_skips_what_is_stored(store, lineage_dsn, tmp_path):
    from lineage_explorer.load import load_file
    from lineage_explorer.ownership import OwnerResolver

    lines = REAL_EVENTS.read_text().splitlines()
    f = tmp_path / "events.jsonl"
    f.write_text("\n".join([*lines, "", "{not json", json.dumps({"eventType": "START"})]) + "\n")
    resolver = OwnerResolver(lookup=lambda c: {d: "platform_tests" for d in c if d == "platform_shared_check"})
    report = load_file(f, store, resolver, batch=7)
    assert (report.stored, report.duplicates) == (len(lines), 0)
    assert [r.split(":")[0] for r in report.invalid] == [f"line {len(lines) + 2}", f"line {len(lines) + 3}"]
    assert set(rows(lineage_dsn, "SELECT DISTINCT dag_id, team FROM lineage_job")) == {("platform_shared_check", "platform_tests")}
    again = load_file(f, store, resolver)
    assert (again.stored, again.duplicates) == (0, len(lines))


def test_load_command_uses_the_metadata_database(lineage_dsn, tmp_path):
    """``python -m lineage_explorer load`` (what ``make lineage-load`` runs) in a process of
    its own: settings from the environment, job owners from the real metadata database."""
    import os
    import subprocess
    import sys

    from tests.lineage_explorer.conftest import seed_metadata
    from tests.lineage_explorer.events import NAMESPACE

    seed_metadata(three_teams())
    f = tmp_path / "events.jsonl"
    f.write_text("".join(json.dumps(e) + "\n" for e in events_for(three_teams())))
    env = {**os.environ, "AIRFLOW__LINEAGE_EXPLORER__SQL_ALCHEMY_CONN": lineage_dsn,
           "AIRFLOW__LINEAGE_EXPLORER__NAMESPACE": NAMESPACE,
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), str(Path(__file__).parents[2] / "plugins")])}
    out = subprocess.run([sys.executable, "-m", "lineage_explorer", "load", str(f)], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "16 event(s) stored, 0 already stored, 0 invalid" in out.stdout
    assert set(rows(lineage_dsn, "SELECT name, dag_id, team FROM lineage_job WHERE name LIKE '%.%'")) == {
        ("bullhorn_sync.extract", "bullhorn_sync", "referral"), ("bullhorn_sync.match", "bullhorn_sync", "referral"),
        ("looklyy_crawler.crawl", "looklyy_crawler", "looklyy"), ("looklyy_crawler.enrich", "looklyy_crawler", "looklyy"),
        ("aurora_stream.consume", "aurora_stream", "aurora")}


def test_purge_loop_runs_and_survives_failures(store, lineage_dsn):
    import threading

    from lineage_explorer.retention import PurgeLoop

    for e in events_for(three_teams()[:1], start=datetime.now(UTC) - timedelta(days=400)):
        store.ingest(RunEvent.parse(e), Owner(None, None))
    calls = []
    done = threading.Event()

    def target():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database not reachable yet")
        done.set()
        return store, 90

    loop = PurgeLoop(target, interval=0.05).start()
    assert done.wait(10)
    loop.stop()
    for _ in range(50):
        if counts(lineage_dsn)["lineage_event"] == 0:
            break
        threading.Event().wait(0.1)
    assert counts(lineage_dsn) == dict.fromkeys(counts(lineage_dsn), 0)


def test_a_run_stays_with_its_job_even_past_the_check(store, lineage_dsn):
    """The run upsert itself refuses a run id stored for another job: a first event of the same
    run id, for another job, in a transaction not yet committed when this event's check ran
    (a concurrent writer), makes this event wait, then be refused (409); nothing of it stored."""
    import concurrent.futures

    from lineage_explorer.store import RefusedEvent

    start = next(e for e in events_for(three_teams()) if e["job"]["name"] == "bullhorn_sync.match")
    first = RunEvent.parse(start)
    other = psycopg2.connect(lineage_dsn)
    try:
        with store.connection():
            pass  # the schema is there
        with other.cursor() as cur:  # the concurrent writer's run row, not committed yet
            cur.execute("INSERT INTO lineage_run (run_id, job_namespace, job_name, state, state_time, created_at,"
                        " updated_at) VALUES (%s, %s, 'bullhorn_sync.match', 'RUNNING', %s, %s, %s)",
                        (first.run_id, first.job_namespace, first.event_time, first.event_time, first.event_time))
        hijack = json.loads(json.dumps(start))
        hijack["job"]["name"], hijack["eventType"] = "looklyy_crawler.enrich", "FAIL"
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            claim = pool.submit(store.ingest, RunEvent.parse(hijack), Owner("looklyy_crawler", "looklyy"), "looklyy")
            with pytest.raises(concurrent.futures.TimeoutError):
                claim.result(timeout=1)  # past its check, waiting on the other writer's run row
            other.commit()
            with pytest.raises(RefusedEvent) as refused:
                claim.result(timeout=30)
    finally:
        other.close()
    assert refused.value.status == 409
    assert counts(lineage_dsn) == {"lineage_event": 0, "lineage_job": 0, "lineage_dataset": 0, "lineage_run": 1,
                                   "lineage_edge": 0}
    assert rows(lineage_dsn, "SELECT job_name, state FROM lineage_run") == [("bullhorn_sync.match", "RUNNING")]
