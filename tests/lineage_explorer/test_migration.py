"""The store's upgrade to per-job dataset facets (``0002_dataset_facets_per_job``) on a
database holding data written before it: nothing is lost, and the per-job rows are what
ingesting the same events after the upgrade gives."""

from __future__ import annotations

import json
import secrets
import shutil
from datetime import datetime
from pathlib import Path

import psycopg2
import pytest

from lineage_explorer.queries import Reader, Visibility
from lineage_explorer.store import MIGRATIONS, LineageStore, Owner, RunEvent
from shared.db import migrate
from tests.lineage_explorer.events import Ds, events_for, three_teams
from tests.lineage_explorer.sql import rows as query

TEAM_OF = {d.dag_id: d.team for d in three_teams()}
FACET_ROWS = ("SELECT dataset_namespace, dataset_name, job_namespace, job_name, facets, created_at, updated_at"
              " FROM lineage_dataset_facet ORDER BY 1, 2, 3, 4")


@pytest.fixture
def second_dsn(pg):
    dbname = f"lineage_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(12)
    pg.ensure_database(dbname, "lineage_b", password)
    yield f"postgresql://lineage_b:{password}@127.0.0.1:{pg.port}/{dbname}"
    pg.drop_database(dbname)


def upgrade_events() -> list[dict]:
    """The three teams' runs, plus a second, later referral run whose extract reports another
    schema for candidates (the latest event wins per facet, per job) and a lifecycle change."""
    first = events_for(three_teams())
    later = events_for(three_teams()[:1], start=datetime.fromisoformat("2026-12-01T13:00:00+00:00"))
    for e in later:
        for d in e["outputs"]:
            if d["name"].endswith("candidates"):
                d["facets"]["schema"]["fields"].append({"name": "phone", "type": "text"})
                d["outputFacets"] = {"lifecycleStateChange": {"_producer": "t", "_schemaURL": "t",
                                                              "lifecycleStateChange": "OVERWRITE"}}
    return first + later


def write_as_before_0002(dsn: str, events: list[dict], folder: Path) -> None:
    """Apply 0001 only and store the events the way the store did then: raw events, jobs,
    edges, and every job's dataset facets merged into ``lineage_dataset.facets``."""
    shutil.copy(MIGRATIONS / "0001_lineage_store.sql", folder)
    conn = psycopg2.connect(dsn)
    try:
        assert migrate(conn, folder, lock_name="lineage_explorer") == ["0001_lineage_store"]
        with conn.cursor() as cur:
            datasets: dict[tuple, dict] = {}
            for e in sorted(events, key=lambda e: e["eventTime"]):
                ev = RunEvent.parse(e)
                cur.execute("INSERT INTO lineage_event (run_id, event_type, event_time, job_namespace, job_name,"
                            " payload) VALUES (%s, %s, %s, %s, %s, %s)",
                            (ev.run_id, ev.event_type, ev.event_time, ev.job_namespace, ev.job_name, json.dumps(e)))
                cur.execute("INSERT INTO lineage_job (namespace, name, dag_id, team, created_at, updated_at)"
                            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (namespace, name) DO UPDATE"
                            " SET updated_at = excluded.updated_at",
                            (ev.job_namespace, ev.job_name, ev.job_name.split(".")[0],
                             TEAM_OF[ev.job_name.split(".")[0]], ev.event_time, ev.event_time))
                for key, direction, io in (("inputs", "in", "inputFacets"), ("outputs", "out", "outputFacets")):
                    for d in e[key]:
                        k = (d["namespace"], d["name"])
                        old = datasets.setdefault(k, {"facets": {}, "created": ev.event_time})
                        old["facets"].update({**d.get("facets", {}), **d.get(io, {})})
                        old["updated"] = ev.event_time
                        cur.execute("INSERT INTO lineage_edge VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT"
                                    " (job_namespace, job_name, direction, dataset_namespace, dataset_name)"
                                    " DO UPDATE SET updated_at = excluded.updated_at",
                                    (ev.job_namespace, ev.job_name, direction, *k, ev.event_time))
            # a job whose events retention already purged: its edge stays, its facets are unknown
            cur.execute("INSERT INTO lineage_edge VALUES ('airflow-platform', 'bullhorn_sync.gone', 'out',"
                        " 'postgres://127.0.0.1:5432', 'referral.public.candidates', '2026-12-01T11:00:00Z')")
            for (ns, name), d in datasets.items():
                cur.execute("INSERT INTO lineage_dataset (namespace, name, facets, lifecycle_state, created_at,"
                            " updated_at) VALUES (%s, %s, %s, %s, %s, %s)",
                            (ns, name, json.dumps(d["facets"]),
                             (d["facets"].get("lifecycleStateChange") or {}).get("lifecycleStateChange"),
                             d["created"], d["updated"]))
        conn.commit()
    finally:
        conn.close()


def test_upgrade_keeps_stored_data_and_attributes_facets_to_their_jobs(lineage_dsn, second_dsn, tmp_path):
    events = upgrade_events()
    write_as_before_0002(lineage_dsn, events, tmp_path)
    legacy = query(lineage_dsn, "SELECT namespace, name, facets FROM lineage_dataset ORDER BY 1, 2")
    counts = {t: query(lineage_dsn, f"SELECT count(*) FROM {t}")[0][0]
              for t in ("lineage_event", "lineage_job", "lineage_edge", "lineage_dataset")}

    upgraded = LineageStore(lineage_dsn)  # its first connection applies 0002
    fresh = LineageStore(second_dsn)
    try:
        with upgraded.connection():
            pass
        for e in events:
            name = e["job"]["name"].split(".")[0]
            fresh.ingest(RunEvent.parse(e), Owner(name, TEAM_OF[name]))

        # nothing stored before is gone: counts, and the merged facets under their new name
        assert {t: query(lineage_dsn, f"SELECT count(*) FROM {t}")[0][0] for t in counts} == counts
        assert query(lineage_dsn, "SELECT namespace, name, legacy_facets FROM lineage_dataset ORDER BY 1, 2") == legacy
        # the per-job rows are those the same events give when they arrive after the upgrade ...
        rebuilt = query(lineage_dsn, FACET_ROWS)
        gone = [r for r in rebuilt if r[3] == "bullhorn_sync.gone"]
        assert [r for r in rebuilt if r[3] != "bullhorn_sync.gone"] == query(second_dsn, FACET_ROWS)
        # ... plus an (empty) row for the edge whose events were purged: its dataset stays visible
        assert [(r[1], r[4]) for r in gone] == [("referral.public.candidates", {})]

        # read through a team's visibility: candidates with referral's latest schema and lifecycle,
        # and looklyy's view of it holds only what looklyy's own job reported
        reader = Reader(upgraded)
        referral = Visibility(dag_ids=frozenset({"bullhorn_sync"}), known_dag_ids=frozenset(TEAM_OF))
        looklyy = Visibility(dag_ids=frozenset({"looklyy_crawler"}), known_dag_ids=frozenset(TEAM_OF))
        cand = Ds("postgres://127.0.0.1:5432", "referral.public.candidates")
        d = reader.dataset(referral, cand.namespace, cand.name)
        by_job = {e["job"]["name"]: e["facets"] for e in d["facets_by_job"]}
        assert set(by_job) == {"bullhorn_sync.extract", "bullhorn_sync.match"}
        assert [f["name"] for f in by_job["bullhorn_sync.extract"]["schema"]["fields"]] == ["id", "name", "email", "phone"]
        assert [f["name"] for f in by_job["bullhorn_sync.match"]["schema"]["fields"]] == ["id", "name", "email"]
        assert d["lifecycle_state"] == "OVERWRITE"
        d = reader.dataset(looklyy, cand.namespace, cand.name)
        assert [e["job"]["name"] for e in d["facets_by_job"]] == ["looklyy_crawler.enrich"]
        assert [f["name"] for f in d["facets"]["schema"]["fields"]] == ["id", "name", "email"]
        assert d["lifecycle_state"] is None
    finally:
        upgraded.close()
        fresh.close()


def test_upgrade_to_0003_gives_stored_runs_the_versions_ingest_gives(lineage_dsn, second_dsn, tmp_path):
    """Events stored before 0003 (raw events, jobs, runs) get, from the upgrade, the job and
    dataset versions that ingesting the same events after it gives."""
    events = upgrade_events()
    for i, e in enumerate(events):  # the DAG version changes with the later run
        e["run"]["facets"]["airflow"] = {"_producer": "t", "_schemaURL": "t",
                                         "dagRun": {"dag_version_id": "v-2" if i >= len(events) - 6 else "v-1"}}
    for name in ("0001_lineage_store.sql", "0002_dataset_facets_per_job.sql"):
        shutil.copy(MIGRATIONS / name, tmp_path)
    conn = psycopg2.connect(lineage_dsn)
    try:
        assert migrate(conn, tmp_path, lock_name="lineage_explorer") == ["0001_lineage_store",
                                                                        "0002_dataset_facets_per_job"]
        with conn.cursor() as cur:
            for e in events:
                ev = RunEvent.parse(e)
                cur.execute("INSERT INTO lineage_event (run_id, event_type, event_time, job_namespace, job_name,"
                            " payload) VALUES (%s, %s, %s, %s, %s, %s)",
                            (ev.run_id, ev.event_type, ev.event_time, ev.job_namespace, ev.job_name, json.dumps(e)))
                cur.execute("INSERT INTO lineage_job (namespace, name, created_at, updated_at) VALUES (%s, %s, %s, %s)"
                            " ON CONFLICT (namespace, name) DO UPDATE SET updated_at = excluded.updated_at",
                            (ev.job_namespace, ev.job_name, ev.event_time, ev.event_time))
                cur.execute("INSERT INTO lineage_run (run_id, job_namespace, job_name, state, state_time, created_at,"
                            " updated_at) VALUES (%s, %s, %s, 'RUNNING', %s, %s, %s) ON CONFLICT (run_id) DO UPDATE"
                            " SET updated_at = excluded.updated_at",
                            (ev.run_id, ev.job_namespace, ev.job_name, ev.event_time, ev.event_time, ev.event_time))
        conn.commit()
    finally:
        conn.close()
    assert query(lineage_dsn, "SELECT count(*) FROM lineage_event")[0][0] == len(events)

    upgraded, fresh = LineageStore(lineage_dsn), LineageStore(second_dsn)
    try:
        with upgraded.connection():
            pass  # applies 0003
        for e in events:
            name = e["job"]["name"].split(".")[0]
            fresh.ingest(RunEvent.parse(e), Owner(name, TEAM_OF[name]))
        for sql in ("SELECT dataset_namespace, dataset_name, version, job_namespace, job_name, run_id, direction,"
                    " fields, lifecycle_state, created_at, updated_at FROM lineage_dataset_version ORDER BY 1, 2, 3",
                    "SELECT namespace, name, version, created_at, updated_at, facets FROM lineage_job_version"
                    " ORDER BY 1, 2, 3",
                    "SELECT namespace, name, current_version FROM lineage_job ORDER BY 1, 2",
                    "SELECT run_id, job_version FROM lineage_run ORDER BY 1"):
            assert query(lineage_dsn, sql) == query(second_dsn, sql), sql
        sql = "SELECT run_id, input_versions, output_versions FROM lineage_run ORDER BY 1"

        def sort(rows):
            return [(r[0], sorted(map(json.dumps, r[1])), sorted(map(json.dumps, r[2]))) for r in rows]
        assert sort(query(lineage_dsn, sql)) == sort(query(second_dsn, sql))
        assert query(lineage_dsn, "SELECT count(DISTINCT version) FROM lineage_job_version"
                                  " WHERE name = 'bullhorn_sync.extract'") == [(2,)]
        assert query(lineage_dsn, "SELECT count(*) FROM lineage_dataset_version WHERE run_id IS NOT NULL"
                                  " AND dataset_name = 'referral.public.candidates'") == [(2,)]
    finally:
        upgraded.close()
        fresh.close()
