"""Benchmark (not a test): ecommerce_ml's daily interactions step (DAG 1) against bare DuckDB
over the same generated day, side by side in one run, and its funnels (DAG 7).

    python -m benchmarks.ecommerce_ml --scales 1,3 --rounds 3 --data-dir /tmp/ecom-bench   # 1 = 5 M transactions
    python -m benchmarks.ecommerce_ml --scales 1,10                                         # 10x: ~51 M rows
    python -m benchmarks.ecommerce_ml --scales 10 --data-dir D --no-funnels --generate-only  # write the day only
    python -m benchmarks.ecommerce_ml --scales 10 --data-dir D --no-funnels --rounds 2 \
        --steps project,duckdb_parquet --once duckdb_pg       # now vs A every round, B in the first only

One consistent generated day per scale: ``articles.csv``, ``customers.csv``,
``transactions_train.csv`` and the day's clickstream from ONE catalogue (the generator's
``events_scale`` sizes the events over the same articles), so the transactions reference the
day's articles and the only rejections are the generator's deliberate bad rows (~0.6 %). The
generator writes the day first (not timed; reused from ``--data-dir`` when there).

Measured at each scale, in interleaved rounds (the order rotates each round; medians reported),
each step in its own Python process as an Airflow worker runs a task, peak memory its VmHWM:

- ``project``: ``build_interactions`` + ``load_interactions`` as they are now (DuckDB over the
  CSVs -> the day's Parquet artifact, the rejections COPYed into PostgreSQL, registry rows);
- ``project_before``: the step before migration 0006 (the same build, then the cleaned rows
  COPYed into PostgreSQL's ``interactions`` too, and the registry's hash of the day's table);
- ``duckdb_parquet`` (baseline A): bare DuckDB ``read_csv`` of the three files (the project's
  read options, no line numbers or rejects table) -> the ids of the day's articles and customers
  -> the same filter and grouping of the transactions -> Parquet (no rejections file), same
  DuckDB threads and memory limit;
- ``duckdb_unbounded`` (baseline A'): A with DuckDB's own default memory limit (80 % of the
  machine's RAM) instead of the step's: bare DuckDB as a user runs it. At 10x, A runs out of the
  step's memory (its global sort does not fit), A' is the baseline that finishes;
- ``duckdb_materialised`` (baseline A''): A with the transactions read into a DuckDB table first
  (``CREATE TABLE tx AS SELECT * FROM read_csv(...)``), then the same filter, grouping and sort into
  Parquet, same threads and memory limit: what a DuckDB user writes when the one streaming ``COPY``
  runs out of memory. At 10x both A (512 MB) and A' (18.8 GiB) do: their hash aggregate (42 M groups,
  spilling 5 GB into the temp directory at 512 MB) fails while finalizing its partitions;
- ``duckdb_pg`` (baseline B): A + COPY of its rows into the same ``interactions`` table
  (migration 0003's DDL, recreated in the benchmark's database for ``project_before`` and B).

``funnels`` (``process_interval`` over a whole day of events) runs once per scale after the
rounds (``--no-funnels``: neither generated nor run). Each step's A-over-step ratio is also printed
per round (paired: the same minutes' load). ``import only`` is a worker that only imports the domain (Airflow + DuckDB).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

DAY = date(2024, 6, 3)
TX_PER_SCALE = 5000     # generator scale for 5 M transactions at 1x (about 1,000 per generator scale unit)
EV_PER_SCALE = 1390     # generator events_scale for ~2 M events at 1x
STEPS = ("project", "project_before", "duckdb_parquet", "duckdb_unbounded", "duckdb_materialised", "duckdb_pg")
COLUMNS = ["day", "customer_id", "article_id", "sales_channel_id", "price", "quantity"]
# migration 0003's table (dropped by 0006): what the step loaded before, and baseline B's target
INTERACTIONS_0003 = """
CREATE TABLE IF NOT EXISTS interactions (
    day date NOT NULL, customer_id text NOT NULL, article_id text NOT NULL CHECK (article_id ~ '^[0-9]{10}$'),
    sales_channel_id smallint NOT NULL CHECK (sales_channel_id IN (1, 2)),
    price double precision NOT NULL CHECK (price > 0), quantity integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (day, customer_id, article_id, sales_channel_id, price));
CREATE INDEX IF NOT EXISTS interactions_customer ON interactions (customer_id, day);
"""
READ = ("read_csv('{path}', header = true, columns = {columns}, auto_detect = false, delim = ',',"
        " quote = '\"', escape = '\"')")  # the project's read options, without its line numbers and rejects table
BARE_SQL = """
SELECT DATE '{day}' AS day, customer_id, article_id, sales_channel_id::SMALLINT AS sales_channel_id, price,
       count(*)::INTEGER AS quantity
FROM {tx} tx
WHERE t_dat IS NOT NULL AND customer_id IS NOT NULL AND article_id IS NOT NULL AND price IS NOT NULL
  AND sales_channel_id IS NOT NULL AND t_dat = DATE '{day}'
  AND EXISTS (SELECT 1 FROM article_ids a WHERE a.article_id = tx.article_id)
  AND EXISTS (SELECT 1 FROM customer_ids c WHERE c.customer_id = tx.customer_id)
  AND price > 0 AND sales_channel_id IN (1, 2)
GROUP BY ALL ORDER BY customer_id, article_id, sales_channel_id, price
"""


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


def _pg_connect():
    from domains.ecommerce_ml.db import DATABASE

    conn = DATABASE.connect()
    with conn.cursor() as cur:
        cur.execute(INTERACTIONS_0003)
    conn.commit()
    return conn


def _bare(lake_dir: Path, out: Path, unbounded: bool = False, materialise: bool = False) -> dict:
    """Baseline A: bare DuckDB over the three CSVs -> Parquet (same threads and memory limit);
    ``unbounded``: A', DuckDB's default memory limit (80 % of RAM); ``materialise``: A'', the
    transactions into a table first, then the same query over it."""
    from domains.ecommerce_ml import formats, ingest

    folder = lake_dir / "raw" / "hm" / f"dt={DAY}"

    def read(name: str, fmt) -> str:
        return READ.format(path=folder / name, columns=fmt.duckdb_types())

    with ingest.duckdb_session() as con:
        if unbounded:
            con.execute("RESET memory_limit")  # DuckDB's own default: 80 % of the machine's RAM
        con.execute(f"CREATE TABLE article_ids AS SELECT DISTINCT article_id FROM {read('articles.csv', formats.ARTICLES)}")
        con.execute(f"CREATE TABLE customer_ids AS SELECT DISTINCT customer_id"
                    f" FROM {read('customers.csv', formats.CUSTOMERS)}")
        tx = read("transactions_train.csv", formats.TRANSACTIONS)
        if materialise:
            con.execute(f"CREATE TABLE tx AS SELECT * FROM {tx}")
            tx = "tx"
        sql = BARE_SQL.format(tx=tx, day=DAY)
        con.execute(f"COPY ({sql}) TO '{out}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)")
        rows = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
    return {"interactions": rows}


def _work(kind: str, lake_url: str) -> dict:
    if kind == "import":
        from domains.ecommerce_ml import events, interactions  # noqa: F401

        return {"seconds": 0.0}
    if kind == "sizes":  # what a day takes in PostgreSQL, per table (after the steps above ran)
        with _pg_connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT c.relname, c.reltuples::bigint, pg_total_relation_size(c.oid) FROM pg_class c"
                        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
                        " AND c.relkind = 'r' AND pg_total_relation_size(c.oid) > 65536 ORDER BY 3 DESC")
            return {"tables": {t: {"rows": r, "mb": round(b / 2**20, 1)} for t, r, b in cur.fetchall()}}
    if kind.startswith("duckdb"):
        return _work_bare(kind, lake_url)
    from airflow.sdk import ObjectStoragePath

    from domains.ecommerce_ml.common import Run

    root = ObjectStoragePath(lake_url + "/")
    shutil.rmtree(Path(lake_url.removeprefix("file://")) / "curated", ignore_errors=True)  # every round writes
    if kind == "funnels":
        from domains.ecommerce_ml import events

        t0 = time.perf_counter()
        start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
        out = events.process_interval(Run("ecommerce_ml_events_funnels", "bench", start, start + timedelta(days=1)),
                                      root=root)
        return {"rows": out["events"] + out["rejected_events"], "rejected": out["rejected_events"],
                "seconds": time.perf_counter() - t0, "out": out}
    from domains.ecommerce_ml import interactions

    _pg_connect().close()  # migrations applied (and the 0003 table there) before timing, for every step
    run = Run.for_day("ecommerce_ml_user_item_interactions", DAY, "bench")
    t0 = time.perf_counter()
    built = interactions.build_interactions(run, root)
    t1 = time.perf_counter()
    if kind == "project":
        interactions.load_interactions(run, built, root)
    else:
        _load_before(run, built, root)
    t2 = time.perf_counter()
    return {"rows": built["rows_read"], "interactions": built["interactions"]["rows"],
            "rejected": sum(built["rejected"].values()), "reasons": built["rejected"],
            "seconds": t2 - t0, "build_s": t1 - t0, "load_s": t2 - t1}


def _load_before(run, built: dict, root) -> None:
    """load_interactions as it was before migration 0006 (commit d57fc06): both tables COPYed."""
    from contextlib import closing

    from domains.ecommerce_ml import assets, ingest, lake, registry
    from domains.ecommerce_ml.common import artifact_output, copy_from_duckdb
    from domains.ecommerce_ml.interactions import REJECTION_COLUMNS

    clean, rejected = built["interactions"], built["rejections"]
    with ingest.duckdb_session() as con, closing(_pg_connect()) as conn, \
            lake.readable(root / "curated" / clean["relative"]) as clean_local, \
            lake.readable(root / "curated" / rejected["relative"]) as rejected_local:
        with conn.cursor() as cur:
            cur.execute("DELETE FROM interactions WHERE day = %s", (run.day,))
            cur.execute("DELETE FROM interaction_rejections WHERE day = %s", (run.day,))
            copy_from_duckdb(con, f"SELECT {', '.join(COLUMNS)} FROM read_parquet('{clean_local}')",
                             cur, "interactions", COLUMNS)
            copy_from_duckdb(con, f"SELECT {', '.join(REJECTION_COLUMNS)} FROM read_parquet('{rejected_local}')",
                             cur, "interaction_rejections", REJECTION_COLUMNS)
            outputs = [
                artifact_output(clean, "interactions"),
                registry.table_output(cur, "interactions", "interactions", assets.table("interactions"),
                                      "day = %s", (run.day,)),
                registry.table_output(cur, "interaction_rejections", "interaction_rejections",
                                      assets.table("interaction_rejections"), "day = %s", (run.day,)),
            ]
            for out in outputs:
                registry.register(cur, out, run.day_version, run.dag_id, run.run_id)
        conn.commit()


def _work_bare(kind: str, lake_url: str) -> dict:
    lake_dir = Path(lake_url.removeprefix("file://"))
    if kind == "duckdb_pg":
        conn = _pg_connect()  # the table exists and the schema is migrated before timing
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as tmp:
        t0 = time.perf_counter()
        out = _bare(lake_dir, Path(tmp) / "interactions.parquet", unbounded=kind == "duckdb_unbounded",
                    materialise=kind == "duckdb_materialised")
        t1 = time.perf_counter()
        if kind == "duckdb_pg":
            import duckdb

            csv = Path(tmp) / "rows.csv"
            duckdb.sql(f"COPY (SELECT {', '.join(COLUMNS)} FROM read_parquet('{tmp}/interactions.parquet'))"
                       f" TO '{csv}' (FORMAT csv, HEADER false)")
            from shared.db import _copy_in

            with conn.cursor() as cur, open(csv, "rb") as f:
                cur.execute("DELETE FROM interactions WHERE day = %s", (DAY,))
                _copy_in(cur, f"COPY interactions ({', '.join(COLUMNS)}) FROM STDIN WITH (FORMAT csv)", f)
            conn.commit()
            conn.close()
        t2 = time.perf_counter()
    return {"interactions": out["interactions"], "seconds": t2 - t0, "build_s": t1 - t0, "load_s": t2 - t1}


def measure(kind: str, lake_url: str, env: dict, may_fail: bool = False) -> dict:
    """One step in a worker process. ``may_fail`` (the timed steps): a step that fails (a baseline out
    of memory at 10x) is reported with the last line of its error, and the rounds go on."""
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.ecommerce_ml", "--worker", kind, "--lake", lake_url],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE if may_fail else None, text=True)
    out, err = proc.communicate()
    if proc.returncode != 0:
        if not may_fail:
            raise RuntimeError(f"{kind} worker failed ({proc.returncode})")
        sys.stderr.write(err)
        reason = next((line for line in reversed(err.splitlines()) if "Error" in line or "Exception" in line),
                      f"exit code {proc.returncode}")
        return {"failed": reason.strip()[:160]}
    return json.loads(out.strip().splitlines()[-1])


def generate(lake_dir: Path, scale: float, events: bool = True) -> dict:
    """One consistent day: the H&M files (and the events, for the funnels) from one catalogue.
    Reused when there (a lake generated without events gets them added when asked for)."""
    from airflow.sdk import ObjectStoragePath

    from domains.ecommerce_ml.local.generator import generate_day

    counts_file = lake_dir / "generator-counts.json"
    counts = json.loads(counts_file.read_text()) if counts_file.exists() else None
    parts = ("articles", "customers", "transactions")
    if counts is not None:
        if not events or "events" in counts:
            return counts
        parts = ("events",)
    lake_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    truths = generate_day(ObjectStoragePath(f"file://{lake_dir}/"), DAY, scale=TX_PER_SCALE * scale,
                          parts=parts + (("events",) if events and "events" not in parts else ()),
                          events_scale=EV_PER_SCALE * scale)
    seconds = round(time.perf_counter() - t0)
    counts = {**(counts or {}), **truths.counts,
              **({"generate_s": seconds} if counts is None else {"generate_events_s": seconds})}
    counts_file.write_text(json.dumps(counts))
    return counts


def main() -> None:
    p = argparse.ArgumentParser(description="ecommerce_ml interactions against bare DuckDB, and funnels")
    p.add_argument("--scales", default="1")
    p.add_argument("--rounds", default="3", help="rounds per scale, e.g. 3 or 3,1 (one per scale)")
    p.add_argument("--no-funnels", action="store_true")
    p.add_argument("--worker")
    p.add_argument("--lake")
    p.add_argument("--data-dir", help="keep the generated lakes here and reuse them on the next run")
    p.add_argument("--steps", default=",".join(STEPS), help="steps measured every round (comma-separated)")
    p.add_argument("--once", default="", help="steps measured once, in the first round (e.g. duckdb_pg)")
    p.add_argument("--generate-only", action="store_true", help="write the days into --data-dir and stop")
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.lake)))
        return
    every = tuple(x for x in args.steps.split(",") if x)
    once = tuple(x for x in args.once.split(",") if x)
    if unknown := set(every + once) - set(STEPS):
        p.error(f"unknown steps {sorted(unknown)}; known: {', '.join(STEPS)}")
    if args.generate_only:
        if not args.data_dir:
            p.error("--generate-only needs --data-dir")
        for scale in (float(x) for x in args.scales.split(",")):
            t0 = time.perf_counter()
            counts = generate(Path(args.data_dir) / f"lake-{scale:g}", scale, events=not args.no_funnels)
            print(json.dumps({"scale": scale, "seconds": round(time.perf_counter() - t0, 1), **counts}), flush=True)
        return

    from devplatform.pg import DOMAIN_EXTENSIONS, PgServer
    from devplatform.ports import free_port

    scales = [float(s) for s in args.scales.split(",")]
    rounds = [int(r) for r in args.rounds.split(",")]
    rounds += [rounds[-1]] * (len(scales) - len(rounds))
    tmp = Path(tempfile.mkdtemp(prefix="bench-ecommerce-ml-"))
    os.chmod(tmp, 0o755)
    pg = PgServer(tmp / "pgdata", free_port())
    pg.start()
    pg.wait_ready()
    results = []
    print(f"load average at start: {os.getloadavg()}", flush=True)
    try:
        for scale, n_rounds in zip(scales, rounds, strict=True):
            db = f"ecommerce_ml_{str(scale).replace('.', '_')}"
            password = secrets.token_urlsafe(12)
            pg.ensure_database(db, "ecommerce_ml", password, DOMAIN_EXTENSIONS)  # pgvector, as make start
            lake_dir = (Path(args.data_dir) if args.data_dir else tmp) / f"lake-{scale:g}"
            counts = generate(lake_dir, scale, events=not args.no_funnels)
            raw_mb = sum(f.stat().st_size for f in (lake_dir / "raw" / "hm").rglob("*.csv")) / 2**20
            lake_url = f"file://{lake_dir}"
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
                   "AIRFLOW_CONN_ECOMMERCE_ML_POSTGRES": json.dumps({
                       "conn_type": "postgres", "host": "127.0.0.1", "port": pg.port, "schema": db,
                       "login": "ecommerce_ml", "password": password}),
                   "AIRFLOW_CONN_ECOMMERCE_ML_LAKE": json.dumps({"conn_type": "fs", "extra": {"base_url": lake_url}})}
            base = measure("import", lake_url, env)
            runs: dict[str, list[dict]] = {s: [] for s in every + once}
            for r in range(n_rounds):
                steps = every + (once if r == 0 else ())
                order = steps[r % len(steps):] + steps[:r % len(steps)]
                for step in order:
                    runs[step].append(measure(step, lake_url, env, may_fail=True))
                    print(json.dumps({"scale": scale, "round": r, "step": step, **runs[step][-1],
                                      "load": os.getloadavg()[0]}), flush=True)
            for ref in (s for s in ("duckdb_parquet", "duckdb_unbounded", "duckdb_materialised") if s in every):
                for step in every:  # paired within a round: the same minutes' load
                    paired = [round(a["seconds"] / x["seconds"], 2) if "failed" not in a and "failed" not in x
                              else None for a, x in zip(runs[ref], runs[step], strict=True)]
                    print(json.dumps({"scale": scale, "step": step, f"{ref}_over_step_per_round": paired}), flush=True)
            for step in every + once:
                rs = [x for x in runs[step] if "failed" not in x]
                if not rs:  # failed in every round: reported with its error, no time
                    results.append({"step": step, "scale": f"{scale:g}x", "rows_read": counts["transactions"],
                                    "failed": runs[step][0]["failed"], "rejected": None, "seconds": None,
                                    "peak_mb": None})
                    continue
                med = statistics.median(x["seconds"] for x in rs)
                results.append({"step": step, "scale": f"{scale:g}x", "rows_read": counts["transactions"],
                                "interactions": rs[0]["interactions"], "rejected": rs[0].get("rejected"),
                                "reasons": rs[0].get("reasons"), "seconds": round(med, 1),
                                "all_s": [round(x["seconds"], 1) if "failed" not in x else "failed"
                                          for x in runs[step]],
                                "build_s": round(statistics.median(x["build_s"] for x in rs), 1),
                                "load_s": round(statistics.median(x["load_s"] for x in rs), 1),
                                "peak_mb": round(max(x["peak_mb"] for x in rs)),
                                "import_only_mb": round(base["peak_mb"]), "raw_csv_mb": round(raw_mb),
                                "generate_s": counts.get("generate_s")})
            expected_rejected = sum(counts[k] for k in ("transactions_unknown_article", "transactions_unknown_customer",
                                                        "transactions_other_day"))
            print(json.dumps({"scale": scale, "generator_bad_rows": expected_rejected}), flush=True)
            if not args.no_funnels:
                r = measure("funnels", lake_url, env)
                results.append({"step": "funnels", "scale": f"{scale:g}x", "rows_read": r["rows"],
                                "rejected": r["rejected"], "seconds": round(r["seconds"], 1),
                                "peak_mb": round(r["peak_mb"]), "import_only_mb": round(base["peak_mb"]),
                                "out": r["out"]})
            print(json.dumps({"scale": scale, "postgres": measure("sizes", lake_url, env)["tables"],
                              "lake_curated_mb": round(sum(f.stat().st_size for f in (lake_dir / "curated").rglob(
                                  "*.parquet")) / 2**20, 1)}), flush=True)
            for res in results[-(len(every + once) + (not args.no_funnels)):]:
                print(json.dumps(res), flush=True)
            shutil.rmtree(lake_dir / "curated", ignore_errors=True)  # the next run starts from the raw drops only
            if not args.data_dir:
                shutil.rmtree(lake_dir, ignore_errors=True)
            pg.drop_database(db)
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average at end: {os.getloadavg()}")
    bare: dict[str, float] = {}  # per scale: A where it ran, else A'
    for ref in ("duckdb_materialised", "duckdb_unbounded", "duckdb_parquet"):
        bare.update({r["scale"]: r["seconds"] for r in results if r["step"] == ref and r["seconds"]})
    print("vs bare: against duckdb_parquet (A) where it ran at that scale, else duckdb_unbounded (A'), else"
          " duckdb_materialised (A'')")
    print(f"\n{'step':<16}{'scale':>6}{'rows read':>11}{'out':>10}{'rejected':>9}{'median s':>9}{'build s':>8}"
          f"{'load s':>7}{'vs bare':>8}{'peak MB':>8}")
    for r in results:
        if r.get("failed"):
            print(f"{r['step']:<16}{r['scale']:>6}{r['rows_read']:>11}  failed: {r['failed']}")
            continue
        ratio = f"{bare[r['scale']] / r['seconds']:.2f}x" if r["step"] != "funnels" and r["scale"] in bare else ""
        print(f"{r['step']:<16}{r['scale']:>6}{r['rows_read']:>11}{r.get('interactions') or '':>10}"
              f"{r['rejected'] if r['rejected'] is not None else '':>9}{r['seconds']:>9}{r.get('build_s', ''):>8}"
              f"{r.get('load_s', ''):>7}{ratio:>8}{r['peak_mb']:>8}")


if __name__ == "__main__":
    main()
