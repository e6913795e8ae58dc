"""Benchmark (not a test): a run of consecutive generated days through DAG 1 with the lake as
the interactions' store, to check the size model behind the README's simulated year.

    python -m benchmarks.ecommerce_ml_year --scale 0.1 --days 14 --data-dir /tmp/ecom-year

Generates ``--days`` consecutive days ending on 2024-06-03 at ``--scale`` (1 = 5 M transactions
a day; articles, customers, transactions of one catalogue per day), then for each day in order,
each in its own worker process: ``build_interactions`` + ``load_interactions`` (the daily step)
and ``build_matrix`` (the user-item matrix over the registered days of its 90-day window).
Prints per day: transactions in, interactions out, the day's Parquet bytes, the step's seconds,
the matrix's window rows, rows, bytes and seconds, and each worker's peak memory (VmHWM); then
the model's check: rows per day against the generator's seasonality (``day_volume``), and bytes
per interaction row. It ends with the year at 1x and 10x from those figures.
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
from datetime import date, timedelta
from pathlib import Path

from benchmarks.ecommerce_ml import TX_PER_SCALE, vm_hwm_mb

LAST = date(2024, 6, 3)


def _work(day: str, lake_url: str) -> dict:
    from airflow.sdk import ObjectStoragePath

    from domains.ecommerce_ml import interactions
    from domains.ecommerce_ml.common import Run

    root = ObjectStoragePath(lake_url + "/")
    run = Run.for_day("ecommerce_ml_user_item_interactions", date.fromisoformat(day), "year")
    t0 = time.perf_counter()
    built = interactions.build_interactions(run, root)
    interactions.load_interactions(run, built, root)
    t1 = time.perf_counter()
    matrix = interactions.build_matrix(run, root)
    t2 = time.perf_counter()
    lake_dir = Path(lake_url.removeprefix("file://"))
    day_bytes = (lake_dir / "curated" / built["interactions"]["relative"]).stat().st_size
    window = sum(f.stat().st_size for f in (lake_dir / "curated" / "interactions").rglob("*.parquet"))
    matrix_path = Path(matrix["path"].removeprefix("file://"))
    return {"day": day, "rows_read": built["rows_read"], "interactions": built["interactions"]["rows"],
            "rejected": sum(built["rejected"].values()), "day_parquet_bytes": day_bytes,
            "step_s": round(t1 - t0, 2), "matrix_days": matrix["days"], "matrix_rows": matrix["rows"],
            "matrix_bytes": matrix_path.stat().st_size, "lake_interactions_bytes": window,
            "matrix_s": round(t2 - t1, 2), "peak_mb": round(vm_hwm_mb())}


def generate(lake_dir: Path, scale: float, days: int) -> list[dict]:
    from airflow.sdk import ObjectStoragePath

    from domains.ecommerce_ml.local.generator import generate_day

    out = []
    root = ObjectStoragePath(f"file://{lake_dir}/")
    for k in range(days - 1, -1, -1):
        day = LAST - timedelta(days=k)
        counts_file = lake_dir / f"generator-counts-{day}.json"
        if not counts_file.exists():
            truths = generate_day(root, day, scale=TX_PER_SCALE * scale,
                                  parts=("articles", "customers", "transactions"))
            counts_file.write_text(json.dumps(dict(truths.counts)))
            print(f"generated {day}", flush=True)
        out.append({"day": day.isoformat(), **json.loads(counts_file.read_text())})
    return out


def model(rows: list[dict], scale: float) -> None:
    """The year at 1x from the measured days: rows per day follow the generator's seasonality."""
    from domains.ecommerce_ml.local.generator import day_volume

    base = 1000 * TX_PER_SCALE * scale
    out_per_in = sum(r["interactions"] for r in rows) / sum(r["rows_read"] for r in rows)
    bytes_per_row = sum(r["day_parquet_bytes"] for r in rows) / sum(r["interactions"] for r in rows)
    print(f"\nmodel: interactions out / transactions in = {out_per_in:.3f}; Parquet bytes per interaction row "
          f"= {bytes_per_row:.1f}")
    for r in rows:
        predicted = day_volume(date.fromisoformat(r["day"]), int(base))
        print(f"  {r['day']}: transactions {r['rows_read']} (model {predicted}, {r['rows_read'] / predicted - 1:+.1%}),"
              f" bytes/row {r['day_parquet_bytes'] / r['interactions']:.1f}")
    year = [day_volume(LAST.replace(month=1, day=1) + timedelta(days=d), 1000 * TX_PER_SCALE) for d in range(365)]
    tx_year = sum(year)
    print(f"year at 1x: {tx_year / 1e9:.2f} G transactions, {tx_year * out_per_in / 1e9:.2f} G interactions, "
          f"Parquet {tx_year * out_per_in * bytes_per_row / 2**30:.0f} GiB (a day {min(year) * out_per_in * bytes_per_row / 2**20:.0f}"
          f"-{max(year) * out_per_in * bytes_per_row / 2**20:.0f} MiB); 10x: "
          f"{10 * tx_year * out_per_in * bytes_per_row / 2**30:.0f} GiB")


def main() -> None:
    p = argparse.ArgumentParser(description="consecutive days of DAG 1 on the lake store")
    p.add_argument("--scale", type=float, default=0.1)
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--data-dir", default="/tmp/ecommerce-ml-year")
    p.add_argument("--generate-only", action="store_true")
    p.add_argument("--worker")
    p.add_argument("--lake")
    args = p.parse_args()
    if args.worker:
        print(json.dumps(_work(args.worker, args.lake)))
        return
    lake_dir = Path(args.data_dir) / f"year-{args.scale:g}"
    lake_dir.mkdir(parents=True, exist_ok=True)
    days = generate(lake_dir, args.scale, args.days)
    if args.generate_only:
        return

    from devplatform.pg import DOMAIN_EXTENSIONS, PgServer
    from devplatform.ports import free_port

    tmp = Path(tempfile.mkdtemp(prefix="bench-ecommerce-year-"))
    os.chmod(tmp, 0o755)
    pg = PgServer(tmp / "pgdata", free_port())
    pg.start()
    pg.wait_ready()
    shutil.rmtree(lake_dir / "curated", ignore_errors=True)
    rows = []
    print(f"load average at start: {os.getloadavg()}", flush=True)
    try:
        password = secrets.token_urlsafe(12)
        pg.ensure_database("ecommerce_ml_year", "ecommerce_ml", password, DOMAIN_EXTENSIONS)
        lake_url = f"file://{lake_dir}"
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
               "AIRFLOW_CONN_ECOMMERCE_ML_POSTGRES": json.dumps({
                   "conn_type": "postgres", "host": "127.0.0.1", "port": pg.port, "schema": "ecommerce_ml_year",
                   "login": "ecommerce_ml", "password": password}),
               "AIRFLOW_CONN_ECOMMERCE_ML_LAKE": json.dumps({"conn_type": "fs", "extra": {"base_url": lake_url}})}
        for d in days:
            proc = subprocess.run([sys.executable, "-m", "benchmarks.ecommerce_ml_year", "--worker", d["day"],
                                   "--lake", lake_url], env=env, stdout=subprocess.PIPE, text=True, check=True)
            rows.append({**json.loads(proc.stdout.strip().splitlines()[-1]), "load": os.getloadavg()[0]})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average at end: {os.getloadavg()}")
    print(f"\n{'day':<11}{'tx in':>10}{'out':>10}{'MiB':>6}{'step s':>7}{'win days':>9}{'matrix rows':>12}"
          f"{'matrix s':>9}{'peak MB':>8}")
    for r in rows:
        print(f"{r['day']:<11}{r['rows_read']:>10}{r['interactions']:>10}{r['day_parquet_bytes'] / 2**20:>6.1f}"
              f"{r['step_s']:>7}{r['matrix_days']:>9}{r['matrix_rows']:>12}{r['matrix_s']:>9}{r['peak_mb']:>8}")
    model(rows, args.scale)


if __name__ == "__main__":
    main()
