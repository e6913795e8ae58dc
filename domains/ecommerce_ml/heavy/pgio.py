"""PostgreSQL from the heavy environment: psycopg2 with the libpq fields the task was given."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

PAGE = 500


def connect(db: dict):
    import psycopg2

    port = int(db["port"]) if str(db.get("port") or "None") != "None" else 5432  # a connection without a port: libpq's
    return psycopg2.connect(host=db["host"], port=port, dbname=db["dbname"], user=db["user"], password=db["password"],
                            sslmode=db.get("sslmode") or "prefer", application_name="ecommerce_ml-heavy")


def vector_literal(vec: np.ndarray) -> str:
    return "[" + ",".join(repr(float(x)) for x in vec) + "]"


def sparsevec_literal(row, dims: int) -> str:
    """One CSR row -> pgvector's sparsevec text: ``{index:value,...}/dims`` (1-based indices)."""
    pairs = sorted(zip(row.indices.tolist(), row.data.tolist(), strict=True))
    return "{" + ",".join(f"{i + 1}:{float(v)!r}" for i, v in pairs if v != 0.0) + "}/" + str(dims)


def upsert(conn, table: str, columns: Sequence[str], rows: Iterable[Sequence], key: Sequence[str]) -> int:
    from psycopg2.extras import execute_values

    rows = list(rows)
    if not rows:
        return 0
    cols = ", ".join(columns)
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in key)
    with conn.cursor() as cur:
        execute_values(cur, f"INSERT INTO {table} ({cols}) VALUES %s ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}",
                       rows, page_size=PAGE)
    return len(rows)
