"""The metadata registry: one row per output (dataset, version, path, row count, schema,
content hash, run) in ``dataset_registry``, and the matching Airflow Asset event.

Two names, one dataset: the Asset (``domains.ecommerce_ml.assets``) is the output's identity
in Airflow, fixed when the DAG file is parsed, so it cannot hold the database's or the lake's
address (those come from connections, read only at run time); the OpenLineage dataset is that
address (``shared.lineage``: ``postgres://host:port`` + ``db.schema.table``, the lake's
``file://`` or ``s3://`` object). Each Asset event names its OpenLineage dataset in its extra
(``openlineage: {namespace, name}``), and the lake artifacts are reported through hook lineage
under that name, as the tables are by ``record_postgres_io``.

A rerun that produces the same content leaves the row exactly as it was (same run id and
time); new content replaces it and names the run that made it. Call :func:`register` in the
same transaction as the load it describes (``commit=False`` loads, then one commit).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from airflow.sdk import Asset


@dataclass(frozen=True)
class Output:
    dataset: str
    kind: str  # "table" | "artifact"
    path: str
    row_count: int
    schema: list[dict]
    content_hash: str
    asset: Asset
    location: str = ""  # the physical URI (shared.lineage): a table's postgres://..., an artifact's lake URL

    @property
    def lineage_uri(self) -> str:
        return self.location or self.path


def table_schema(cur: Any, table: str) -> list[dict]:
    cur.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'public'"
        " AND table_name = %s ORDER BY ordinal_position", (table,))
    return [{"name": n, "type": t} for n, t in cur.fetchall()]


def table_content(cur: Any, table: str, where: str = "TRUE", params: tuple = ()) -> tuple[int, str]:
    """(rows, order-independent content hash) of the rows of ``table`` matching ``where``.

    Sums 64-bit row hashes in PostgreSQL: constant memory, whatever the size.
    """
    cur.execute(
        f"SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)::numeric), 0)::text"
        f" FROM {table} t WHERE {where}", params)
    n, h = cur.fetchone()
    return int(n), f"rows:{n}:{h}"


def table_output(cur: Any, dataset: str, table: str, asset: Asset, where: str = "TRUE",
                 params: tuple = ()) -> Output:
    from shared.lineage import PgTable

    n, h = table_content(cur, table, where, params)
    info = cur.connection.info  # the database this cursor writes: the address hook lineage names
    where_ = PgTable(info.host if info.host and not info.host.startswith("/") else "localhost", int(info.port),
                     info.dbname, table)
    return Output(dataset, "table", table, n, table_schema(cur, table), h, asset, where_.uri)


def register(cur: Any, out: Output, version: str, dag_id: str, run_id: str) -> bool:
    """Upsert the registry row of ``out`` at ``version``; True if it changed."""
    cur.execute(
        "INSERT INTO dataset_registry (dataset, version, kind, path, row_count, schema, content_hash, asset_uri,"
        " dag_id, run_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (dataset, kind, version) DO UPDATE SET path = EXCLUDED.path,"
        " row_count = EXCLUDED.row_count, schema = EXCLUDED.schema, content_hash = EXCLUDED.content_hash,"
        " asset_uri = EXCLUDED.asset_uri, dag_id = EXCLUDED.dag_id, run_id = EXCLUDED.run_id,"
        " registered_at = now()"
        " WHERE (dataset_registry.content_hash, dataset_registry.path, dataset_registry.schema)"
        " IS DISTINCT FROM (EXCLUDED.content_hash, EXCLUDED.path, EXCLUDED.schema)",
        (out.dataset, version, out.kind, out.path, out.row_count, json.dumps(out.schema), out.content_hash,
         out.asset.uri, dag_id, run_id))
    return cur.rowcount > 0


def emit_asset_events(outputs: list[Output], version: str) -> None:
    """Attach version, path, row count and the OpenLineage dataset to the task's outlet events
    (the Assets view shows them); report the lake artifacts through hook lineage."""
    from airflow.sdk import get_current_context

    from shared.lineage import ol_dataset, record_io

    try:
        events = get_current_context()["outlet_events"]
    except Exception:  # outside a task (a script, the benchmark): no asset events to attach to
        return
    for out in outputs:
        if out.kind == "artifact":  # the tables: record_postgres_io, by the code that wrote them
            record_io(out, outputs=[out.lineage_uri])
        ol = ol_dataset(out.lineage_uri)
        events[out.asset].extra = {"dataset": out.dataset, "version": version, "path": out.path,
                                   "rows": out.row_count, "content_hash": out.content_hash,
                                   "openlineage": {"namespace": ol.namespace, "name": ol.name}}


def latest(cur: Any, dataset: str, kind: str = "artifact") -> dict | None:
    """The registry row of ``dataset``'s newest version (by version, then registration time)."""
    cur.execute(
        "SELECT dataset, version, kind, path, row_count, schema, content_hash, asset_uri, dag_id, run_id"
        " FROM dataset_registry WHERE dataset = %s AND kind = %s ORDER BY version DESC LIMIT 1", (dataset, kind))
    row = cur.fetchone()
    if row is None:
        return None
    keys = ("dataset", "version", "kind", "path", "row_count", "schema", "content_hash", "asset_uri", "dag_id",
            "run_id")
    return dict(zip(keys, row, strict=True))
