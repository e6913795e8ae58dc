"""Sizes (not timings): a generated day of events through DAG 7 slot by slot, as the 15-minute
runs process it, and what its sessions take in each store (issue 25: ``event_sessions`` moved to
the lake, migration 0007).

    python -m benchmarks.ecommerce_ml_sessions --scale 1 --data-dir /tmp/ecom-bench   # 1x: ~2 M events

The day is ``benchmarks.ecommerce_ml``'s (same generator call and scale, reused from
``--data-dir``). Every slot of the day is processed by ``events.process_interval`` (one per
15-minute interval, in order), then it reports the sessions' lake files (count, bytes, rows, bytes
a row, computed from the files themselves) and, for the same rows, PostgreSQL: they are loaded
into migration 0004's ``event_sessions`` (table and primary key) in the benchmark's database and
measured with ``pg_total_relation_size``; the tables that stay in PostgreSQL are measured too.
Seconds are printed for information only (not a measurement: run it under ``measure`` for that).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.ecommerce_ml import DAY, generate

SLOT = timedelta(minutes=15)


def _connections(pg, db: str, password: str, lake_url: str) -> None:
    os.environ["AIRFLOW_CONN_ECOMMERCE_ML_POSTGRES"] = json.dumps({
        "conn_type": "postgres", "host": "127.0.0.1", "port": pg.port, "schema": db, "login": "ecommerce_ml",
        "password": password})
    os.environ["AIRFLOW_CONN_ECOMMERCE_ML_LAKE"] = json.dumps({"conn_type": "fs", "extra": {"base_url": lake_url}})


def run_day(lake_dir: Path) -> dict:
    from contextlib import closing

    import duckdb
    from airflow.sdk import ObjectStoragePath

    from domains.ecommerce_ml import events
    from domains.ecommerce_ml.common import Run
    from domains.ecommerce_ml.db import DATABASE

    shutil.rmtree(lake_dir / "curated", ignore_errors=True)
    root = ObjectStoragePath(f"file://{lake_dir}/")
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    t0, events_in = time.perf_counter(), 0
    for i in range(96):
        slot = start + i * SLOT
        out = events.process_interval(Run("ecommerce_ml_events_funnels", "sizes", slot, slot + SLOT), root=root)
        events_in += out["events"]
    seconds = time.perf_counter() - t0
    files = sorted((lake_dir / "curated" / "event_sessions" / f"v={DAY}").glob("*.parquet"))
    with duckdb.connect() as con:
        rows = con.execute("SELECT count(*) FROM read_parquet(?)", [[str(f) for f in files]]).fetchone()[0]
        per_file = [con.execute("SELECT count(*) FROM read_parquet(?)", [str(f)]).fetchone()[0] for f in files]
    lake_bytes = sum(f.stat().st_size for f in files)
    # the same rows in PostgreSQL, as migration 0004's table held them (table + primary key)
    ddl = re.search(r"CREATE TABLE event_sessions \(.*?\n\);",
                    (DATABASE.migrations / "0004_events_funnels.sql").read_text(), re.S).group(0)
    cols = ", ".join(events.SESSION_TYPES)
    with closing(DATABASE.connect()) as conn, conn.cursor() as cur, duckdb.connect() as con:
        cur.execute(ddl)
        from shared.db import copy_rows

        for f in files:
            copy_rows(cur, "event_sessions", list(events.SESSION_TYPES),
                      con.execute(f"SELECT {cols} FROM read_parquet(?)", [str(f)]).fetchall())
        conn.commit()
        cur.execute("SELECT c.relname, pg_total_relation_size(c.oid)"
                    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
                    " AND c.relkind = 'r' AND c.relname IN ('event_sessions', 'funnel_interval', 'funnel_article',"
                    " 'event_rejections', 'event_files') ORDER BY 1")
        sizes = dict(cur.fetchall())
        counts = {}
        for t in sizes:
            cur.execute(f"SELECT count(*) FROM {t}")
            counts[t] = cur.fetchone()[0]
    fa = sorted((lake_dir / "curated" / "funnel_article").rglob("*.parquet"))
    return {
        "slots": 96, "events_in_slots": events_in, "seconds_info_only": round(seconds, 1),
        "sessions_files": len(files), "sessions_rows": rows, "rows_per_file_min_median_max": [
            min(per_file), sorted(per_file)[len(per_file) // 2], max(per_file)],
        "sessions_lake_bytes": lake_bytes, "sessions_lake_bytes_per_row": round(lake_bytes / rows, 1),
        "sessions_pg_bytes": sizes["event_sessions"], "sessions_pg_bytes_per_row": round(sizes["event_sessions"] / rows, 1),
        "postgres_tables": {t: {"rows": counts[t], "bytes": b} for t, b in sizes.items() if t != "event_sessions"},
        "funnel_article_lake": {"files": len(fa), "bytes": sum(f.stat().st_size for f in fa)},
    }


def main() -> None:
    p = argparse.ArgumentParser(description="ecommerce_ml event_sessions: a day's size in the lake and in PostgreSQL")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--data-dir", help="keep the generated lake here and reuse it")
    args = p.parse_args()

    from devplatform.pg import DOMAIN_EXTENSIONS, PgServer
    from devplatform.ports import free_port

    tmp = Path(tempfile.mkdtemp(prefix="bench-ecommerce-sessions-"))
    os.chmod(tmp, 0o755)
    lake_dir = (Path(args.data_dir) if args.data_dir else tmp) / f"lake-{args.scale:g}"
    t0 = time.perf_counter()
    counts = generate(lake_dir, args.scale, events=True)
    print(json.dumps({"generated": counts, "seconds": round(time.perf_counter() - t0)}), flush=True)
    pg = PgServer(tmp / "pgdata", free_port())
    pg.start()
    pg.wait_ready()
    try:
        password = secrets.token_urlsafe(12)
        pg.ensure_database("ecommerce_ml", "ecommerce_ml", password, DOMAIN_EXTENSIONS)
        _connections(pg, "ecommerce_ml", password, f"file://{lake_dir}")
        print(json.dumps({"scale": args.scale, "day": str(DAY), **run_day(lake_dir)}), flush=True)
    finally:
        pg.stop()
        shutil.rmtree(lake_dir / "curated", ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
