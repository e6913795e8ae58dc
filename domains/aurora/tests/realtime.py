"""Helpers of aurora's feature and prediction tests: a generated dataset in a fresh aurora
database (real PostgreSQL), the domain Redis and the Kafka stand-in come from the root conftest."""

from __future__ import annotations

from contextlib import closing
from datetime import date

import psycopg2

END = date(2026, 11, 30)  # the generated days end the day before: as_of 2026-11-30T06:00Z


def load_dataset(users: int = 60, days: int = 40, end: date = END) -> dict:
    from domains.aurora.db import DATABASE
    from domains.aurora.generator import generate, load

    with closing(DATABASE.connect()) as conn:
        return load(conn, generate(users=users, days=days, end=end))


def query(db: dict, sql: str, params=()) -> list[tuple]:
    conn = psycopg2.connect(host=db["host"], port=db["port"], dbname=db["schema"], user=db["login"],
                            password=db["password"])
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()
