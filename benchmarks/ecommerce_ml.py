"""Benchmark (not a test): ecommerce_ml's interactions (DAG 1) at 5 million transactions and
its funnels (DAG 7) at 2 million events, per scale: rows per second and the peak memory
(max RSS) of the worker process that runs the task code.

    python -m benchmarks.ecommerce_ml                      # scales 0.1 and 1 (1 = 5 M transactions, 2 M events)
    python -m benchmarks.ecommerce_ml --scales 0.1,1,10    # 10x: ~50 M rows, generation alone takes long on 2 cores

A real embedded PostgreSQL (a temporary one on a free port) and a temporary file:// lake;
the generator writes the day first (not timed). Each measured step runs in its own Python
process, as an Airflow worker would run the task: ``build_interactions`` + ``load_interactions``
(DuckDB over the CSV, Parquet artifacts, COPY into PostgreSQL), and ``process_interval``
over a whole day of events (sessionisation, funnels, COPY). Peak memory is that process's
``ru_maxrss``; ``import only`` is the same process doing nothing but the imports. Memory is
bounded when the peak stays flat as the scale grows (DuckDB runs with a memory limit,
``ECOMMERCE_ML_DUCKDB_MEMORY``, and spills).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

DAY = date(2024, 6, 3)
TX_PER_SCALE = 5000     # generator scale for 5 M transactions at 1x (about 1,000 per generator scale unit)
EV_PER_SCALE = 1390     # generator scale for ~2 M events at 1x


def vm_hwm_mb() -> float:
    """This process's peak resident memory (VmHWM) since it was exec'd.

    Not ``ru_maxrss`` from wait4(): on Linux that also counts the parent's pages the child
    had between fork and exec, so a big benchmark driver would inflate every worker's peak.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def worker(kind: str, lake_url: str) -> dict:
    result = _work(kind, lake_url)
    result["peak_mb"] = vm_hwm_mb()
    return result


def _work(kind: str, lake_url: str) -> dict:
    from airflow.sdk import ObjectStoragePath

    root = ObjectStoragePath(lake_url + "/")
    if kind == "import":
        from domains.ecommerce_ml import events, interactions  # noqa: F401

        return {"rows": 0, "seconds": 0.0}
    from domains.ecommerce_ml.common import Run

    t0 = time.perf_counter()
    if kind == "interactions":
        from domains.ecommerce_ml import interactions

        run = Run.for_day("ecommerce_ml_user_item_interactions", DAY, "bench")
        built = interactions.build_interactions(run, root)
        interactions.load_interactions(run, built, root)
        rows = built["rows_read"]
    else:
        from domains.ecommerce_ml import events

        start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
        out = events.process_interval(Run("ecommerce_ml_events_funnels", "bench", start, start + timedelta(days=1)),
                                      root=root)
        rows = out["events"] + out["rejected_events"]
    return {"rows": rows, "seconds": time.perf_counter() - t0}


def measure(kind: str, lake_url: str, env: dict) -> dict:
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.ecommerce_ml", "--worker", kind, "--lake", lake_url],
                            env=env, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    if proc.wait() != 0:
        raise RuntimeError(f"{kind} worker failed ({proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description="ecommerce_ml interactions and funnels throughput and peak memory")
    p.add_argument("--scales", default="0.1,1")
    p.add_argument("--worker")
    p.add_argument("--lake")
    p.add_argument("--data-dir", help="keep the generated lakes here and reuse them on the next run")
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.lake)))
        return

    from airflow.sdk import ObjectStoragePath

    from devplatform.pg import DOMAIN_EXTENSIONS, PgServer
    from devplatform.ports import free_port
    from domains.ecommerce_ml.local.generator import generate_day

    tmp = Path(tempfile.mkdtemp(prefix="bench-ecommerce-ml-"))
    os.chmod(tmp, 0o755)
    pg = PgServer(tmp / "pgdata", free_port())
    pg.start()
    pg.wait_ready()
    results = []
    try:
        for scale in [float(s) for s in args.scales.split(",")]:
            db = f"ecommerce_ml_{str(scale).replace('.', '_')}"
            password = secrets.token_urlsafe(12)
            pg.ensure_database(db, "ecommerce_ml", password, DOMAIN_EXTENSIONS)  # pgvector, as make start
            lake_dir = (Path(args.data_dir) if args.data_dir else tmp) / f"lake-{scale}"
            lake_url = f"file://{lake_dir}"
            root = ObjectStoragePath(lake_url + "/")
            t0 = time.perf_counter()
            counts_file = lake_dir / "generator-counts.json"
            if counts_file.exists():
                counts = json.loads(counts_file.read_text())
            else:
                tx = generate_day(root, DAY, scale=TX_PER_SCALE * scale, parts=("articles", "customers", "transactions"))
                ev = generate_day(root, DAY, scale=EV_PER_SCALE * scale, parts=("articles", "events"))
                counts = {"transactions": tx.counts["transactions"], "events": ev.counts["events"]}
                counts_file.write_text(json.dumps(counts))
            gen = time.perf_counter() - t0
            raw_mb = sum(f.stat().st_size for f in lake_dir.rglob("*.csv")) / 2**20
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
                   "AIRFLOW_CONN_ECOMMERCE_ML_POSTGRES": json.dumps({
                       "conn_type": "postgres", "host": "127.0.0.1", "port": pg.port, "schema": db,
                       "login": "ecommerce_ml", "password": password}),
                   "AIRFLOW_CONN_ECOMMERCE_ML_LAKE": json.dumps({"conn_type": "fs", "extra": {"base_url": lake_url}})}
            base = measure("import", lake_url, env)
            for kind, expected in (("interactions", counts["transactions"]), ("funnels", counts["events"])):
                r = measure(kind, lake_url, env)
                results.append({"step": kind, "scale": f"{scale:g}x", "rows": r["rows"], "expected_rows": expected,
                                "seconds": round(r["seconds"], 1), "rows_per_s": round(r["rows"] / r["seconds"]),
                                "peak_rss_mb": round(r["peak_mb"]), "import_only_mb": round(base["peak_mb"]),
                                "generate_s": round(gen), "raw_csv_mb": round(raw_mb)})
                print(json.dumps(results[-1]), flush=True)
            if not args.data_dir:
                shutil.rmtree(lake_dir, ignore_errors=True)
            for sub in ("curated",):  # outputs of this run: the next run starts from the raw drops only
                shutil.rmtree(lake_dir / sub, ignore_errors=True)
            pg.drop_database(db)
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{'step':<13}{'scale':>6}{'rows':>11}{'seconds':>9}{'rows/s':>10}{'peak MB':>9}{'import MB':>10}")
    for r in results:
        print(f"{r['step']:<13}{r['scale']:>6}{r['rows']:>11}{r['seconds']:>9}{r['rows_per_s']:>10}"
              f"{r['peak_rss_mb']:>9}{r['import_only_mb']:>10}")


if __name__ == "__main__":
    main()
