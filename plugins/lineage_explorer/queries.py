"""Reads of the lineage store, always through a :class:`Visibility`.

A user sees the jobs of the DAGs it may read, and the datasets those jobs' own events name
as inputs or outputs, with only the facets those jobs wrote (``lineage_dataset_facet``), and
the dataset's times from those jobs' events only. Another team's jobs do not exist for it:
not their names, edges or runs, not the facets they wrote on a dataset both teams use, not
even the fact that a hidden job touches a dataset (no "boundary" flag: any such signal
would let a team that names a dataset in an event of its own learn whether another team
uses it). Admin (every job visible) sees every job's facets, merged and per job.
Nothing here knows about Airflow's auth manager: ``api.py`` turns a user into a
:class:`Visibility`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg2.extras

from lineage_explorer.store import LineageStore


@dataclass(frozen=True)
class Visibility:
    """Which jobs a caller may see: the jobs of the DAG ids in ``dag_ids``, plus jobs of no
    DAG the metadata database knows (platform-key events, deleted DAGs), i.e. whose
    ``dag_id`` is NULL or not in ``known_dag_ids``, when their recorded team is in
    ``teams`` (``""`` standing for "no team")."""

    dag_ids: frozenset[str] = field(default_factory=frozenset)
    known_dag_ids: frozenset[str] = field(default_factory=frozenset)
    teams: frozenset[str] = field(default_factory=frozenset)

    def predicate(self, alias: str) -> tuple[str, dict]:
        """SQL condition on a ``lineage_job`` row and its parameters."""
        return (
            f"({alias}.dag_id = ANY(%(vis_dags)s) OR ((({alias}.dag_id = ANY(%(vis_known)s)) IS NOT TRUE)"
            f" AND coalesce({alias}.team, '') = ANY(%(vis_teams)s)))",
            {"vis_dags": sorted(self.dag_ids), "vis_known": sorted(self.known_dag_ids), "vis_teams": sorted(self.teams)},
        )


def job_node_id(namespace: str, name: str) -> str:
    return f"job:{namespace}:{name}"


def dataset_node_id(namespace: str, name: str) -> str:
    return f"dataset:{namespace}:{name}"


class Reader:
    """Read-only queries; every method takes the caller's :class:`Visibility`."""

    def __init__(self, store: LineageStore) -> None:
        self.store = store

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        """A pooled connection in autocommit for plain reads (no BEGIN/ROLLBACK round trips)."""
        with self.store.connection() as conn:
            conn.autocommit = True
            try:
                yield conn
            finally:
                conn.autocommit = False

    def _all(self, sql: str, params: dict, conn: Any = None) -> list[dict]:
        if conn is None:
            with self._reading() as c:
                return self._all(sql, params, c)
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql, params)
            return [dict(r) for r in cur.fetchall()]

    @staticmethod
    def _ctes(vis: Visibility) -> tuple[str, dict]:
        pred, params = vis.predicate("j")
        sql = (
            f"WITH vj AS (SELECT j.* FROM lineage_job j WHERE {pred}),"
            # the datasets the visible jobs' events name, their times and facets from those jobs only
            " vd AS (SELECT f.dataset_namespace AS namespace, f.dataset_name AS name,"
            "        min(f.created_at) AS created_at, max(f.updated_at) AS updated_at,"
            "        jsonb_agg(jsonb_build_object('job', jsonb_build_object('namespace', f.job_namespace,"
            "          'name', f.job_name), 'facets', f.facets, 'updatedAt', f.updated_at)"
            "          ORDER BY f.updated_at, f.job_namespace, f.job_name) AS facets_by_job"
            "        FROM lineage_dataset_facet f JOIN vj ON vj.namespace = f.job_namespace AND vj.name = f.job_name"
            "        GROUP BY f.dataset_namespace, f.dataset_name) "
        )
        return sql, params

    def job_teams(self) -> list[str]:
        """Every team recorded on a job (for the auth manager's per-team check)."""
        return [r["team"] for r in self._all("SELECT DISTINCT team FROM lineage_job WHERE team IS NOT NULL ORDER BY 1", {})]

    # -- namespaces ---------------------------------------------------------------
    def namespaces(self, vis: Visibility) -> list[dict]:
        ctes, params = self._ctes(vis)
        return self._all(
            ctes + "SELECT namespace AS name, min(created_at) AS created_at, max(updated_at) AS updated_at FROM ("
            " SELECT namespace, created_at, updated_at FROM vj UNION ALL"
            " SELECT namespace, created_at, updated_at FROM vd) x GROUP BY namespace ORDER BY namespace",
            params,
        )

    # -- jobs ---------------------------------------------------------------------
    def jobs(self, vis: Visibility, namespace: str | None, limit: int, offset: int,
             keys: list[tuple[str, str]] | None = None, conn: Any = None) -> tuple[list[dict], int]:
        ctes, params = self._ctes(vis)
        where, extra = ["TRUE"], {"limit": limit, "offset": offset}
        if namespace is not None:
            where.append("vj.namespace = %(ns)s")
            extra["ns"] = namespace
        if keys is not None:
            where.append("(vj.namespace, vj.name) IN (SELECT * FROM unnest(%(kns)s::text[], %(kn)s::text[]))")
            extra.update(kns=[k[0] for k in keys], kn=[k[1] for k in keys])
        cond = " AND ".join(where)
        rows = self._all(
            ctes + "SELECT vj.*, count(*) OVER () AS total,"
            " (SELECT coalesce(jsonb_agg(jsonb_build_object('namespace', e.dataset_namespace, 'name', e.dataset_name)"
            "   ORDER BY e.dataset_namespace, e.dataset_name), '[]') FROM lineage_edge e"
            "   WHERE e.job_namespace = vj.namespace AND e.job_name = vj.name AND e.direction = 'in') AS inputs,"
            " (SELECT coalesce(jsonb_agg(jsonb_build_object('namespace', e.dataset_namespace, 'name', e.dataset_name)"
            "   ORDER BY e.dataset_namespace, e.dataset_name), '[]') FROM lineage_edge e"
            "   WHERE e.job_namespace = vj.namespace AND e.job_name = vj.name AND e.direction = 'out') AS outputs,"
            " (SELECT to_jsonb(r) FROM lineage_run r WHERE r.job_namespace = vj.namespace AND r.job_name = vj.name"
            "   ORDER BY r.created_at DESC LIMIT 1) AS latest_run"
            f" FROM vj WHERE {cond} ORDER BY vj.namespace, vj.name LIMIT %(limit)s OFFSET %(offset)s",
            {**params, **extra}, conn,
        )
        total = rows[0].pop("total") if rows else 0
        for r in rows[1:]:
            r.pop("total")
        return rows, total

    def job(self, vis: Visibility, namespace: str, name: str) -> dict | None:
        rows, _ = self.jobs(vis, namespace, 1, 0, keys=[(namespace, name)])
        return rows[0] if rows else None

    def runs(self, vis: Visibility, namespace: str, name: str, limit: int, offset: int) -> tuple[list[dict], int]:
        ctes, params = self._ctes(vis)
        rows = self._all(
            ctes + "SELECT r.*, count(*) OVER () AS total FROM lineage_run r JOIN vj"
            " ON vj.namespace = r.job_namespace AND vj.name = r.job_name"
            " WHERE r.job_namespace = %(ns)s AND r.job_name = %(name)s"
            " ORDER BY r.created_at DESC LIMIT %(limit)s OFFSET %(offset)s",
            {**params, "ns": namespace, "name": name, "limit": limit, "offset": offset},
        )
        total = rows[0]["total"] if rows else 0
        return [{k: v for k, v in r.items() if k != "total"} for r in rows], total

    def run(self, vis: Visibility, run_id: str) -> dict | None:
        ctes, params = self._ctes(vis)
        rows = self._all(
            ctes + "SELECT r.* FROM lineage_run r JOIN vj ON vj.namespace = r.job_namespace AND vj.name = r.job_name"
            " WHERE r.run_id = %(id)s::uuid",
            {**params, "id": run_id},
        )
        return rows[0] if rows else None

    # -- datasets -----------------------------------------------------------------
    def datasets(self, vis: Visibility, namespace: str | None, limit: int, offset: int,
                 keys: list[tuple[str, str]] | None = None, conn: Any = None) -> tuple[list[dict], int]:
        """Dataset rows: namespace, name, created/updated (from the visible jobs' events),
        ``facets_by_job`` (each visible job's facets, oldest update first), ``facets`` (those
        merged, the most recently updated job winning per facet) and ``lifecycle_state``."""
        ctes, params = self._ctes(vis)
        where, extra = ["TRUE"], {"limit": limit, "offset": offset}
        if namespace is not None:
            where.append("vd.namespace = %(ns)s")
            extra["ns"] = namespace
        if keys is not None:
            where.append("(vd.namespace, vd.name) IN (SELECT * FROM unnest(%(kns)s::text[], %(kn)s::text[]))")
            extra.update(kns=[k[0] for k in keys], kn=[k[1] for k in keys])
        rows = self._all(
            ctes + "SELECT vd.*, count(*) OVER () AS total,"
            # the latest version the visible jobs made of it (per job: an index scan's first row)
            " (SELECT v.version FROM lineage_dataset_facet f JOIN vj ON vj.namespace = f.job_namespace"
            "   AND vj.name = f.job_name CROSS JOIN LATERAL (SELECT x.version, x.created_at FROM lineage_dataset_version x"
            "   WHERE x.dataset_namespace = f.dataset_namespace AND x.dataset_name = f.dataset_name"
            "   AND x.job_namespace = f.job_namespace AND x.job_name = f.job_name ORDER BY x.created_at DESC LIMIT 1) v"
            "   WHERE f.dataset_namespace = vd.namespace AND f.dataset_name = vd.name"
            "   ORDER BY v.created_at DESC, v.version LIMIT 1) AS current_version"
            f" FROM vd WHERE {' AND '.join(where)}"
            " ORDER BY vd.namespace, vd.name LIMIT %(limit)s OFFSET %(offset)s",
            {**params, **extra}, conn,
        )
        total = rows[0]["total"] if rows else 0
        out = []
        for r in rows:
            r.pop("total")
            merged: dict = {}
            for entry in r["facets_by_job"]:
                merged.update(entry["facets"])
            r["facets"] = merged
            r["lifecycle_state"] = (merged.get("lifecycleStateChange") or {}).get("lifecycleStateChange")
            out.append(r)
        return out, total

    def dataset(self, vis: Visibility, namespace: str, name: str) -> dict | None:
        rows, _ = self.datasets(vis, namespace, 1, 0, keys=[(namespace, name)])
        return rows[0] if rows else None

    # -- versions -----------------------------------------------------------------
    def dataset_versions(self, vis: Visibility, namespace: str, name: str, limit: int, offset: int,
                         version: str | None = None) -> tuple[list[dict], int]:
        """The dataset's versions made by jobs the caller may see, newest first, each with the
        run that wrote it (``run``: a ``lineage_run`` row, or None for a version a reading job saw)."""
        pred, params = vis.predicate("j")
        rows = self._all(
            "SELECT v.*, count(*) OVER () AS total, (SELECT to_jsonb(r) FROM lineage_run r WHERE r.run_id = v.run_id) AS run"
            " FROM lineage_dataset_version v JOIN lineage_job j ON j.namespace = v.job_namespace AND j.name = v.job_name"
            f" WHERE {pred} AND v.dataset_namespace = %(ns)s AND v.dataset_name = %(name)s"
            + (" AND v.version = %(version)s::uuid" if version else "")
            + " ORDER BY v.created_at DESC, v.version LIMIT %(limit)s OFFSET %(offset)s",
            {**params, "ns": namespace, "name": name, "version": version, "limit": limit, "offset": offset},
        )
        total = rows[0]["total"] if rows else 0
        return [{k: v for k, v in r.items() if k != "total"} for r in rows], total

    def job_versions(self, vis: Visibility, namespace: str, name: str, limit: int, offset: int,
                     version: str | None = None) -> list[dict]:
        """The job's versions, newest first, each with the datasets its runs read and wrote
        (``inputs``/``outputs``) and its latest run (``latest_run``); [] when the job is hidden."""
        pred, params = vis.predicate("j")
        return self._all(
            "SELECT v.*,"
            " (SELECT to_jsonb(r) FROM lineage_run r WHERE r.job_namespace = v.namespace AND r.job_name = v.name"
            "   AND r.job_version = v.version ORDER BY r.created_at DESC LIMIT 1) AS latest_run,"
            " (SELECT coalesce(jsonb_agg(DISTINCT x ORDER BY x), '[]') FROM lineage_run r CROSS JOIN LATERAL"
            "   jsonb_array_elements(r.inputs) x WHERE r.job_namespace = v.namespace AND r.job_name = v.name"
            "   AND r.job_version = v.version) AS inputs,"
            " (SELECT coalesce(jsonb_agg(DISTINCT x ORDER BY x), '[]') FROM lineage_run r CROSS JOIN LATERAL"
            "   jsonb_array_elements(r.outputs) x WHERE r.job_namespace = v.namespace AND r.job_name = v.name"
            "   AND r.job_version = v.version) AS outputs"
            " FROM lineage_job_version v JOIN lineage_job j ON j.namespace = v.namespace AND j.name = v.name"
            f" WHERE {pred} AND v.namespace = %(ns)s AND v.name = %(name)s"
            + (" AND v.version = %(version)s::uuid" if version else "")
            + " ORDER BY v.created_at DESC, v.version LIMIT %(limit)s OFFSET %(offset)s",
            {**params, "ns": namespace, "name": name, "version": version, "limit": limit, "offset": offset},
        )

    # -- column lineage -----------------------------------------------------------
    def column_lineage_edges(self, vis: Visibility) -> list[dict]:
        """Every field-to-field edge of the ``columnLineage`` facets the visible jobs reported
        for the datasets they write: ``{"namespace", "dataset", "field", "input": {"namespace",
        "dataset", "field"}, "transformationDescription", "transformationType"}``."""
        pred, params = vis.predicate("j")
        rows = self._all(
            "SELECT f.dataset_namespace, f.dataset_name, f.facets->'columnLineage'->'fields' AS fields"
            " FROM lineage_dataset_facet f JOIN lineage_job j ON j.namespace = f.job_namespace AND j.name = f.job_name"
            " JOIN lineage_edge e ON e.job_namespace = f.job_namespace AND e.job_name = f.job_name"
            "  AND e.dataset_namespace = f.dataset_namespace AND e.dataset_name = f.dataset_name AND e.direction = 'out'"
            f" WHERE {pred} AND jsonb_typeof(f.facets->'columnLineage'->'fields') = 'object'"
            " ORDER BY f.dataset_namespace, f.dataset_name, f.updated_at",
            params,
        )
        edges: dict[tuple, dict] = {}
        for r in rows:
            for out_field, spec in r["fields"].items():
                if not isinstance(spec, dict):
                    continue
                for src in spec.get("inputFields") or []:
                    if not (isinstance(src, dict) and src.get("namespace") and src.get("name") and src.get("field")):
                        continue
                    t = next((x for x in src.get("transformations") or [] if isinstance(x, dict)), {})
                    key = (r["dataset_namespace"], r["dataset_name"], out_field, src["namespace"], src["name"],
                           src["field"])
                    edges[key] = {
                        "namespace": r["dataset_namespace"], "dataset": r["dataset_name"], "field": out_field,
                        "input": {"namespace": src["namespace"], "dataset": src["name"], "field": src["field"]},
                        "transformationDescription": t.get("description") or spec.get("transformationDescription") or None,
                        "transformationType": t.get("type") or spec.get("transformationType") or None,
                    }
        return list(edges.values())

    # -- search -------------------------------------------------------------------
    def search(self, vis: Visibility, q: str, kind: str | None, sort: str, limit: int,
               namespace: str | None = None) -> tuple[list[dict], int]:
        ctes, params = self._ctes(vis)
        like = "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        parts = []
        if kind in (None, "JOB"):
            parts.append("SELECT 'JOB' AS type, name, updated_at, namespace FROM vj WHERE lower(name) LIKE %(like)s")
        if kind in (None, "DATASET"):
            parts.append(
                "SELECT 'DATASET' AS type, name, updated_at, namespace FROM vd WHERE lower(name) LIKE %(like)s"
            )
        order = "updated_at DESC, name" if sort == "UPDATE_AT" else "name, namespace"
        rows = self._all(
            ctes + "SELECT *, count(*) OVER () AS total FROM (" + " UNION ALL ".join(parts) + ") x"
            + (" WHERE namespace = %(ns)s" if namespace else "")
            + f" ORDER BY {order} LIMIT %(limit)s",
            {**params, "like": like, "limit": limit, "ns": namespace},
        )
        total = rows[0]["total"] if rows else 0
        return [{k: v for k, v in r.items() if k != "total"} for r in rows], total

    # -- lineage graph ------------------------------------------------------------
    def graph(self, vis: Visibility, kind: str, namespace: str, name: str, depth: int) -> dict[str, Any] | None:
        """Jobs within ``depth`` job-to-job hops of the node (through datasets), every
        dataset those jobs read or write, and the edges between them, all visible to the
        caller. Returns None when the start node does not exist or is not visible.

        Result: ``{"jobs": [job rows], "datasets": [dataset rows], "edges": [(job_ns, job_name,
        direction, ds_ns, ds_name)]}``.
        """
        pred, params = vis.predicate("j")
        with self._reading() as conn, conn.cursor() as cur:
            def visible_job_edges(column_ns: str, column_name: str, keys: set[tuple[str, str]]) -> list[tuple]:
                cur.execute(
                    "SELECT e.job_namespace, e.job_name, e.direction, e.dataset_namespace, e.dataset_name"
                    " FROM lineage_edge e JOIN lineage_job j ON j.namespace = e.job_namespace"
                    f" AND j.name = e.job_name WHERE {pred} AND (e.{column_ns}, e.{column_name}) IN"
                    " (SELECT * FROM unnest(%(a)s::text[], %(b)s::text[]))",
                    {**params, "a": [k[0] for k in keys], "b": [k[1] for k in keys]},
                )
                return cur.fetchall()

            jobs: set[tuple[str, str]] = set()
            datasets: set[tuple[str, str]] = set()
            edges: set[tuple] = set()
            if kind == "job":
                cur.execute(f"SELECT 1 FROM lineage_job j WHERE j.namespace = %(ns)s AND j.name = %(n)s AND {pred}",
                            {**params, "ns": namespace, "n": name})
                if cur.fetchone() is None:
                    return None
                frontier = {(namespace, name)}
            else:
                found = visible_job_edges("dataset_namespace", "dataset_name", {(namespace, name)})
                if not found:
                    return None
                datasets.add((namespace, name))
                edges.update(found)
                frontier = {(e[0], e[1]) for e in found}
            for hop in range(depth + 1):
                frontier -= jobs
                if not frontier:
                    break
                jobs |= frontier
                found = visible_job_edges("job_namespace", "job_name", frontier)
                edges.update(found)
                new_ds = {(e[3], e[4]) for e in found} - datasets
                datasets |= new_ds
                if hop == depth or not new_ds:
                    break
                found = visible_job_edges("dataset_namespace", "dataset_name", new_ds)
                frontier = {(e[0], e[1]) for e in found}
            edges = {e for e in edges if (e[0], e[1]) in jobs}
            job_rows, _ = self.jobs(vis, None, max(len(jobs), 1), 0, keys=sorted(jobs), conn=conn)
            ds_rows, _ = self.datasets(vis, None, max(len(datasets), 1), 0, keys=sorted(datasets), conn=conn)
        return {"jobs": job_rows, "datasets": ds_rows, "edges": sorted(edges)}
