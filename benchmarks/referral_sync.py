"""Benchmark (not a test): full sync of 100,000 candidates from the Bullhorn stand-in.

The stand-in runs in a process of its own; this process runs ``sync_entity`` against a
fresh embedded PostgreSQL and prints rows/s and peak memory (Python allocations during
the sync, and the process's peak RSS). ``python -m benchmarks.referral_sync [N]``
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from devplatform.pg import PgServer
from devplatform.ports import free_port


def serve(port: int, n: int) -> None:
    from devplatform.standin import serve as serve_standin
    from domains.referral.local.bullhorn import create_bullhorn_app

    serve_standin(create_bullhorn_app(seed_candidates=n, seed_positions=0), port, "warning")


def main(n: int = 100_000) -> None:
    port = free_port()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(port, n), daemon=True)
    server.start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-referral-"))
    pg = PgServer(tmp / "pgdata", free_port())
    pg.start()
    pg.wait_ready()
    pg.ensure_database("referral", "referral", "bench")
    os.environ["AIRFLOW_CONN_REFERRAL_POSTGRES"] = json.dumps(
        {"conn_type": "postgres", "host": "127.0.0.1", "port": pg.port, "schema": "referral", "login": "referral",
         "password": "bench"})
    os.environ["AIRFLOW_CONN_REFERRAL_BULLHORN"] = json.dumps(
        {"conn_type": "http", "host": f"http://127.0.0.1:{port}", "login": "api.user", "password": "api.password",
         "extra": {"auth_type": "none", "client_id": "platform-client", "client_secret": "platform-secret",
                   "timeout": 60}})
    try:
        import requests

        deadline = time.monotonic() + 120
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/_standin/health", timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        import psycopg2

        from domains.referral.sync import sync_entity

        def reset() -> None:
            with psycopg2.connect(host="127.0.0.1", port=pg.port, dbname="referral", user="referral",
                                  password="bench") as c, c.cursor() as cur:
                cur.execute("TRUNCATE candidates CASCADE; DELETE FROM sync_watermarks")

        from domains.referral.bullhorn.hook import BullhornHook
        from domains.referral.db import DATABASE

        DATABASE.connect().close()  # schema and driver imports: not part of the timing
        BullhornHook().login()
        t0 = time.perf_counter()
        result = sync_entity("Candidate", "bench")
        seconds = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        reset()
        tracemalloc.start()
        sync_entity("Candidate", "bench-memory")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"\nFull sync of {n:,} candidates from the Bullhorn stand-in (500 a page, keyset paging)\n")
        print(f"  rows received           {result['received']:,} in {result['pages']} pages")
        print(f"  rows inserted           {result['inserted']:,}")
        print(f"  time                    {seconds:.1f} s")
        print(f"  throughput              {result['received'] / seconds:,.0f} rows/s")
        print(f"  peak RSS of the process {rss:.0f} MiB (Airflow and drivers loaded)")
        print(f"  peak Python allocations {peak / 2**20:.1f} MiB during a second full sync (tracemalloc)")
    finally:
        server.terminate()
        pg.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
