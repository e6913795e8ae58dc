"""Task logic of the fixture DAG ``platform_shared_check`` (kept out of the DAG file)."""

from __future__ import annotations

from pathlib import Path

from shared.db import DomainDatabase, bulk_upsert
from shared.http import JsonApiHook
from shared.lineage import record_http_io, record_postgres_io

MIGRATIONS = Path(__file__).parent / "migrations"


def load_items_from_catalog(domain: str) -> int:
    database = DomainDatabase(domain, MIGRATIONS)
    pg = database.hook()
    api = JsonApiHook(f"{domain}_api")
    conn = database.connect(pg)
    try:
        total = 0
        for page in api.paginate("/items", page_size=10):
            rows = [(r["id"], r["name"], r["price"]) for r in page.data]
            bulk_upsert(conn, "items", ["id", "name", "price"], rows, key=["id"])
            total += len(rows)
    finally:
        conn.close()
    record_http_io(api, inputs=["/items"])
    record_postgres_io(pg, outputs=["items"])
    return total
