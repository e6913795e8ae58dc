"""Benchmark (not a test): a run of consecutive generated days through DAG 1 with the lake as
the interactions' store, to check the size model behind the README's simulated year.

    python -m benchmarks.ecommerce_ml_year --scale 1 --days 30 --data-dir /tmp/ecom-year --simulate
    python -m benchmarks.ecommerce_ml_year --scale 1 --days 30 --data-dir /tmp/ecom-year --report
    python -m benchmarks.ecommerce_ml_year --scale 1 --days 30 --data-dir /tmp/ecom-year --time --rounds 3

``--simulate`` (not timed: run it at low priority) goes through ``--days`` consecutive days ending on
2024-06-03 at ``--scale`` (1 = 5 M transactions a day; articles, customers, transactions of one
catalogue per day): each day is generated, then run through the daily step (``build_interactions`` +
``load_interactions``) and ``build_matrix`` (the user-item matrix over the registered days of its
90-day window), each in its own worker process (its own peak memory, VmHWM). It keeps the lake and
the PostgreSQL data folder in ``--data-dir`` and writes a row per day as soon as the day is done
(``simulated.json``, ``simulated.jsonl``): transactions in, interactions out, the day's Parquet bytes,
the matrix's window, rows, bytes and build mode, the bytes of every lake dataset and of every
PostgreSQL table, both workers' peaks and their seconds (not timings: low priority). A stopped run
resumes after its last day; ``--start K`` reruns from day K. Then (also ``--report``) the table and
the size model (:func:`model`).

``--time`` (run it under ``measure``) restarts that PostgreSQL and times, in interleaved rounds
(medians), each in its own worker: the daily step on the first and on the last simulated day (a
rerun: the same work, the content unchanged), the matrix of the last day built incrementally from
the day before's (``build_matrix``), the same matrix from every partial of the window
(``incremental=False``) and regrouped from every interactions file of the window (the rebuild
before the partials), and what the domain's users run on the last day over the window:
the recommendation training read (``interactions.open_matrix``: the matrix by customer range as codes
and weights, one popularity pass), similar products (articles bought
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
TIMED = ("step_first", "step_last", "matrix_incremental", "matrix_partials", "matrix_full", "training_read",
         "similar_products", "customer_rfm")


def _run(day: str):
    from domains.ecommerce_ml.common import Run

    return Run.for_day("ecommerce_ml_user_item_interactions", date.fromisoformat(day), "year")


def _dir_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.exists() else 0


def lake_sizes(lake_dir: Path) -> dict:
    """Bytes per lake folder: each curated dataset and the raw H&M drops."""
    curated = lake_dir / "curated"
    out = {f"lake_{d.name}_bytes": _dir_bytes(d) for d in sorted(curated.iterdir()) if d.is_dir()} \
        if curated.exists() else {}
    return {**out, "lake_raw_hm_bytes": _dir_bytes(lake_dir / "raw" / "hm")}


def pg_sizes() -> dict:
    """PostgreSQL bytes per table of the domain's database (heap, indexes and TOAST) and the database's."""
    from contextlib import closing

    from domains.ecommerce_ml.db import DATABASE

    with closing(DATABASE.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c"
                    " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') ORDER BY 1")
        tables = {name: int(size) for name, size in cur.fetchall()}
        cur.execute("SELECT pg_database_size(current_database())")
        return {"pg_tables_bytes": tables, "pg_database_bytes": int(cur.fetchone()[0])}


def _simulate_step(day: str, root, lake_dir: Path) -> dict:
    """The daily step (``build_interactions`` + ``load_interactions``) of one simulated day."""
    from domains.ecommerce_ml import interactions

    run = _run(day)
    t0 = time.perf_counter()
    built = interactions.build_interactions(run, root)
    interactions.load_interactions(run, built, root)
    seconds = time.perf_counter() - t0
    return {"day": day, "rows_read": built["rows_read"], "interactions": built["interactions"]["rows"],
            "rejected": sum(built["rejected"].values()),
            "day_parquet_bytes": (lake_dir / "curated" / built["interactions"]["relative"]).stat().st_size,
            "step_s": round(seconds, 2), **lake_sizes(lake_dir), **pg_sizes()}


def _simulate_matrix(day: str, root, lake_dir: Path) -> dict:
    """The day's user-item matrix (``build_matrix``), then the stores' sizes after the day."""
    from domains.ecommerce_ml import interactions

    t0 = time.perf_counter()
    matrix = interactions.build_matrix(_run(day), root)
    seconds = time.perf_counter() - t0
    return {"matrix_days": matrix["days"], "matrix_rows": matrix["rows"],
            "matrix_bytes": Path(matrix["path"].removeprefix("file://")).stat().st_size,
            "matrix_s": round(seconds, 2), **{k: v for k, v in matrix.items() if k == "mode"},
            **lake_sizes(lake_dir), **pg_sizes()}


def _window_files(last: str, days: int = 90) -> list[str]:
    from domains.ecommerce_ml import interactions

    first = date.fromisoformat(last) - timedelta(days=days - 1)
    return [str(p.path) for _, p in interactions.interaction_files(first, last)]


def _timed(kind: str, day: str, root) -> dict:
    """One timed piece of work (``--time``); the seconds cover the work only, not the imports."""

    from domains.ecommerce_ml import ingest, interactions

    run = _run(day)
    if kind.startswith("step"):
        t0 = time.perf_counter()
        built = interactions.build_interactions(run, root)
        interactions.load_interactions(run, built, root)
        return {"seconds": time.perf_counter() - t0, "rows": built["rows_read"]}
    if kind in ("matrix_incremental", "matrix_partials"):  # from the previous day's matrix / every partial
        t0 = time.perf_counter()
        out = interactions.build_matrix(run, root, incremental=kind == "matrix_incremental")
        return {"seconds": time.perf_counter() - t0, "rows": out["rows"], "days": out["days"], "mode": out["mode"]}
    if kind == "matrix_full":
        files = _window_files(day)
        with ingest.duckdb_session() as con, tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            con.execute(f"COPY ({interactions.full_matrix_sql(run.day, files)}) TO '{tmp}/m.parquet'"
                        " (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)")
            rows = con.execute(f"SELECT count(*) FROM read_parquet('{tmp}/m.parquet')").fetchone()[0]
            return {"seconds": time.perf_counter() - t0, "rows": rows, "days": len(files)}
    if kind == "training_read":  # the matrix as a recommender's input: integer codes and weights, by customer range
        import numpy as np

        t0 = time.perf_counter()
        with interactions.open_matrix(day, root) as matrix:
            # what one pass of training needs per batch; here each article's summed weight (a popularity model)
            popularity, rows, customers = np.zeros(len(matrix.articles)), 0, 0
            for batch in matrix.batches():
                popularity += np.bincount(batch.article, weights=batch.weight, minlength=len(popularity))
                rows, customers = rows + len(batch.weight), customers + len(batch.customers)
        return {"seconds": time.perf_counter() - t0, "rows": rows, "customers": customers,
                "articles": len(popularity), "batches_weight": round(float(popularity.sum()), 3)}
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
    if kind == "sim_step":
        out = _simulate_step(day, root, lake_dir)
    elif kind == "sim_matrix":
        out = _simulate_matrix(day, root, lake_dir)
    elif kind == "generate":  # the next day's drops, written while the current day runs (not measured)
        return generate(lake_dir, float(os.environ["ECOM_YEAR_SCALE"]), day)
    else:
        out = _timed(kind, day, root)
    return {**out, "peak_mb": round(vm_hwm_mb())}


def day_list(days: int) -> list[str]:
    return [(LAST - timedelta(days=k)).isoformat() for k in range(days - 1, -1, -1)]


def generate(lake_dir: Path, scale: float, day: str) -> dict:
    """One day's drops (articles, customers, transactions), generated once; its counts kept next to them."""
    from airflow.sdk import ObjectStoragePath

    from domains.ecommerce_ml.local.generator import generate_day

    counts_file = lake_dir / f"generator-counts-{day}.json"
    if not counts_file.exists():
        t0 = time.perf_counter()
        truths = generate_day(ObjectStoragePath(f"file://{lake_dir}/"), date.fromisoformat(day),
                              scale=TX_PER_SCALE * scale, parts=("articles", "customers", "transactions"))
        counts_file.write_text(json.dumps({**truths.counts, "generate_s": round(time.perf_counter() - t0, 1)}))
        print(f"generated {day}", flush=True)
    return {"day": day, **json.loads(counts_file.read_text())}


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares y = a + b x: (a, b)."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return my - b * mx, b


def _power_fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """y = a x^b fitted in log-log: (a, b)."""
    import math

    a, b = _fit([math.log(x) for x in xs], [math.log(y) for y in ys])
    return math.exp(a), b


def _deltas(rows: list[dict], key: str) -> list[float]:
    """What each day added to a cumulative size (the first day: its size)."""
    return [r[key] - (rows[i - 1][key] if i else 0) for i, r in enumerate(rows)]


def model(rows: list[dict], scale: float, window: int = 90, keep_matrices: int = 7) -> None:
    """The year from the simulated days. Transactions a day follow the generator's seasonality
    (``day_volume``, checked per day); every store's bytes per transaction in are measured per day and
    applied to the year's volume; the matrix (one row per pair bought in the window) is fitted against
    its window's days (a power law) and taken at the full window. The seconds are the simulation's own
    (low priority, a loaded machine: not timings), fitted against the day and the matrix's rows."""
    from domains.ecommerce_ml.local.generator import day_volume

    base = 1000 * TX_PER_SCALE * scale
    tx = [r["rows_read"] for r in rows]
    out_per_in = sum(r["interactions"] for r in rows) / sum(tx)
    bytes_per_row = sum(r["day_parquet_bytes"] for r in rows) / sum(r["interactions"] for r in rows)
    print(f"\nmodel: interactions out / transactions in = {out_per_in:.3f}; Parquet bytes per interaction row "
          f"= {bytes_per_row:.2f}")
    for r in rows:
        predicted = day_volume(date.fromisoformat(r["day"]), int(base))
        print(f"  {r['day']}: transactions {r['rows_read']} (model {predicted}, {r['rows_read'] / predicted - 1:+.1%}),"
              f" bytes/row {r['day_parquet_bytes'] / r['interactions']:.2f}")
    year = [day_volume(LAST.replace(month=1, day=1) + timedelta(days=d), int(base)) for d in range(365)]
    tx_year, tx_window = sum(year), sum(sorted(year)[-window:])  # the window's bytes at the year's busiest
    per_tx = {key: sum(_deltas(rows, key)) / sum(tx) for key in
              ("lake_interactions_bytes", "lake_interaction_rejections_bytes", "lake_user_item_day_bytes",
               "lake_raw_hm_bytes") if all(key in r for r in rows)}
    pg = _deltas(rows, "pg_database_bytes")[1:]
    pg_per_tx = sum(pg) / sum(tx[1:]) if pg else 0.0
    tables = sorted(rows[-1]["pg_tables_bytes"])
    grow = {t: (rows[-1]["pg_tables_bytes"][t] - rows[0]["pg_tables_bytes"].get(t, 0)) / max(1, len(rows) - 1)
            for t in tables}
    print(f"\nyear at {scale:g}x: {tx_year / 1e9:.3f} G transactions, {tx_year * out_per_in / 1e9:.3f} G interactions")
    print(f"{'store':<34}{'bytes/tx':>9}{'a day MiB':>10}{'year GiB':>9}  kept")
    for key, b in per_tx.items():
        kept = "90-day window" if key == "lake_user_item_day_bytes" else "all days"
        total = b * (tx_window if key == "lake_user_item_day_bytes" else tx_year)
        print(f"{key.removeprefix('lake_').removesuffix('_bytes'):<34}{b:>9.2f}{b * base / 2**20:>10.1f}"
              f"{total / 2**30:>9.2f}  {kept}")
    # rows per window day as a power law over every day; bytes per row from the latest day (the matrix with its
    # purchases column, which the days before the incremental build did not have)
    built = [r for r in rows if "matrix_rows" in r]  # the days a matrix was built (--matrix-every)
    ra, rb = _power_fit([r["matrix_days"] for r in built], [r["matrix_rows"] for r in built])
    per_row = built[-1]["matrix_bytes"] / built[-1]["matrix_rows"]
    full = ra * window ** rb * per_row
    print(f"{'user_item_matrix':<34}{'':>9}{full / 2**20:>10.1f}{keep_matrices * full / 2**30:>9.2f}  {keep_matrices}"
          f" versions; rows = {ra:.0f} x days^{rb:.3f} fitted on {len(built)} matrices ({ra * window ** rb / 1e6:.1f} M rows"
          f" at {window} days), {per_row:.2f} bytes a row (the last day's file)")
    print(f"{'PostgreSQL database':<34}{pg_per_tx:>9.3f}{pg_per_tx * base / 2**20:>10.1f}"
          f"{(rows[0]['pg_database_bytes'] + pg_per_tx * tx_year) / 2**30:>9.2f}  all days"
          f" (day 1: {rows[0]['pg_database_bytes'] / 2**20:.0f} MiB)")
    for t in tables:
        if abs(grow[t]) >= 2**16:
            print(f"  {t:<32}{'':>9}{grow[t] / 2**20:>10.2f}{grow[t] * 365 / 2**30:>9.2f}  (bytes a day, days 1-N)")
    days = list(range(1, len(rows) + 1))
    sa, sb = _fit(days, [r["step_s"] for r in rows])
    print(f"\nunmeasured seconds (low priority, load {min(r.get('load', 0) for r in rows):.1f}-"
          f"{max(r.get('load', 0) for r in rows):.1f}; the load decides them, --time measures): daily step median"
          f" {statistics.median(r['step_s'] for r in rows):.0f} s, fit {sa:.1f} + {sb:.2f} x day;"
          f" peak MB step {min(r['step_peak_mb'] for r in rows)}-"
          f"{max(r['step_peak_mb'] for r in rows)}, matrix {min(r['matrix_peak_mb'] for r in built)}-"
          f"{max(r['matrix_peak_mb'] for r in built)}")
    inc = [r for r in rows if r.get("mode") == "incremental"]
    if len(inc) >= 2:
        xa, xb = _fit([r["matrix_rows"] / 1e6 for r in inc], [r["matrix_s"] for r in inc])
        print(f"incremental matrix ({len(inc)} days) = {xa:.1f} + {xb:.2f} x M rows (at {window} days:"
              f" {xa + xb * ra * window ** rb / 1e6:.0f} s)")


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

    def worker(self, kind: str, day: str, env: dict | None = None) -> dict:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.ecommerce_ml_year", "--worker", kind, "--day", day,
                               "--lake", self.lake_url], env=env or self.env, stdout=subprocess.PIPE, text=True,
                              check=True)
        return json.loads(proc.stdout.strip().splitlines()[-1])


def simulate(data: Path, lake_dir: Path, days: list[str], scale: float, start: int | None = None,
             matrix_every: int = 1) -> None:
    """Each day in order: generate it, then the daily step and the matrix, each in its own worker (its
    own peak memory). A row per day goes to ``simulated.json`` (and ``simulated.jsonl``) as soon as the day
    is done, so a stopped run keeps its days and a rerun resumes after the last one; ``start`` (1-based)
    reruns from that day on (the steps are idempotent: a day's rerun replaces its registry rows).

    ``matrix_every`` k > 1 builds the matrix only on every k-th day (day number k, 2k, ...) and on the last:
    its incremental build merges the partials of every day since the previous matrix (what
    ``build_matrix`` does after a missed day), so the days in between cost the generation and the step only;
    0: no matrix at all (the days' step and sizes only).
    The next day is generated in its own process while the current one runs (the generator is the
    simulation's, not the project's: its seconds overlap the step's, which are not timings anyway)."""
    from concurrent.futures import ThreadPoolExecutor

    plat = Platform(data, lake_dir)
    done_file = data / "simulated.json"
    rows = json.loads(done_file.read_text()) if done_file.exists() else []
    if start is not None:
        rows = rows[:start - 1]
    print(f"load average at start: {os.getloadavg()}; {len(rows)} days done", flush=True)
    todo = days[len(rows):]
    env = {**plat.env, "ECOM_YEAR_SCALE": str(scale)}
    with ThreadPoolExecutor(1) as pool:
        def gen_next(day: str):
            return pool.submit(lambda: plat.worker("generate", day, env))
        pending = gen_next(todo[0]) if todo else None
        try:
            for i, day in enumerate(todo):
                gen = pending.result()
                pending = gen_next(todo[i + 1]) if i + 1 < len(todo) else None
                number = days.index(day) + 1
                step = plat.worker("sim_step", day)
                row = {**step, "step_peak_mb": step.pop("peak_mb")}
                if matrix_every and (number % matrix_every == 0 or day == days[-1]):
                    matrix = plat.worker("sim_matrix", day)
                    row.update({**matrix, "matrix_peak_mb": matrix.pop("peak_mb")})
                rows.append({**row, "generate_s": gen.get("generate_s"),
                             "finished": time.strftime("%H:%M:%S", time.gmtime()), "load": os.getloadavg()[0]})
                done_file.write_text(json.dumps(rows))
                with (data / "simulated.jsonl").open("a") as f:
                    f.write(json.dumps(rows[-1]) + "\n")
                print(json.dumps(rows[-1]), flush=True)
        finally:
            if pending is not None:
                pending.cancel()
            plat.pg.stop()
    report(rows, scale)


def report(rows: list[dict], scale: float) -> None:
    print(f"\n{'day':<11}{'tx in':>9}{'out':>9}{'day MiB':>8}{'lake MiB':>9}{'pairs MiB':>10}{'mtx MiB':>8}"
          f"{'mtx rows':>10}{'PG MiB':>7}{'step s':>7}{'mtx s':>7}{'step MB':>8}{'mtx MB':>7}{'load':>5}")
    for r in rows:
        lake = sum(v for k, v in r.items() if k.startswith("lake_") and k != "lake_raw_hm_bytes")
        print(f"{r['day']:<11}{r['rows_read']:>9}{r['interactions']:>9}{r['day_parquet_bytes'] / 2**20:>8.1f}"
              f"{lake / 2**20:>9.0f}{r.get('lake_user_item_day_bytes', 0) / 2**20:>10.0f}"
              f"{r.get('lake_user_item_matrix_bytes', 0) / 2**20:>8.0f}{r.get('matrix_rows', '-'):>10}"
              f"{r['pg_database_bytes'] / 2**20:>7.0f}{r['step_s']:>7.1f}{r.get('matrix_s', float('nan')):>7.1f}"
              f"{r['step_peak_mb']:>8}{r.get('matrix_peak_mb', '-'):>7}{r.get('load', 0):>5.1f}")
    model(rows, scale)


def time_last(data: Path, lake_dir: Path, days: list[str], rounds: int, kinds: tuple[str, ...] = TIMED) -> None:
    """``days``: the first day and the last simulated one."""
    plat = Platform(data, lake_dir)
    first, last = days[0], days[-1]
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    print(f"load average at start: {os.getloadavg()}", flush=True)
    try:
        for r in range(rounds):
            order = kinds[r % len(kinds):] + kinds[:r % len(kinds)]
            for kind in order:
                runs[kind].append(plat.worker(kind, first if kind == "step_first" else last))
                print(json.dumps({"round": r, "kind": kind, **runs[kind][-1], "load": os.getloadavg()[0]}),
                      flush=True)
    finally:
        plat.pg.stop()
    print(f"load average at end: {os.getloadavg()}")
    print(f"\n{'what':<18}{'day':>11}{'rows':>12}{'median s':>9}  each round{'':>12}{'peak MB':>8}")
    for kind in kinds:
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
    p.add_argument("--start", type=int, help="--simulate: rerun from this day (1-based) on")
    p.add_argument("--matrix-every", type=int, default=1,
                   help="--simulate: build the matrix on every k-th day and the last only (0: never)")
    p.add_argument("--kinds", help=f"--time: a comma-separated subset of {','.join(TIMED)}")
    p.add_argument("--report", action="store_true", help="the table and the model from the simulated days")
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
    days = day_list(args.days)
    if args.simulate:
        simulate(data, lake_dir, days, args.scale, args.start, args.matrix_every)
    if args.report:
        report(json.loads((data / "simulated.json").read_text()), args.scale)
    if args.time:
        done = json.loads((data / "simulated.json").read_text())
        time_last(data, lake_dir, [generate(lake_dir, args.scale, d)["day"] for d in (days[0], done[-1]["day"])],
                  args.rounds, tuple(args.kinds.split(",")) if args.kinds else TIMED)
    if not (args.simulate or args.time or args.report):
        p.error("say --simulate, --report and/or --time")


if __name__ == "__main__":
    main()
