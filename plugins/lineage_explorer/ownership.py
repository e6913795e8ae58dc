"""Which Airflow DAG, and so which team, an OpenLineage job belongs to.

The provider names a DAG's job ``<dag_id>``, a task's ``<dag_id>.<task_id>`` and hook-level
child jobs ``<dag_id>.<task_id>.query.<n>``; dag ids may themselves contain dots. The
owner is the longest dot-prefix of the job name that is a DAG in the metadata database,
and its team the team of that DAG's bundle (``DagModel.get_dag_id_to_team_name_mapping``).
Nothing is taken from the event's facets: a worker cannot claim another team's DAG.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from lineage_explorer.store import Owner, RunEvent

# candidate dag ids -> {dag_id: team or None} for those that exist
Lookup = Callable[[list[str]], dict[str, str | None]]


def metadata_lookup(candidates: list[str]) -> dict[str, str | None]:
    """The candidates that are DAGs in Airflow's metadata database, with their team."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    teams = DagModel.get_dag_id_to_team_name_mapping(candidates)
    with create_session() as session:
        existing = session.scalars(select(DagModel.dag_id).where(DagModel.dag_id.in_(candidates))).all()
    return {d: teams.get(d) for d in existing}


def metadata_dag_ids() -> list[str]:
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return list(session.scalars(select(DagModel.dag_id)).all())


def dag_id_candidates(job_name: str) -> list[str]:
    parts = job_name.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


class OwnerResolver:
    """Resolves and caches (``ttl`` seconds) job name -> :class:`Owner`."""

    def __init__(self, settings=None, lookup: Lookup = metadata_lookup,
                 all_dag_ids: Callable[[], Iterable[str]] = metadata_dag_ids, ttl: float = 60.0) -> None:
        self.lookup = lookup
        self.all_dag_ids = all_dag_ids
        self.ttl = ttl
        self._cache: dict[str, tuple[float, Owner]] = {}
        self._known: tuple[float, frozenset[str]] | None = None
        self._lock = threading.Lock()

    def owner(self, event: RunEvent) -> Owner:
        return self.owner_of(event.job_name)

    def cached(self, name: str) -> Owner | None:
        """The owner of ``name`` when it was resolved less than ``ttl`` ago, without a lookup
        (the ingest endpoint answers from here without leaving its event loop)."""
        with self._lock:
            hit = self._cache.get(name)
        return hit[1] if hit and time.monotonic() - hit[0] < self.ttl else None

    def owner_of(self, name: str) -> Owner:
        """The owner of the job named ``name`` (e.g. a parent run facet's job)."""
        hit = self.cached(name)
        if hit is not None:
            return hit
        now = time.monotonic()
        candidates = dag_id_candidates(name)
        found = self.lookup(candidates)
        owner = next((Owner(c, found[c]) for c in candidates if c in found), None)
        if owner is None:  # not cached: a DAG parsed a moment later is found on the next event
            return Owner(None, None)
        with self._lock:
            self._cache[name] = (now, owner)
        return owner

    def known_dag_ids(self) -> frozenset[str]:
        now = time.monotonic()
        with self._lock:
            known = self._known
        if known and now - known[0] < self.ttl:
            return known[1]
        ids = frozenset(self.all_dag_ids())
        with self._lock:
            self._known = (now, ids)
        return ids
