"""The lineage store: raw OpenLineage run events and the current graph derived from them.

One PostgreSQL database (``lineage``, its own login role), schema in ``migrations/``
applied with :func:`shared.db.migrate`. :meth:`LineageStore.ingest` stores an event once
(unique on run id, event type and event time) through one server-side call,
``lineage_ingest_event`` (migration 0003), and, in the same transaction, maintains:

- ``lineage_job``: one row per job (namespace, name), with the Airflow DAG and team it
  belongs to (resolved by the ingest endpoint, never taken from the event);
- ``lineage_dataset``: one row per dataset (namespace, name): the registry, no facets;
- ``lineage_dataset_facet``: one row per (dataset, job naming it), with the facets that
  job's events reported for it (``facets`` + ``inputFacets``/``outputFacets``, the latest
  event wins per facet). A job never writes onto another job's row, so one team's event
  that names another team's dataset cannot change what that team sees of it;
- ``lineage_run``: one row per run, state from the latest event by event time (an event
  arriving late does not move a finished run back to RUNNING);
- ``lineage_edge``: job -> dataset (``out``) and dataset -> job (``in``) edges;
- ``lineage_job_version`` / ``lineage_dataset_version``: Marquez's versions (see the README),
  each made by one job's events.

:meth:`LineageStore.ingest_batch` stores many events in one transaction with the same
result per event as one at a time; :class:`IngestQueue` is the endpoint's group commit.

A run belongs to one job: an event whose run id is stored for another job is refused
(:class:`RefusedEvent`, status 409), and so is one whose ``parent`` (or ``root``) run facet
names a stored run of another job than the facet's; with a team's key (``team``), a parent
or root run stored for a job of another team is refused too (403). Nothing of a refused
event is stored. A replayed event changes nothing. :meth:`LineageStore.purge_older_than` is
the retention. Reads take a :class:`Visibility` (the jobs a user may see) and are in
``queries.py``.
"""

from __future__ import annotations

import concurrent.futures
import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import psycopg2
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
# SQLSTATE lineage_ingest_event raises when a concurrent event claimed the run for another job
CONCURRENT_CLAIM = "LN409"


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
    raw: str | None = None  # the JSON text ``payload`` was read from, stored as it is (no re-encoding)
    # the ``parent`` run facet's runs (see parent_runs), read once by parse
    parents: tuple[tuple[str, str, str, str], ...] = ()

    @classmethod
    def parse(cls, payload: Any, raw: str | None = None) -> RunEvent:
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
        # a parent the store could not check is no run event it keeps
        return cls(payload, run_id, event_type, event_time, ns, name, raw, tuple(cls._parent_runs(run)))

    @property
    def parent_job_name(self) -> str | None:
        parent = ((self.payload["run"].get("facets") or {}).get("parent") or {}).get("job") or {}
        return parent.get("name") if parent.get("namespace") == self.job_namespace else None

    def parent_runs(self) -> list[tuple[str, str, str, str]]:
        """The runs the ``parent`` run facet and its ``root`` attach this event to, as
        ``(facet, run id, job namespace, job name)``. Both need a UUID run id and a job
        (namespace, name), as the spec's ParentRunFacet requires: a run that cannot be checked
        is :class:`InvalidEvent`, not kept (by :meth:`parse`, which reads them once)."""
        return list(self.parents)

    @cached_property
    def parents_json(self) -> str:
        """:meth:`parent_runs` as the ingest functions take them (JSON ``[{label, run_id, namespace, name}]``)."""
        return json.dumps([{"label": label, "run_id": run_id, "namespace": ns, "name": name}
                           for label, run_id, ns, name in self.parents])

    @staticmethod
    def _parent_runs(event_run: dict) -> list[tuple[str, str, str, str]]:
        parent = (event_run.get("facets") or {}).get("parent")
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

    # the set-based call costs ~1 ms of PostgreSQL CPU whatever the batch's size, one event
    # through lineage_ingest_event ~0.9 ms: smaller batches go one event at a time
    SET_BASED_FROM = 4

    def __init__(self, dsn: str, maxconn: int = 8) -> None:
        self.dsn = dsn
        self._pool = psycopg2.pool.ThreadedConnectionPool(1, maxconn, dsn)
        self._migrated = False
        self._lock = threading.Lock()
        # how ingest_batch stored its batches: set-based (in one call or more, with the late
        # events between them one at a time), or every event one after the other
        self.batches_set_based = 0
        self.batches_one_at_a_time = 0
        self.events_one_at_a_time = 0
        # per job: the newest event time this store stored for it (or read from lineage_job), so
        # that ingest_batch sees which events of a batch are late before the set-based call does
        self._job_times: dict[tuple[str, str], datetime] = {}
        self._job_times_lock = threading.Lock()

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
            try:
                new = self._ingest(conn, event, owner, team)
            except psycopg2.Error as e:
                conn.rollback()
                if e.pgcode == CONCURRENT_CLAIM:
                    raise RefusedEvent(409, f"run {event.run_id} is already stored for another job; "
                                            "a run belongs to one job") from None
                raise
            conn.commit()
            return new

    def ingest_batch(self, items: list[tuple[RunEvent, Owner, str | None]]) -> list[bool | Exception]:
        """Store many events in one transaction (group commit), each exactly as :meth:`ingest`
        would, in order; returns per event True (stored), False (already stored) or the
        :class:`RefusedEvent` (or database error) it got. A refused event writes nothing, so it
        needs no savepoint.

        The batch is cut, in arrival order, into runs of events that are not late (each no older
        than its job's newest event stored or before it in the batch): each run of at least
        SET_BASED_FROM events is stored by one set-based call, and every other event, a late
        one in particular, on its own between them; in that order, the result is that of one
        event after the other. When a set-based call gives up (something this store did not
        know: another writer stored newer events, an event it could refuse), the transaction
        is rolled back and the whole batch stored one event after the other. When the
        transaction fails as a whole (a concurrent writer claimed a run in between, a deadlock
        with another writer, an event the database rejects), it is rolled back and every event
        is stored on its own, one transaction each, so one event's failure is that event's only."""
        if not items:
            return []
        try:
            with self.connection() as conn:
                results: list[bool | Exception] | None = None
                if len(items) >= self.SET_BASED_FROM:
                    try:
                        results = self._ingest_segments(conn, items)
                    except psycopg2.Error:  # LN410 (an event older than a stored row), LN409, a deadlock
                        pass
                    if results is None:  # nothing of the batch stays; what this store knew was not so
                        conn.rollback()
                        self._forget_jobs(items)
                if results is None:  # one event after the other, still in one transaction
                    self.batches_one_at_a_time += 1
                    results = self._ingest_each(conn, items)
                conn.commit()
                self._remember_jobs(items, results)
                return results
        except psycopg2.Error:
            pass  # rolled back by connection(): nothing of the batch is stored
        self._forget_jobs(items)
        out: list[bool | Exception] = []
        for event, owner, team in items:
            try:
                out.append(self.ingest(event, owner, team))
            except (RefusedEvent, psycopg2.Error) as e:
                out.append(e)
        return out

    def _ingest_each(self, conn: Any, items: list[tuple[RunEvent, Owner, str | None]]) -> list[bool | Exception]:
        self.events_one_at_a_time += len(items)
        results: list[bool | Exception] = []
        for event, owner, team in items:
            try:
                results.append(self._ingest(conn, event, owner, team))
            except RefusedEvent as e:
                results.append(e)
        return results

    def _ingest_segments(self, conn: Any, items: list[tuple[RunEvent, Owner, str | None]]) -> list[bool | Exception] | None:
        """The batch as runs of events that are not late, set-based, and the rest one at a time
        (see :meth:`ingest_batch`), in the caller's transaction; None when a set-based call gave
        up (the caller rolls back)."""
        latest = self._job_latest(conn, {(ev.job_namespace, ev.job_name) for ev, _, _ in items})
        segments: list[list[int]] = [[]]
        for i, (ev, _, _) in enumerate(items):
            job = (ev.job_namespace, ev.job_name)
            if job in latest and ev.event_time < latest[job]:  # late: on its own
                segments += [[i], []]
            else:
                latest[job] = ev.event_time
                segments[-1].append(i)
        if not any(len(seg) >= self.SET_BASED_FROM for seg in segments):
            self.batches_one_at_a_time += 1
            return self._ingest_each(conn, items)
        results: list[bool | Exception] = []
        for seg in segments:
            part = [items[i] for i in seg]
            if len(seg) < self.SET_BASED_FROM:
                results += self._ingest_each(conn, part)
                continue
            stored = self._ingest_set(conn, part)
            if stored is None:
                return None
            results += stored
        self.batches_set_based += 1
        return results

    def _job_latest(self, conn: Any, jobs: set[tuple[str, str]]) -> dict[tuple[str, str], datetime]:
        """The newest event time stored per job of ``jobs``: what this store stored, else the
        job's row (read once, then kept up to date by :meth:`_remember_jobs`)."""
        with self._job_times_lock:
            known = {j: self._job_times[j] for j in jobs if j in self._job_times}
        unknown = sorted(jobs - known.keys())
        if unknown:
            with conn.cursor() as cur:
                cur.execute("SELECT j.namespace, j.name, j.updated_at FROM lineage_job j"
                            " JOIN unnest(%s::text[], %s::text[]) AS u(ns, name) ON (j.namespace, j.name) = (u.ns, u.name)",
                            ([ns for ns, _ in unknown], [name for _, name in unknown]))
                known.update({(ns, name): t for ns, name, t in cur.fetchall()})
        return known

    def _remember_jobs(self, items: list[tuple[RunEvent, Owner, str | None]], results: list[bool | Exception]) -> None:
        with self._job_times_lock:
            for (ev, _, _), result in zip(items, results, strict=True):
                if not isinstance(result, Exception):
                    job = (ev.job_namespace, ev.job_name)
                    if job not in self._job_times or self._job_times[job] < ev.event_time:
                        self._job_times[job] = ev.event_time

    def _forget_jobs(self, items: list[tuple[RunEvent, Owner, str | None]]) -> None:
        with self._job_times_lock:
            for ev, _, _ in items:
                self._job_times.pop((ev.job_namespace, ev.job_name), None)

    def ingest_many(self, events: Iterable[RunEvent], resolve: Callable[[RunEvent], Owner], batch: int = 500,
                    refused: list[str] | None = None) -> tuple[int, int]:
        """Load many events (platform authority), ``batch`` per transaction (:meth:`ingest_batch`);
        returns (stored, duplicates). A refused event is skipped and described in ``refused``."""
        stored = dupes = 0

        def flush(chunk: list[tuple[RunEvent, Owner, str | None]]) -> None:
            nonlocal stored, dupes
            for (event, _, _), result in zip(chunk, self.ingest_batch(chunk), strict=True):
                if isinstance(result, RefusedEvent):
                    if refused is not None:
                        refused.append(f"run {event.run_id} of job {event.job_name}: {result.reason}")
                elif isinstance(result, Exception):
                    raise result
                elif result:
                    stored += 1
                else:
                    dupes += 1

        chunk: list[tuple[RunEvent, Owner, str | None]] = []
        for event in events:
            chunk.append((event, resolve(event), None))
            if len(chunk) >= batch:
                flush(chunk)
                chunk = []
        flush(chunk)
        return stored, dupes

    @staticmethod
    def _ingest_set(conn: Any, items: list[tuple[RunEvent, Owner, str | None]]) -> list[bool] | None:
        """The whole batch through ``lineage_ingest_batch`` (migrations/0004): one statement per
        table, the same rows as one event at a time. None (nothing written) when the batch holds
        something that call leaves to the one-at-a-time path (an event it could refuse, a job's
        events out of time order); raises the database's error (LN410: an event older than a
        stored row; LN409); the caller rolls back."""
        cols: list[list[Any]] = [[] for _ in range(12)]
        for ev, owner, team in items:
            for col, value in zip(cols, (ev.run_id, ev.event_type, ev.event_time, ev.job_namespace, ev.job_name, team,
                                         ev.raw or json.dumps(ev.payload), owner.dag_id, owner.team, ev.parent_job_name,
                                         RUN_STATES.get(ev.event_type), ev.parents_json), strict=True):
                col.append(value)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT lineage_ingest_batch(%s::uuid[], %s::text[], %s::timestamptz[], %s::text[], %s::text[],"
                " %s::text[], %s::jsonb[], %s::text[], %s::text[], %s::text[], %s::text[], %s::jsonb[])", cols)
            return cur.fetchone()[0]

    @staticmethod
    def _refusal(result: list[str], team: str | None) -> RefusedEvent:
        """The :class:`RefusedEvent` for ``lineage_ingest_event``'s answer; names no other team's job."""
        _, status, label, run_id, ns, name = result
        if label == "run":
            return RefusedEvent(409, f"run {run_id} is already stored for another job; a run belongs to one job")
        if status == "409":
            return RefusedEvent(409, f"the {label} run {run_id} is stored for another job than {ns}:{name}")
        return RefusedEvent(403, f"the {label} run {run_id} is not a run of team {team!r}'s jobs")

    def _ingest(self, conn: Any, ev: RunEvent, owner: Owner, team: str | None) -> bool:
        """One event through ``lineage_ingest_event`` (migrations/0003): one round trip, in the
        caller's transaction; the function reads what it derives from the payload itself. Raises
        :class:`RefusedEvent` (nothing written), or the database's error (SQLSTATE ``LN409``: a
        concurrent event claimed the run); the caller rolls back."""
        with conn.cursor() as cur:
            cur.execute(
                "SELECT lineage_ingest_event(%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s::jsonb)",
                (ev.run_id, ev.event_type, ev.event_time, ev.job_namespace, ev.job_name, team,
                 ev.raw or json.dumps(ev.payload), owner.dag_id, owner.team, ev.parent_job_name,
                 RUN_STATES.get(ev.event_type), ev.parents_json),
            )
            result = cur.fetchone()[0]
        if result[0] == "refused":
            raise self._refusal(result, team)
        return result[0] == "stored"

    # -- retention ----------------------------------------------------------------
    def purge_older_than(self, cutoff: datetime) -> dict[str, int]:
        """Delete what was last seen before ``cutoff`` (event time): raw events, runs,
        edges, per-job dataset facets, dataset and job versions, then jobs and datasets no edge
        or run refers to any more. One transaction."""
        out = {}
        with self.connection() as conn, conn.cursor() as cur:
            # (runs and versions: created_at is indexed and never after updated_at; see migration 0003)
            for table, where in (("lineage_event", "event_time < %(c)s"),
                                 ("lineage_run", "created_at < %(c)s AND updated_at < %(c)s"),
                                 ("lineage_edge", "updated_at < %(c)s"), ("lineage_dataset_facet", "updated_at < %(c)s"),
                                 ("lineage_dataset_version", "created_at < %(c)s AND updated_at < %(c)s"),
                                 ("lineage_job_version", "updated_at < %(c)s")):
                cur.execute(f"DELETE FROM {table} WHERE {where}", {"c": cutoff})
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


class IngestQueue:
    """Group commit for the ingest endpoint: events from many concurrent requests share a
    transaction. One writer thread takes what is waiting (up to ``max_batch``, never waiting
    for more: one event alone goes at once) and stores it with :meth:`LineageStore.ingest_batch`,
    in arrival order; each request's future gets its event's result only after the commit, so a
    ``201`` still means stored. Events of one run that one client sends one after the other
    arrive, and are stored, in that order."""

    LINGERS = 10

    def __init__(self, store: LineageStore, max_batch: int = 200, linger: float = 0.002,
                 lingers: int | None = None) -> None:
        self.store = store
        self.max_batch = max_batch
        # when the last batch held more than one event (concurrent senders), the writer waits up
        # to ``lingers`` times ``linger`` seconds for more before it writes, as long as each wait
        # brings more: larger batches cost PostgreSQL less per event (LineageStore.SET_BASED_FROM)
        self.linger = linger
        self.lingers = self.LINGERS if lingers is None else lingers
        self._last_batch = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False

    def submit(self, event: RunEvent, owner: Owner, team: str | None) -> concurrent.futures.Future:
        """A future of :meth:`LineageStore.ingest`'s result (True stored, False already stored) or
        its exception (:class:`RefusedEvent`, a database error)."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._stopped:
                raise RuntimeError("the lineage ingest queue is stopped")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lineage-ingest", daemon=True)
                self._thread.start()
            self._queue.put((event, owner, team, future))
        return future

    def stop(self, timeout: float = 10) -> None:
        """Store what is queued, then end the writer thread."""
        with self._lock:
            self._stopped = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            # concurrent senders (the last batch held more than one event): while their requests
            # keep arriving, a moment more for the others (each sender waits for its answer, so
            # they stop arriving once all of them are waiting); one sender never waits
            lingers = self.lingers if self._last_batch > 1 else 0
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    if lingers <= 0:
                        break
                    lingers -= 1
                    time.sleep(self.linger)
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._last_batch = len(batch)
            # a request that went away (its future cancelled) is not stored; the others can no
            # longer be cancelled, so their results always land
            batch = [item for item in batch if item[3].set_running_or_notify_cancel()]
            if not batch:
                if stop:
                    return
                continue
            try:
                results = self.store.ingest_batch([(e, o, t) for e, o, t, _ in batch])
            except Exception as e:  # the database is down: every waiting request gets the error
                results = [e] * len(batch)
            for (_, _, _, future), result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
            if stop:
                return
