"""Benchmark (not a test): shared.db.bulk_upsert vs raw COPY vs pandas to_sql(method="multi").

Everything runs side by side in one process on one embedded PostgreSQL 18, in ROUNDS
rounds; within a round the methods run in a rotated order (interleaved), and the table
reports each method's MEDIAN time, so a neighbour's load on a shared machine hits all
methods alike. Ratios: "vs COPY" = raw COPY's time / this time (1.00x = as fast as
COPY); "vs to_sql" = to_sql's time for as many rows / this time.

- initial loads into an empty table: raw COPY, ``bulk_upsert`` (DataFrame: straight
  COPY), ``bulk_upsert`` (row tuples: the merge path);
- merges of N rows into a table holding the first N/2 (half updates, half inserts),
  then the same load again (nothing changed), for each merge strategy tried: the staging
  table (TEMP or UNLOGGED), the statement (``INSERT ... ON CONFLICT``, ``MERGE``, or
  ``UPDATE ... FROM`` + ``INSERT ... WHERE NOT EXISTS``), how unchanged rows are skipped
  (``IS DISTINCT FROM`` or a row hash), and session tuning (``synchronous_commit``,
  ``work_mem``, ``ANALYZE`` of the staging table). Every merge is checked for the right
  result (row count and checksum), so a fast wrong variant cannot win.

``python -m benchmarks.bulk_upsert [ROWS] [ROUNDS] [TO_SQL_ROWS]``; to_sql is timed on
TO_SQL_ROWS rows (default ROWS/5) and scaled to ROWS (it is linear: 1,000 rows a statement).
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import astuple
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg2
import sqlalchemy

from devplatform.pg import PgServer
from devplatform.ports import free_port
from shared.db import bulk_upsert, copy_rows

DDL = "CREATE TABLE bench (id bigint PRIMARY KEY, name text NOT NULL, score double precision, created date)"
COLS = ["id", "name", "score", "created"]
KEY = ["id"]
UPD = ["name", "score", "created"]


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


_BACKEND: list[int] = []  # the benchmark session's server process


def _backend_cpu() -> float:
    if not _BACKEND:
        return 0.0
    fields = Path(f"/proc/{_BACKEND[0]}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(fn) -> tuple[float, float]:
    """Wall seconds of ``fn()`` and its CPU seconds (this process + the session's server backend)."""
    c0, b0 = time.process_time(), _backend_cpu()
    t0 = time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    return wall, time.process_time() - c0 + _backend_cpu() - b0


# -- merge strategies tried against each other (the kept one is shared.db.bulk_upsert) ----
def _stage(cur, df: pd.DataFrame, staging: str) -> str:
    if staging == "temp":
        cur.execute("CREATE TEMP TABLE _stage (LIKE bench INCLUDING DEFAULTS) ON COMMIT DROP")
        name = "_stage"
    else:  # unlogged: a regular table in shared buffers, no WAL; created and dropped in the transaction
        name = "_stage_" + uuid.uuid4().hex[:12]
        cur.execute(f"CREATE UNLOGGED TABLE {name} (LIKE bench INCLUDING DEFAULTS)")
    copy_rows(cur, name, COLS, df)
    return name


def _changed(old: str, new: str, how: str) -> str:
    a = ", ".join(f"{old}.{c}" for c in UPD)
    b = ", ".join(f"{new}.{c}" for c in UPD)
    if how == "hash":
        return f"md5(row({a})::text) <> md5(row({b})::text)"
    return f"({a}) IS DISTINCT FROM ({b})"


def merge_variant(statement: str, staging: str = "temp", skip: str = "distinct", tuning: tuple = ()) -> Callable:
    cols = ", ".join(COLS)

    def run(conn, df: pd.DataFrame) -> tuple[int, int]:
        df = df.drop_duplicates(subset=KEY, keep="last")
        with conn.cursor() as cur:
            if "sync off" in tuning:
                cur.execute("SET LOCAL synchronous_commit = off")
            if "work_mem" in tuning:
                cur.execute("SET LOCAL work_mem = '256MB'")
            s = _stage(cur, df, staging)
            if "analyze" in tuning:
                cur.execute(f"ANALYZE {s}")
            if statement == "on conflict":
                sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in UPD)
                cur.execute(
                    f"WITH w AS (INSERT INTO bench AS t ({cols}) SELECT {cols} FROM {s} ON CONFLICT (id)"
                    f" DO UPDATE SET {sets} WHERE {_changed('t', 'EXCLUDED', skip)} RETURNING (xmax = 0) AS ins)"
                    " SELECT count(*) FILTER (WHERE ins), count(*) FILTER (WHERE NOT ins) FROM w")
                inserted, updated = cur.fetchone()
            elif statement == "merge":
                sets = ", ".join(f"{c} = s.{c}" for c in UPD)
                vals = ", ".join(f"s.{c}" for c in COLS)
                cur.execute(
                    f"WITH w AS (MERGE INTO bench t USING {s} s ON t.id = s.id"
                    f" WHEN MATCHED AND {_changed('t', 's', skip)} THEN UPDATE SET {sets}"
                    f" WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({vals}) RETURNING merge_action() AS a)"
                    " SELECT count(*) FILTER (WHERE a = 'INSERT'), count(*) FILTER (WHERE a = 'UPDATE') FROM w")
                inserted, updated = cur.fetchone()
            else:  # split: update the rows that exist and changed, then insert the rest
                sets = ", ".join(f"{c} = s.{c}" for c in UPD)
                cur.execute(f"UPDATE bench t SET {sets} FROM {s} s WHERE t.id = s.id AND {_changed('t', 's', skip)}")
                updated = cur.rowcount
                cur.execute(f"INSERT INTO bench ({cols}) SELECT {cols} FROM {s} s"
                            " WHERE NOT EXISTS (SELECT 1 FROM bench t WHERE t.id = s.id)")
                inserted = cur.rowcount
            cur.execute(f"DROP TABLE {s}")
        conn.commit()
        return int(inserted), int(updated)

    return run


def split_client_side(conn, df: pd.DataFrame) -> tuple[int, int]:
    """Not a staging merge: ask which keys exist, COPY the new rows straight into the table,
    stage and UPDATE only the existing ones. Needs the table locked against other writers
    for the whole load (else a concurrent insert of a new key fails the COPY)."""
    df = df.drop_duplicates(subset=KEY, keep="last")
    with conn.cursor() as cur:
        cur.execute("LOCK TABLE bench IN SHARE ROW EXCLUSIVE MODE")
        cur.execute("CREATE TEMP TABLE _keys (id bigint) ON COMMIT DROP")
        copy_rows(cur, "_keys", ["id"], df)
        cur.execute("SELECT k.id FROM _keys k JOIN bench t ON t.id = k.id")
        existing = np.fromiter((i for (i,) in cur), dtype=np.int64)
        mask = df["id"].isin(existing).to_numpy()
        copy_rows(cur, "bench", COLS, df[~mask])
        s = _stage(cur, df[mask], "temp")
        sets = ", ".join(f"{c} = s.{c}" for c in UPD)
        cur.execute(f"UPDATE bench t SET {sets} FROM {s} s WHERE t.id = s.id AND {_changed('t', 's', 'distinct')}")
        updated = cur.rowcount
        cur.execute(f"DROP TABLE {s}; DROP TABLE _keys")
    conn.commit()
    return int((~mask).sum()), int(updated)


VARIANTS: dict[str, Callable] = {
    "bulk_upsert (as kept in shared.db)": lambda conn, df: astuple(bulk_upsert(conn, "bench", COLS, df, key=KEY)),
    "TEMP + ON CONFLICT (before)": merge_variant("on conflict"),
    "TEMP + MERGE": merge_variant("merge"),
    "TEMP + MERGE, work_mem 256MB, ANALYZE staging": merge_variant("merge", tuning=("work_mem", "analyze")),
    "TEMP + UPDATE FROM, INSERT NOT EXISTS": merge_variant("split", tuning=("work_mem", "analyze")),
    "UNLOGGED + ON CONFLICT": merge_variant("on conflict", staging="unlogged"),
    "TEMP + ON CONFLICT, row-hash compare": merge_variant("on conflict", skip="hash"),
    "TEMP + ON CONFLICT, synchronous_commit off": merge_variant("on conflict", tuning=("sync off",)),
    "keys first; COPY new rows straight in, UPDATE the rest": split_client_side,
}


def check(conn, n: int, expect: float) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), count(DISTINCT id), round(sum(score)::numeric, 3) FROM bench")
        count, distinct, total = cur.fetchone()
    assert count == distinct == n and abs(float(total) - expect) < 1e-2, (count, distinct, total, expect)


def main(n: int = 1_000_000, rounds: int = 3, to_sql_rows: int | None = None) -> None:
    to_sql_rows = to_sql_rows or max(n // 5, 1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    pg = PgServer(tmp / "pgdata", free_port())
    pg.start()
    pg.wait_ready()
    pg.ensure_database("bench", "bench", "bench")
    dsn = dict(host="127.0.0.1", port=pg.port, dbname="bench", user="bench", password="bench")
    try:
        df = frame(n)
        rows = list(df.itertuples(index=False, name=None))
        half = n // 2
        changed = df.copy()
        changed.loc[: half - 1, "score"] = changed.loc[: half - 1, "score"] + 1
        expect = round(float(changed["score"].sum()), 3)
        engine = sqlalchemy.create_engine(f"postgresql+psycopg2://bench:bench@127.0.0.1:{pg.port}/bench")
        times: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}

        def raw_copy(conn):
            fresh(conn)
            def load():
                with conn.cursor() as cur:
                    copy_rows(cur, "bench", COLS, df)
                conn.commit()
            return {"raw COPY (DataFrame)": timed(load)}

        def initial_frame(conn):
            fresh(conn)
            return {"bulk_upsert (DataFrame), empty table": timed(lambda: bulk_upsert(conn, "bench", COLS, df, key=KEY))}

        def initial_rows(conn):
            fresh(conn)
            return {"bulk_upsert (row tuples, merge path)": timed(lambda: bulk_upsert(conn, "bench", COLS, rows, key=KEY))}

        def to_sql(conn):
            fresh(conn)
            t, _ = timed(lambda: df.iloc[:to_sql_rows].to_sql("bench", engine, if_exists="append", index=False,
                                                              method="multi", chunksize=1000))
            return {'pandas to_sql(method="multi")': (t * n / to_sql_rows, float("nan"))}  # its server: not ours

        def merging(label: str, fn: Callable) -> Callable:
            def go(conn):
                fresh(conn)
                bulk_upsert(conn, "bench", COLS, df.iloc[:half], key=KEY)
                conn.autocommit = True
                with conn.cursor() as cur:  # every strategy starts from the same, vacuumed table
                    cur.execute("VACUUM ANALYZE bench")
                conn.autocommit = False
                merged = {}
                result: list = []
                merged[f"merge 50/50: {label}"] = timed(lambda: result.append(fn(conn, changed)))
                assert tuple(result[0]) in ((half, n - half), (n - half, half)), (label, result)
                check(conn, n, expect)
                result.clear()
                merged[f"rerun, unchanged: {label}"] = timed(lambda: result.append(fn(conn, changed)))
                assert tuple(result[0]) == (0, 0), (label, "rerun", result)
                check(conn, n, expect)
                return merged
            return go

        jobs = [raw_copy, initial_frame, initial_rows, to_sql] + [merging(k, v) for k, v in VARIANTS.items()]
        for r in range(rounds):
            order = jobs[r % len(jobs):] + jobs[:r % len(jobs)]
            for job in order:
                conn = psycopg2.connect(**dsn)  # a new session each: temp_buffers and caches start alike
                with conn.cursor() as cur:
                    cur.execute("SET temp_buffers = '256MB'")  # as bulk_upsert does: staging stays in memory
                    cur.execute("SELECT pg_backend_pid()")
                    _BACKEND[:] = [cur.fetchone()[0]]
                conn.commit()
                try:
                    for name, (wall, used) in job(conn).items():
                        times.setdefault(name, []).append(wall)
                        cpu.setdefault(name, []).append(used)
                finally:
                    conn.close()
            print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
        engine.dispose()

        med = {k: statistics.median(v) for k, v in times.items()}
        med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
        copy_s, copy_cpu = med["raw COPY (DataFrame)"], med_cpu["raw COPY (DataFrame)"]
        to_sql_s = med['pandas to_sql(method="multi")']
        print(f"\nLoading {n:,} rows (PostgreSQL 18, embedded, this machine): median of {rounds} interleaved"
              f" rounds; to_sql timed on {to_sql_rows:,} rows and scaled. 'cpu' = CPU seconds of the"
              " client and its server backend (less sensitive to neighbours than wall time;"
              " not counted: to_sql's server side, WAL writer, fsync waits)\n")
        print(f"{'method':58s} {'wall s':>7s} {'min..max':>11s} {'vs COPY':>8s} {'vs to_sql':>9s}"
              f" {'cpu s':>6s} {'cpu vs COPY':>11s}")
        for name, s in med.items():
            lo, hi = min(times[name]), max(times[name])
            print(f"{name:58s} {s:7.2f} {f'{lo:.1f}..{hi:.1f}':>11s} {copy_s / s:7.2f}x {to_sql_s / s:8.1f}x"
                  + (f" {med_cpu[name]:6.2f} {copy_cpu / med_cpu[name]:10.2f}x" if med_cpu[name] == med_cpu[name]
                     else f" {'n/a':>6s} {'n/a':>11s}"))
        print("\nTargets: bulk_upsert >= 0.7x COPY and >= 10x to_sql.")
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(*args)
