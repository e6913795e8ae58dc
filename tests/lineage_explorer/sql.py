"""Reading the lineage store in the tests: rows of a query over a DSN, one connection each."""

from __future__ import annotations

import psycopg2


def rows(dsn: str, sql: str) -> list[tuple]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()
