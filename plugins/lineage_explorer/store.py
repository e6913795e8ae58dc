"""The lineage store: raw OpenLineage run events and the current graph derived from them.

One PostgreSQL database (``lineage``, its own login role), schema in ``migrations/``
applied with :func:`shared.db.migrate`. :meth:`LineageStore.ingest` stores an event once
(unique on run id, event type and event time) and, in the same transaction, maintains:

- ``lineage_job``: one row per job (namespace, name), with the Airflow DAG and team it
  belongs to (resolved by the ingest endpoint, never taken from the event);
- ``lineage_dataset``: one row per dataset (namespace, name): the registry, no facets;
- ``lineage_dataset_facet``: one row per (dataset, job naming it), with the facets that
  job's events reported for it (``facets`` + ``inputFacets``/``outputFacets``, the latest
  event wins per facet). A job never writes onto another job's row, so one team's event
  that names another team's dataset cannot change what that team sees of it;
- ``lineage_run``: one row per run, state from the latest event by event time (an event
  arriving late does not move a finished run back to RUNNING);
- ``lineage_edge``: job -> dataset (``out``) and dataset -> job (``in``) edges.

A run belongs to one job: an event whose run id is stored for another job is refused
(:class:`RefusedEvent`, status 409), and so is one whose ``parent`` (or ``root``) run facet
names a stored run of another job than the facet's; with a team's key (``team``), a parent
or root run stored for a job of another team is refused too (403). Nothing of a refused
event is stored. A replayed event changes nothing. :meth:`LineageStore.purge_older_than` is
the retention. Reads take a :class:`Visibility` (the jobs a user may see) and are in
``queries.py``.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras
import psycopg2.pool

from shared.db import migrate

MIGRATIONS = Path(__file__).parent / "migrations"

# OpenLineage eventType -> Marquez run state. OTHER (and no type) leaves the state as it is.
RUN_STATES = {
    "START": "RUNNING",
    "RUNNING": "RUNNING",
    "COMPLETE": "COMPLETED",
    "FAIL": "FAILED",
    "ABORT": "ABORTED",
}
TERMINAL = {"COMPLETED", "FAILED", "ABORTED"}


class InvalidEvent(ValueError):
    """The payload is not an OpenLineage run event this store can keep."""


class RefusedEvent(Exception):
    """A well-formed event the store will not keep: ``status`` is the HTTP status to answer
    (409 the run id belongs to another job, 403 a parent run of another team), ``reason``
    says why (names of jobs and run ids only, never a key)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def run_and_job(run: dict, job: dict, where: str) -> tuple[str, str, str]:
    """(run id, job namespace, job name) of an event's run and job objects, or of a run facet's
    (``where``: the facet's path, e.g. ``run.facets.parent.``)."""
    try:
        run_id = str(uuid.UUID(str(run.get("runId"))))
    except ValueError:
        raise InvalidEvent(f"{where}run.runId is not a UUID: {run.get('runId')!r}") from None
    ns, name = job.get("namespace"), job.get("name")
    if not (isinstance(ns, str) and ns and isinstance(name, str) and name):
        raise InvalidEvent(f"{where}job.namespace and {where}job.name must be non-empty strings")
    return run_id, ns, name


@dataclass(frozen=True)
class RunEvent:
    """The fields of an OpenLineage run event the store keys and derives on."""

    payload: dict
    run_id: str
    event_type: str
    event_time: datetime
    job_namespace: str
    job_name: str

    @classmethod
    def parse(cls, payload: Any) -> RunEvent:
        if not isinstance(payload, dict):
            raise InvalidEvent("an OpenLineage event is a JSON object")
        run, job = payload.get("run"), payload.get("job")
        if not isinstance(run, dict) or not isinstance(job, dict):
            raise InvalidEvent("only run events are stored: 'run' and 'job' objects are required")
        run_id, ns, name = run_and_job(run, job, "")
        try:
            event_time = datetime.fromisoformat(str(payload.get("eventTime")).replace("Z", "+00:00"))
        except ValueError:
            raise InvalidEvent(f"eventTime is not an ISO 8601 time: {payload.get('eventTime')!r}") from None
        if event_time.tzinfo is None:
            raise InvalidEvent("eventTime must carry a time zone offset")
        for key in ("inputs", "outputs"):
            for ds in payload.get(key) or []:
                if not (isinstance(ds, dict) and ds.get("namespace") and ds.get("name")):
                    raise InvalidEvent(f"every entry of {key} needs a namespace and a name")
        event_type = payload.get("eventType") or ""
        if event_type and event_type not in (*RUN_STATES, "OTHER"):
            raise InvalidEvent(f"unknown eventType {event_type!r}")
        event = cls(payload, run_id, event_type, event_time, ns, name)
        event.parent_runs()  # a parent the store could not check is no run event it keeps
        return event

    @property
    def parent_job_name(self) -> str | None:
        parent = ((self.payload["run"].get("facets") or {}).get("parent") or {}).get("job") or {}
        return parent.get("name") if parent.get("namespace") == self.job_namespace else None

    def parent_runs(self) -> list[tuple[str, str, str, str]]:
        """The runs the ``parent`` run facet and its ``root`` attach this event to, as
        ``(facet, run id, job namespace, job name)``. Both need a UUID run id and a job
        (namespace, name), as the spec's ParentRunFacet requires: a run that cannot be checked
        is :class:`InvalidEvent`, not kept."""
        parent = (self.payload["run"].get("facets") or {}).get("parent")
        if parent is None:
            return []
        if not isinstance(parent, dict):
            raise InvalidEvent("run.facets.parent must be an object")
        refs = [("parent", parent)] + ([("parent.root", parent["root"])] if parent.get("root") is not None else [])
        out = []
        for label, ref in refs:
            run = ref.get("run") if isinstance(ref, dict) else None
            job = ref.get("job") if isinstance(ref, dict) else None
            if not isinstance(run, dict) or not isinstance(job, dict):
                raise InvalidEvent(f"run.facets.{label} needs a run and a job object")
            out.append((label, *run_and_job(run, job, f"run.facets.{label}.")))
        return out


@dataclass(frozen=True)
class Owner:
    """Who a job belongs to, as resolved by the ingest side (not read from the event)."""

    dag_id: str | None
    team: str | None


class LineageStore:
    """A pool of connections to the lineage database; thread-safe."""

    def __init__(self, dsn: str, maxconn: int = 8) -> None:
        self.dsn = dsn
        self._pool = psycopg2.pool.ThreadedConnectionPool(1, maxconn, dsn)
        self._migrated = False
        self._lock = threading.Lock()

    def close(self) -> None:
        self._pool.closeall()

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """A pooled connection with the schema up to date; rolled back on error."""
        conn = self._pool.getconn()
        try:
            if not self._migrated:
                with self._lock:
                    if not self._migrated:
                        migrate(conn, MIGRATIONS, lock_name="lineage_explorer")
                        self._migrated = True
            yield conn
        except BaseException:
            conn.rollback()
            raise
        finally:
            self._pool.putconn(conn)

    # -- ingest -------------------------------------------------------------------
    def ingest(self, event: RunEvent, owner: Owner, team: str | None = None) -> bool:
        """Store one event and update the derived tables in one transaction.

        Returns False (and changes nothing) when the same (run id, event type, event time)
        was stored before. ``team`` is the ingest key's team (None: the platform key),
        recorded with the raw event and checked against the team of a stored parent run.
        Raises :class:`RefusedEvent` (nothing stored) when the run, or a parent run, belongs
        to another job (see the module docstring).
        """
        with self.connection() as conn:
            new = self._ingest(conn, event, owner, team)
            conn.commit()
            return new

    def ingest_many(self, events: Iterable[RunEvent], resolve: Callable[[RunEvent], Owner], batch: int = 500,
                    refused: list[str] | None = None) -> tuple[int, int]:
        """Load many events (platform authority), one transaction per ``batch``; returns
        (stored, duplicates). A refused event is skipped (its savepoint rolled back) and
        described in ``refused``."""
        stored = dupes = 0
        with self.connection() as conn:
            for i, event in enumerate(events, 1):
                with conn.cursor() as cur:
                    cur.execute("SAVEPOINT lineage_event")
                try:
                    new = self._ingest(conn, event, resolve(event), None)
                except RefusedEvent as e:
                    with conn.cursor() as cur:
                        cur.execute("ROLLBACK TO SAVEPOINT lineage_event")
                    if refused is not None:
                        refused.append(f"run {event.run_id} of job {event.job_name}: {e.reason}")
                    continue
                if new:
                    stored += 1
                else:
                    dupes += 1
                if i % batch == 0:
                    conn.commit()
            conn.commit()
        return stored, dupes

    @staticmethod
    def _check_runs(cur: Any, ev: RunEvent, team: str | None) -> None:
        """Refuse (before anything is written) an event whose run id is stored for another
        job, or whose parent/root run is stored for another job than the facet names or, with
        a team's key, for a job of another team. The messages name no other team's job."""
        parents = ev.parent_runs()
        cur.execute(
            "SELECT r.run_id::text, r.job_namespace, r.job_name, j.team FROM lineage_run r"
            " LEFT JOIN lineage_job j ON j.namespace = r.job_namespace AND j.name = r.job_name"
            " WHERE r.run_id = ANY(%s::uuid[])",
            ([ev.run_id, *(run_id for _, run_id, _, _ in parents)],),
        )
        stored = {row[0]: row[1:] for row in cur.fetchall()}
        own = stored.get(ev.run_id)
        if own is not None and own[:2] != (ev.job_namespace, ev.job_name):
            raise RefusedEvent(409, f"run {ev.run_id} is already stored for another job; a run belongs to one job")
        for label, run_id, ns, name in parents:
            found = stored.get(run_id)
            if found is None:
                continue
            if found[:2] != (ns, name):
                raise RefusedEvent(409, f"the {label} run {run_id} is stored for another job than {ns}:{name}")
            if team is not None and found[2] != team:
                raise RefusedEvent(403, f"the {label} run {run_id} is not a run of team {team!r}'s jobs")

    def _ingest(self, conn: Any, ev: RunEvent, owner: Owner, team: str | None) -> bool:
        p = ev.payload
        with conn.cursor() as cur:
            self._check_runs(cur, ev, team)
            cur.execute(
                "INSERT INTO lineage_event (run_id, event_type, event_time, job_namespace, job_name, team, payload)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT ON CONSTRAINT lineage_event_once DO NOTHING RETURNING id",
                (ev.run_id, ev.event_type, ev.event_time, ev.job_namespace, ev.job_name, team, json.dumps(p)),
            )
            if cur.fetchone() is None:
                return False
            job_facets = (p.get("job") or {}).get("facets") or {}
            cur.execute(
                "INSERT INTO lineage_job AS j (namespace, name, dag_id, team, parent_job_name, description,"
                " location, facets, created_at, updated_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT (namespace, name) DO UPDATE SET"
                "  dag_id = coalesce(excluded.dag_id, j.dag_id), team = coalesce(excluded.team, j.team),"
                "  parent_job_name = coalesce(excluded.parent_job_name, j.parent_job_name),"
                "  description = coalesce(excluded.description, j.description),"
                "  location = coalesce(excluded.location, j.location),"
                "  facets = CASE WHEN excluded.updated_at >= j.updated_at THEN j.facets || excluded.facets"
                "                ELSE excluded.facets || j.facets END,"
                "  created_at = least(j.created_at, excluded.created_at),"
                "  updated_at = greatest(j.updated_at, excluded.updated_at)",
                (
                    ev.job_namespace, ev.job_name, owner.dag_id, owner.team, ev.parent_job_name,
                    (job_facets.get("documentation") or {}).get("description"),
                    (job_facets.get("sourceCodeLocation") or {}).get("url"),
                    json.dumps(job_facets), ev.event_time, ev.event_time,
                ),
            )
            run = p["run"]
            run_facets = run.get("facets") or {}
            nominal = run_facets.get("nominalTime") or {}
            state = RUN_STATES.get(ev.event_type)
            ios = {k: [{"namespace": d["namespace"], "name": d["name"]} for d in p.get(k) or []] for k in ("inputs", "outputs")}
            cur.execute(
                "INSERT INTO lineage_run AS r (run_id, job_namespace, job_name, state, state_time, nominal_start_time,"
                " nominal_end_time, started_at, ended_at, facets, inputs, outputs, created_at, updated_at)"
                " VALUES (%(id)s, %(ns)s, %(name)s, coalesce(%(state)s, 'NEW'), %(t)s, %(ns_start)s, %(ns_end)s,"
                "  CASE WHEN %(type)s = 'START' THEN %(t)s::timestamptz END,"
                "  CASE WHEN %(state)s IN ('COMPLETED', 'FAILED', 'ABORTED') THEN %(t)s::timestamptz END,"
                "  %(facets)s, %(inputs)s, %(outputs)s, %(t)s, %(t)s)"
                " ON CONFLICT (run_id) DO UPDATE SET"
                "  state = CASE WHEN %(state)s IS NOT NULL AND excluded.state_time >= r.state_time"
                "               THEN excluded.state ELSE r.state END,"
                "  state_time = CASE WHEN %(state)s IS NOT NULL AND excluded.state_time >= r.state_time"
                "               THEN excluded.state_time ELSE r.state_time END,"
                "  nominal_start_time = coalesce(excluded.nominal_start_time, r.nominal_start_time),"
                "  nominal_end_time = coalesce(excluded.nominal_end_time, r.nominal_end_time),"
                "  started_at = coalesce(least(r.started_at, excluded.started_at), r.started_at, excluded.started_at),"
                "  ended_at = coalesce(greatest(r.ended_at, excluded.ended_at), r.ended_at, excluded.ended_at),"
                "  facets = CASE WHEN excluded.updated_at >= r.updated_at THEN r.facets || excluded.facets"
                "                ELSE excluded.facets || r.facets END,"
                "  inputs = (SELECT coalesce(jsonb_agg(DISTINCT x), '[]') FROM jsonb_array_elements(r.inputs || excluded.inputs) x),"
                "  outputs = (SELECT coalesce(jsonb_agg(DISTINCT x), '[]') FROM jsonb_array_elements(r.outputs || excluded.outputs) x),"
                "  created_at = least(r.created_at, excluded.created_at),"
                "  updated_at = greatest(r.updated_at, excluded.updated_at)"
                # a run of another job stored between the check above and here (a concurrent event)
                " WHERE r.job_namespace = excluded.job_namespace AND r.job_name = excluded.job_name RETURNING 1",
                {
                    "id": ev.run_id, "ns": ev.job_namespace, "name": ev.job_name, "state": state,
                    "type": ev.event_type, "t": ev.event_time,
                    "ns_start": nominal.get("nominalStartTime"), "ns_end": nominal.get("nominalEndTime"),
                    "facets": json.dumps(run_facets), "inputs": json.dumps(ios["inputs"]),
                    "outputs": json.dumps(ios["outputs"]),
                },
            )
            if cur.fetchone() is None:  # the caller rolls the transaction back: nothing is stored
                raise RefusedEvent(409, f"run {ev.run_id} is already stored for another job; a run belongs to one job")
            datasets, edges = {}, set()
            for key, direction, io_facets in (("inputs", "in", "inputFacets"), ("outputs", "out", "outputFacets")):
                for d in p.get(key) or []:
                    facets = dict(d.get("facets") or {})
                    facets.update(d.get(io_facets) or {})
                    k = (d["namespace"], d["name"])
                    datasets[k] = {**datasets.get(k, {}), **facets}
                    edges.add((ev.job_namespace, ev.job_name, direction, *k))
            if datasets:
                psycopg2.extras.execute_values(
                    cur,
                    "INSERT INTO lineage_dataset AS d (namespace, name, created_at, updated_at) VALUES %s"
                    " ON CONFLICT (namespace, name) DO UPDATE SET created_at = least(d.created_at, excluded.created_at),"
                    "  updated_at = greatest(d.updated_at, excluded.updated_at)",
                    [(ns, name, ev.event_time, ev.event_time) for ns, name in sorted(datasets)],
                    template="(%s, %s, %s::timestamptz, %s::timestamptz)",
                )
                # the facets this job reports for each dataset, on the (dataset, this job) row only
                psycopg2.extras.execute_values(
                    cur,
                    "INSERT INTO lineage_dataset_facet AS f (dataset_namespace, dataset_name, job_namespace, job_name,"
                    " facets, created_at, updated_at) VALUES %s"
                    " ON CONFLICT (dataset_namespace, dataset_name, job_namespace, job_name) DO UPDATE SET"
                    "  facets = CASE WHEN excluded.updated_at >= f.updated_at THEN f.facets || excluded.facets"
                    "                ELSE excluded.facets || f.facets END,"
                    "  created_at = least(f.created_at, excluded.created_at),"
                    "  updated_at = greatest(f.updated_at, excluded.updated_at)",
                    [(ns, name, ev.job_namespace, ev.job_name, json.dumps(f), ev.event_time, ev.event_time)
                     for (ns, name), f in sorted(datasets.items())],
                    template="(%s, %s, %s, %s, %s::jsonb, %s::timestamptz, %s::timestamptz)",
                )
                psycopg2.extras.execute_values(
                    cur,
                    "INSERT INTO lineage_edge AS e (job_namespace, job_name, direction, dataset_namespace, dataset_name,"
                    " updated_at) VALUES %s ON CONFLICT (job_namespace, job_name, direction, dataset_namespace,"
                    " dataset_name) DO UPDATE SET updated_at = greatest(e.updated_at, excluded.updated_at)",
                    [(*e, ev.event_time) for e in sorted(edges)],
                    template="(%s, %s, %s, %s, %s, %s::timestamptz)",
                )
        return True

    # -- retention ----------------------------------------------------------------
    def purge_older_than(self, cutoff: datetime) -> dict[str, int]:
        """Delete what was last seen before ``cutoff`` (event time): raw events, runs,
        edges, per-job dataset facets, then jobs and datasets no edge or run refers to any
        more. One transaction."""
        out = {}
        with self.connection() as conn, conn.cursor() as cur:
            for table, column in (("lineage_event", "event_time"), ("lineage_run", "updated_at"),
                                  ("lineage_edge", "updated_at"), ("lineage_dataset_facet", "updated_at")):
                cur.execute(f"DELETE FROM {table} WHERE {column} < %s", (cutoff,))
                out[table] = cur.rowcount
            cur.execute(
                "DELETE FROM lineage_job j WHERE updated_at < %s"
                " AND NOT EXISTS (SELECT 1 FROM lineage_edge e WHERE e.job_namespace = j.namespace AND e.job_name = j.name)"
                " AND NOT EXISTS (SELECT 1 FROM lineage_run r WHERE r.job_namespace = j.namespace AND r.job_name = j.name)",
                (cutoff,),
            )
            out["lineage_job"] = cur.rowcount
            cur.execute(
                "DELETE FROM lineage_dataset d WHERE updated_at < %s AND NOT EXISTS (SELECT 1 FROM lineage_edge e"
                " WHERE e.dataset_namespace = d.namespace AND e.dataset_name = d.name)",
                (cutoff,),
            )
            out["lineage_dataset"] = cur.rowcount
            conn.commit()
        return out
