"""Benchmark (not a test): shared.db.bulk_upsert vs raw COPY vs pandas to_sql(method="multi").

All three load the same 1,000,000-row DataFrame into the same empty table on one embedded
PostgreSQL, side by side in one run; prints a table with the ratios.
``python -m benchmarks.bulk_upsert [ROWS]``
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg2
import sqlalchemy

from devplatform.pg import PgServer
from devplatform.standin import free_port
from shared.db import bulk_upsert, copy_rows

DDL = "CREATE TABLE bench (id bigint PRIMARY KEY, name text NOT NULL, score double precision, created date)"
COLS = ["id", "name", "score", "created"]


def frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame({
        "id": np.arange(n, dtype=np.int64),
        "name": [f"candidate {i}" for i in range(n)],
        "score": rng.random(n) * 100,
        "created": pd.Timestamp("2026-01-01").date(),
    })


def fresh(conn) -> None:
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bench")
        cur.execute(DDL)
    conn.commit()


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(n: int = 1_000_000) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    pg = PgServer(tmp / "pgdata", free_port())
    pg.start()
    pg.wait_ready()
    pg.ensure_database("bench", "bench", "bench")
    dsn = dict(host="127.0.0.1", port=pg.port, dbname="bench", user="bench", password="bench")
    try:
        df = frame(n)
        rows = list(df.itertuples(index=False, name=None))
        conn = psycopg2.connect(**dsn)
        results = {}

        def raw_copy():
            with conn.cursor() as cur:
                copy_rows(cur, "bench", COLS, df)
            conn.commit()

        for name, fn in [
            ("raw COPY (DataFrame)", raw_copy),
            ("bulk_upsert (DataFrame), empty table", lambda: bulk_upsert(conn, "bench", COLS, df, key=["id"])),
            ("bulk_upsert (row tuples, merge path)", lambda: bulk_upsert(conn, "bench", COLS, rows, key=["id"])),
        ]:
            fresh(conn)
            results[name] = timed(fn)
        # merges into a populated table: the other half of the ids new, the first half changed
        fresh(conn)
        half = n // 2
        bulk_upsert(conn, "bench", COLS, df.iloc[:half], key=["id"])
        changed = df.copy()
        changed.loc[: half - 1, "score"] = changed.loc[: half - 1, "score"] + 1
        results["bulk_upsert merge: 50% update, 50% insert"] = timed(
            lambda: bulk_upsert(conn, "bench", COLS, changed, key=["id"]))
        # the same load again into the full table: every row compared, nothing rewritten
        results["bulk_upsert rerun, nothing changed"] = timed(lambda: bulk_upsert(conn, "bench", COLS, changed, key=["id"]))
        conn.close()

        engine = sqlalchemy.create_engine(
            f"postgresql+psycopg2://bench:bench@127.0.0.1:{pg.port}/bench")
        with psycopg2.connect(**dsn) as c:
            fresh(c)
        results['pandas to_sql(method="multi")'] = timed(
            lambda: df.to_sql("bench", engine, if_exists="append", index=False, method="multi", chunksize=1000))
        engine.dispose()

        copy_s = results["raw COPY (DataFrame)"]
        to_sql_s = results['pandas to_sql(method="multi")']
        print(f"\nLoading {n:,} rows (PostgreSQL 18, embedded, this machine); all into an empty table"
              " unless the method says merge/rerun\n")
        print(f"{'method':42s} {'seconds':>9s} {'rows/s':>12s} {'vs COPY':>9s} {'vs to_sql':>10s}")
        for name, s in results.items():
            print(f"{name:42s} {s:9.2f} {n / s:12,.0f} {copy_s / s:8.2f}x {to_sql_s / s:9.1f}x")
        print("\n'vs COPY' is raw COPY's time / this time (1.00x = as fast as COPY); targets: "
              "bulk_upsert >= 0.7x COPY and >= 10x to_sql.")
    finally:
        pg.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
