"""Benchmark (not a test): a run of consecutive generated days through DAG 1 with the lake as
the interactions' store, to check the size model behind the README's simulated year.

    python -m benchmarks.ecommerce_ml_year --scale 0.1 --days 30 --data-dir /tmp/ecom-year --simulate
    python -m benchmarks.ecommerce_ml_year --scale 0.1 --days 30 --data-dir /tmp/ecom-year --time --rounds 3

``--simulate`` (not timed: run it at low priority) generates ``--days`` consecutive days ending on
2024-06-03 at ``--scale`` (1 = 5 M transactions a day; articles, customers, transactions of one
catalogue per day) and runs each day in order, in its own worker process, through the daily step
(``build_interactions`` + ``load_interactions``) and ``build_matrix`` (the user-item matrix over the
registered days of its 90-day window, combined from per-day partial aggregates). It keeps the lake
and the PostgreSQL data folder in ``--data-dir`` and prints per day what does not depend on the
machine's load: transactions in, interactions out, the day's Parquet bytes, the matrix's window and
rows, each worker's peak memory (VmHWM); then the size model's check (rows a day against the
generator's seasonality, bytes per interaction row) and the year at 1x and 10x from it.

``--time`` (run it under ``measure``) restarts that PostgreSQL and times, in interleaved rounds
(medians), each in its own worker: the daily step on the first and on the last day (a rerun:
the same work, the content unchanged), the matrix of the last day from the partials
(``build_matrix``) and the same matrix regrouped from every interactions file of the window (the
rebuild before the partials), and what the domain's users run on the last day over the window:
the recommendation training read (the matrix file into arrays), similar products (articles bought
by the buyers of the best seller, over the window) and customer features (RFM per customer over
the window).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from benchmarks.ecommerce_ml import TX_PER_SCALE, vm_hwm_mb

LAST = date(2024, 6, 3)
DB = "ecommerce_ml_year"
TIMED = ("step_first", "step_last", "matrix_partials", "matrix_full", "training_read", "similar_products",
         "customer_rfm")


def _run(day: str):
    from domains.ecommerce_ml.common import Run

    return Run.for_day("ecommerce_ml_user_item_interactions", date.fromisoformat(day), "year")


def _simulate_day(day: str, root, lake_dir: Path) -> dict:
    from domains.ecommerce_ml import interactions

    run = _run(day)
    t0 = time.perf_counter()
    built = interactions.build_interactions(run, root)
    interactions.load_interactions(run, built, root)
    t1 = time.perf_counter()
    matrix = interactions.build_matrix(run, root)
    t2 = time.perf_counter()
    day_bytes = (lake_dir / "curated" / built["interactions"]["relative"]).stat().st_size
    lake_bytes = sum(f.stat().st_size for f in (lake_dir / "curated" / "interactions").rglob("*.parquet"))
    pairs_bytes = sum(f.stat().st_size for f in (lake_dir / "curated" / "user_item_day").rglob("*.parquet"))
    return {"day": day, "rows_read": built["rows_read"], "interactions": built["interactions"]["rows"],
            "rejected": sum(built["rejected"].values()), "day_parquet_bytes": day_bytes,
            "lake_interactions_bytes": lake_bytes, "lake_partials_bytes": pairs_bytes,
            "matrix_days": matrix["days"], "matrix_rows": matrix["rows"],
            "matrix_bytes": Path(matrix["path"].removeprefix("file://")).stat().st_size,
            "step_s_unmeasured": round(t1 - t0, 2), "matrix_s_unmeasured": round(t2 - t1, 2)}


def _window_files(last: str, days: int = 90) -> list[str]:
    from domains.ecommerce_ml import interactions

    first = date.fromisoformat(last) - timedelta(days=days - 1)
    return [str(p.path) for _, p in interactions.interaction_files(first, last)]


def _timed(kind: str, day: str, root) -> dict:
    """One timed piece of work (``--time``); the seconds cover the work only, not the imports."""
    import duckdb

    from domains.ecommerce_ml import ingest, interactions

    run = _run(day)
    if kind.startswith("step"):
        t0 = time.perf_counter()
        built = interactions.build_interactions(run, root)
        interactions.load_interactions(run, built, root)
        return {"seconds": time.perf_counter() - t0, "rows": built["rows_read"]}
    if kind == "matrix_partials":
        t0 = time.perf_counter()
        out = interactions.build_matrix(run, root)
        return {"seconds": time.perf_counter() - t0, "rows": out["rows"], "days": out["days"]}
    if kind == "matrix_full":
        files = _window_files(day)
        with ingest.duckdb_session() as con, tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            con.execute(f"COPY ({interactions.full_matrix_sql(run.day, files)}) TO '{tmp}/m.parquet'"
                        " (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)")
            rows = con.execute(f"SELECT count(*) FROM read_parquet('{tmp}/m.parquet')").fetchone()[0]
            return {"seconds": time.perf_counter() - t0, "rows": rows, "days": len(files)}
    if kind == "training_read":  # the matrix, whole, into arrays: what a recommender trains on
        from contextlib import closing

        from domains.ecommerce_ml.db import DATABASE

        with closing(DATABASE.connect()) as conn, conn.cursor() as cur:
            cur.execute("SELECT path FROM dataset_registry WHERE dataset = 'user_item_matrix' AND kind = 'artifact'"
                        " AND version = %s", (day,))
            path = cur.fetchone()[0].removeprefix("file://")
        t0 = time.perf_counter()
        arrays = duckdb.sql(f"SELECT customer_id, article_id, weight FROM read_parquet('{path}')").fetchnumpy()
        return {"seconds": time.perf_counter() - t0, "rows": len(arrays["weight"])}
    first = (date.fromisoformat(day) - timedelta(days=89)).isoformat()
    t0 = time.perf_counter()
    with interactions.open_interactions(first, day, root) as con:
        if kind == "similar_products":  # bought by the buyers of the window's best seller
            rows = con.sql("""
                WITH top AS (SELECT article_id FROM interactions GROUP BY 1 ORDER BY sum(quantity) DESC LIMIT 1),
                buyers AS (SELECT DISTINCT customer_id FROM interactions WHERE article_id = (SELECT * FROM top))
                SELECT i.article_id, count(DISTINCT i.customer_id) AS buyers FROM interactions i
                JOIN buyers USING (customer_id) WHERE i.article_id <> (SELECT * FROM top)
                GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 20""").fetchall()
        else:  # customer_rfm: DAG 4's aggregate per customer over the window
            rows = con.sql("""
                SELECT customer_id, min(day), max(day), count(DISTINCT day), sum(quantity),
                       round(sum(price * quantity), 6) FROM interactions GROUP BY customer_id""").fetchall()
    return {"seconds": time.perf_counter() - t0, "rows": len(rows)}


def _worker(kind: str, day: str, lake_url: str) -> dict:
    from airflow.sdk import ObjectStoragePath

    root = ObjectStoragePath(lake_url + "/")
    lake_dir = Path(lake_url.removeprefix("file://"))
    out = _simulate_day(day, root, lake_dir) if kind == "simulate" else _timed(kind, day, root)
    return {**out, "peak_mb": round(vm_hwm_mb())}


def generate(lake_dir: Path, scale: float, days: int) -> list[dict]:
    from airflow.sdk import ObjectStoragePath

    from domains.ecommerce_ml.local.generator import generate_day

    out = []
    root = ObjectStoragePath(f"file://{lake_dir}/")
    for k in range(days - 1, -1, -1):
        day = LAST - timedelta(days=k)
        counts_file = lake_dir / f"generator-counts-{day}.json"
        if not counts_file.exists():
            t0 = time.perf_counter()
            truths = generate_day(root, day, scale=TX_PER_SCALE * scale,
                                  parts=("articles", "customers", "transactions"))
            counts_file.write_text(json.dumps({**truths.counts, "generate_s": round(time.perf_counter() - t0, 1)}))
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
          f"= {bytes_per_row:.2f}")
    for r in rows:
        predicted = day_volume(date.fromisoformat(r["day"]), int(base))
        print(f"  {r['day']}: transactions {r['rows_read']} (model {predicted}, {r['rows_read'] / predicted - 1:+.1%}),"
              f" bytes/row {r['day_parquet_bytes'] / r['interactions']:.2f}")
    year = [day_volume(LAST.replace(month=1, day=1) + timedelta(days=d), 1000 * TX_PER_SCALE) for d in range(365)]
    tx_year = sum(year)
    print(f"year at 1x: {tx_year / 1e9:.2f} G transactions, {tx_year * out_per_in / 1e9:.2f} G interactions, "
          f"Parquet {tx_year * out_per_in * bytes_per_row / 2**30:.1f} GiB (a day "
          f"{min(year) * out_per_in * bytes_per_row / 2**20:.0f}-{max(year) * out_per_in * bytes_per_row / 2**20:.0f}"
          f" MiB); 10x: {10 * tx_year * out_per_in * bytes_per_row / 2**30:.0f} GiB")


class Platform:
    """The benchmark's PostgreSQL, its data folder kept in the data dir (``--simulate`` fills it, ``--time``
    reads it), and the workers' environment."""

    def __init__(self, data: Path, lake_dir: Path) -> None:
        from devplatform.pg import DOMAIN_EXTENSIONS, PgServer
        from devplatform.ports import free_port

        os.chmod(data, 0o755)
        self.pg = PgServer(data / "pgdata", free_port())
        self.pg.start()
        self.pg.wait_ready()
        secret = data / "password"
        if not secret.exists():
            secret.write_text(secrets.token_urlsafe(12))
        self.pg.ensure_database(DB, "ecommerce_ml", secret.read_text(), DOMAIN_EXTENSIONS)
        self.lake_url = f"file://{lake_dir}"
        self.env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
                    "AIRFLOW_CONN_ECOMMERCE_ML_POSTGRES": json.dumps({
                        "conn_type": "postgres", "host": "127.0.0.1", "port": self.pg.port, "schema": DB,
                        "login": "ecommerce_ml", "password": secret.read_text()}),
                    "AIRFLOW_CONN_ECOMMERCE_ML_LAKE": json.dumps({"conn_type": "fs",
                                                                  "extra": {"base_url": self.lake_url}})}

    def worker(self, kind: str, day: str) -> dict:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.ecommerce_ml_year", "--worker", kind, "--day", day,
                               "--lake", self.lake_url], env=self.env, stdout=subprocess.PIPE, text=True, check=True)
        return json.loads(proc.stdout.strip().splitlines()[-1])


def simulate(data: Path, lake_dir: Path, days: list[dict], scale: float) -> None:
    plat = Platform(data, lake_dir)
    done_file = data / "simulated.json"
    rows = json.loads(done_file.read_text()) if done_file.exists() else []
    print(f"load average at start: {os.getloadavg()}", flush=True)
    try:
        for d in days[len(rows):]:
            rows.append({**plat.worker("simulate", d["day"]), "generate_s": d.get("generate_s")})
            done_file.write_text(json.dumps(rows))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        plat.pg.stop()
    print(f"\n{'day':<11}{'tx in':>10}{'out':>10}{'MiB':>7}{'lake MiB':>9}{'pairs MiB':>10}{'win days':>9}"
          f"{'matrix rows':>12}{'matrix MiB':>11}{'peak MB':>8}")
    for r in rows:
        print(f"{r['day']:<11}{r['rows_read']:>10}{r['interactions']:>10}{r['day_parquet_bytes'] / 2**20:>7.2f}"
              f"{r['lake_interactions_bytes'] / 2**20:>9.1f}{r['lake_partials_bytes'] / 2**20:>10.1f}"
              f"{r['matrix_days']:>9}{r['matrix_rows']:>12}{r['matrix_bytes'] / 2**20:>11.1f}{r['peak_mb']:>8}")
    model(rows, scale)


def time_last(data: Path, lake_dir: Path, days: list[dict], rounds: int) -> None:
    plat = Platform(data, lake_dir)
    first, last = days[0]["day"], days[-1]["day"]
    runs: dict[str, list[dict]] = {k: [] for k in TIMED}
    print(f"load average at start: {os.getloadavg()}", flush=True)
    try:
        for r in range(rounds):
            order = TIMED[r % len(TIMED):] + TIMED[:r % len(TIMED)]
            for kind in order:
                runs[kind].append(plat.worker(kind, first if kind == "step_first" else last))
                print(json.dumps({"round": r, "kind": kind, **runs[kind][-1], "load": os.getloadavg()[0]}),
                      flush=True)
    finally:
        plat.pg.stop()
    print(f"load average at end: {os.getloadavg()}")
    print(f"\n{'what':<18}{'day':>11}{'rows':>12}{'median s':>9}  each round{'':>12}{'peak MB':>8}")
    for kind in TIMED:
        rs = runs[kind]
        print(f"{kind:<18}{first if kind == 'step_first' else last:>11}{rs[0]['rows']:>12}"
              f"{statistics.median(x['seconds'] for x in rs):>9.2f}  {[round(x['seconds'], 2) for x in rs]!s:<22}"
              f"{max(x['peak_mb'] for x in rs):>8}")


def main() -> None:
    p = argparse.ArgumentParser(description="consecutive days of DAG 1 on the lake store")
    p.add_argument("--scale", type=float, default=0.1)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--data-dir", default="/tmp/ecommerce-ml-year")
    p.add_argument("--simulate", action="store_true", help="generate and run the days (not timed)")
    p.add_argument("--time", action="store_true", help="time the first and last day and the queries")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--worker")
    p.add_argument("--day")
    p.add_argument("--lake")
    args = p.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.day, args.lake)))
        return
    data = Path(args.data_dir) / f"year-{args.scale:g}-{args.days}"
    lake_dir = data / "lake"
    lake_dir.mkdir(parents=True, exist_ok=True)
    days = generate(lake_dir, args.scale, args.days)
    if args.simulate:
        simulate(data, lake_dir, days, args.scale)
    if args.time:
        time_last(data, lake_dir, days, args.rounds)
    if not (args.simulate or args.time):
        p.error("say --simulate and/or --time")


if __name__ == "__main__":
    main()
