"""Benchmark (not a test): aurora's feature engineering and predictions at scale.

One process, on its own embedded PostgreSQL 18, domain Redis (ACL user ``aurora``) and Kafka
stand-in, all on free ports: a generated dataset of USERS users and DAYS days is loaded, the
three models are trained on a sample of users (not timed: ml_training_pipeline's job), then
the task bodies of ``feature_engineering_pipeline`` and ``prediction_pipeline`` run one
after the other, as their tasks would (the four feature groups, the feature store, the
cohort, the three predictions, save + outbox, Redis cache, publish). For each step: wall
time, rows out and rows/s, and the process's peak RSS so far (``ru_maxrss``: it only grows,
so a step's figure is the peak of everything up to it).

``python -m benchmarks.aurora_features [USERS] [DAYS]`` (default 100000 31).

``python -m benchmarks.aurora_features --groups [USERS] [DAYS]`` (default 20000 31): the four
feature groups side by side on one database, each path in a fresh child process (so its peak
RSS, ``VmHWM``, is the step's own: imports + the step, no data generation; ``RSS before``:
the child's ``VmRSS`` once imported and connected, before the step):

- old: what ``group_features`` did before, the whole history read (``read_history`` with its
  default ``tables=None``) and every feature computed (``user_features``), then the group's
  columns kept, per chunk of users;
- new: ``feature_store.group_features``, only the group's tables (and event types) read and only
  its features computed.

Both frames must be equal exactly (checked); per group: seconds, users/s, peak RSS.

``python -m benchmarks.aurora_features --reader [USERS] [DAYS]`` (default 20000 31): the history
reader, old vs new, on one database, each step and path in a fresh child process (seconds, rows,
``VmHWM``), the frames checked equal exactly:

- old: ``read_history`` as it was, rows fetched as Python objects (``pd.DataFrame(cur.fetchall())``
  and ``pd.to_datetime(utc=True)``); new: ``history.read_history`` (COPY ... CSV into ``pd.read_csv``);
- per table: that table of every user over the prediction window (one query);
- per feature group: ``feature_store.group_features`` (its reads and its features, per chunk of
  users), the old path the same loop with the old reader;
- training: the whole history of the DAYS days, every table (as ``training``/``models`` read it).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing, contextmanager
from datetime import date
from pathlib import Path

import pandas as pd

from devplatform.domain_redis import DomainRedis
from devplatform.kafka_standin import KafkaStandIn
from devplatform.pg import PgServer
from devplatform.ports import free_port

END = date(2026, 11, 30)
AS_OF_FEATURES = pd.Timestamp("2026-11-30T06:00:00Z")
AS_OF_PREDICTIONS = pd.Timestamp("2026-11-30T06:00:00Z")
TRAIN_SAMPLE_USERS = 3000


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def proc_status_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process from /proc: unlike ``ru_maxrss``,
    which a child keeps from its parent across ``exec``, these belong to this process's own memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def set_connection(conn_id: str, **fields) -> None:
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(fields)


def step(results: list, name: str, fn, rows_of=lambda r: r):
    t0 = time.perf_counter()
    out = fn()
    took = time.perf_counter() - t0
    rows = rows_of(out)
    results.append((name, took, rows, peak_mb()))
    print(f"  {name:34s} {took:8.1f} s  {rows:>10,} rows  {rows / took if took else 0:>10,.0f} rows/s"
          f"  peak RSS {peak_mb():8.0f} MB", flush=True)
    return out


@contextmanager
def aurora_platform(tmp: Path):
    """Embedded PostgreSQL with the aurora database, the domain Redis and the Kafka stand-in, on
    free ports, wired to aurora's connections (environment variables: child processes see them)."""
    os.environ.setdefault("AIRFLOW_HOME", str(tmp / "airflow"))
    pg = PgServer(tmp / "pgdata", free_port())
    redis_proc = None
    kafka = KafkaStandIn(tmp / "kafka")
    try:
        pg.start()
        pg.wait_ready()
        password = secrets.token_urlsafe(12)
        pg.ensure_database("aurora", "aurora", password)
        set_connection("aurora_postgres", conn_type="postgres", host="127.0.0.1", port=pg.port, schema="aurora",
                       login="aurora", password=password)
        redis_pw = secrets.token_urlsafe(12)
        redis = DomainRedis(free_port(), tmp / "redis", secrets.token_urlsafe(12), {"aurora": redis_pw})
        redis.prepare()
        redis_proc = subprocess.Popen(redis.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        redis.wait_ready()
        set_connection("aurora_redis", conn_type="redis", host="127.0.0.1", port=redis.port, login="aurora",
                       password=redis_pw)
        bootstrap = kafka.start()
        set_connection("aurora_kafka", conn_type="kafka",
                       extra={"bootstrap.servers": bootstrap, "enable.idempotence": True, "message.timeout.ms": 60000})
        yield f"PostgreSQL {pg.port}, Redis {redis.port}, Kafka {bootstrap}"
    finally:
        kafka.stop()
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(timeout=10)
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def load_generated(users: int, days: int) -> None:
    from domains.aurora.db import DATABASE
    from domains.aurora.local.generator import generate, load

    t0 = time.perf_counter()
    ds = generate(users=users, days=days, end=END)
    counts = ds.row_counts()
    with closing(DATABASE.connect()) as conn:
        load(conn, ds)
    del ds
    shown = {k: counts[k] for k in ("users", "life_events", "sleep_records", "exercise_sessions",
                                    "social_connections")}
    print(f"  data generated and loaded in {time.perf_counter() - t0:.0f} s (not timed below): {json.dumps(shown)}",
          flush=True)


def old_group_features(conn, group: str, as_of, users: list[int]) -> pd.DataFrame:
    """What ``feature_store.group_features`` did before (its code as it was): per chunk of users,
    the whole history read and every feature computed, then the group's columns kept."""
    from domains.aurora.feature_store import CHUNK_USERS, FEATURE_GROUPS
    from domains.aurora.features import prediction_window, user_features
    from domains.aurora.history import read_history

    columns = list(FEATURE_GROUPS[group])
    start, end = prediction_window(as_of)
    parts = []
    for i in range(0, len(users), CHUNK_USERS):
        ids = users[i:i + CHUNK_USERS]
        history = read_history(conn, start, end, ids, tables=None)
        parts.append(user_features(history, end, ids)[columns])
    return pd.concat(parts)


def run_group(path: str, group: str) -> dict:
    """In a fresh child process: one group's features of every active user, by ``path``."""
    from domains.aurora.db import DATABASE
    from domains.aurora.feature_store import group_features, user_ids

    with closing(DATABASE.connect()) as conn:  # connects and checks the migrations: not timed
        users = user_ids(conn)
        rss_before = proc_status_mb("VmRSS")
        t0 = time.perf_counter()
        if path == "old":
            frame = old_group_features(conn, group, AS_OF_FEATURES, users)
        else:
            frame = group_features(conn, group, AS_OF_FEATURES, users)
        took = time.perf_counter() - t0
    return {"seconds": took, "users": len(frame), "rss_before_mb": rss_before, "peak_mb": proc_status_mb("VmHWM"),
            "frame": frame}


def groups_side_by_side(users: int = 20_000, days: int = 31) -> list[dict]:
    from domains.aurora.feature_store import FEATURE_GROUPS

    rows: list[dict] = []
    with aurora_platform(Path(tempfile.mkdtemp(prefix="aurora-bench-"))) as where:
        print(f"aurora feature groups, old vs new: {users:,} users, {days} days ending {END} ({where})", flush=True)
        load_generated(users, days)
        spawn = multiprocessing.get_context("spawn")
        print(f"  {'group':9s} {'path':4s} {'seconds':>8s} {'users':>8s} {'users/s':>8s} {'RSS before':>11s}"
              f" {'peak RSS':>9s}", flush=True)
        for group in FEATURE_GROUPS:
            frames = {}
            for path in ("old", "new"):
                with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                    out = pool.submit(run_group, path, group).result()
                frames[path] = out.pop("frame")
                row = {"group": group, "path": path, **out, "users_per_s": out["users"] / out["seconds"]}
                rows.append(row)
                print(f"  {group:9s} {path:4s} {row['seconds']:8.1f} {row['users']:8,} {row['users_per_s']:8,.0f}"
                      f" {row['rss_before_mb']:8,.0f} MB {row['peak_mb']:6,.0f} MB", flush=True)
            pd.testing.assert_frame_equal(frames["new"], frames["old"], check_exact=True)
            print(f"  {group:9s} old and new frames equal exactly ({len(frames['new']):,} x "
                  f"{frames['new'].shape[1]}, {int(frames['new'].isna().sum().sum()):,} NaN)", flush=True)
        for path in ("old", "new"):
            total = sum(r["seconds"] for r in rows if r["path"] == path)
            n = rows[0]["users"]
            print(f"  all four groups, {path}: {total:.1f} s ({n / total:,.0f} users/s of the whole feature step)")
    return rows


def run_reader(path: str, what: str, days: int) -> dict:
    """In a fresh child process: one reader step (``table:<name>``, ``group:<name>`` or
    ``training``) by ``path`` (old or new); its frames come back for the equality check."""
    from domains.aurora.db import DATABASE
    from domains.aurora.feature_store import CHUNK_USERS, FEATURE_GROUPS, user_ids
    from domains.aurora.features import history_needs, prediction_window, user_features
    from domains.aurora.history import read_history

    # the old reader is the test's oracle (one copy): rows fetched as Python objects, then framed
    from domains.aurora.tests.test_read_history import old_read_history

    read = old_read_history if path == "old" else read_history
    kind, _, name = what.partition(":")
    start, end = prediction_window(AS_OF_FEATURES)
    with closing(DATABASE.connect()) as conn:  # connects and checks the migrations: not timed
        users = user_ids(conn)
        rss_before = proc_status_mb("VmRSS")
        t0 = time.perf_counter()
        if kind == "table":
            frames = read(conn, start, end, tables=[name]).frames()
        elif kind == "training":
            as_of = pd.Timestamp(END, tz="UTC")
            frames = read(conn, as_of - pd.Timedelta(days=days), as_of).frames()
        else:
            columns = list(FEATURE_GROUPS[name])
            needs = history_needs(columns)
            parts = [user_features(read(conn, start, end, users[i:i + CHUNK_USERS], tables=needs.tables,
                                        event_types=needs.event_types), end, users[i:i + CHUNK_USERS], columns)
                     for i in range(0, len(users), CHUNK_USERS)]
            frames = {"features": pd.concat(parts)}
        took = time.perf_counter() - t0
    return {"seconds": took, "rows": sum(len(f) for f in frames.values()), "rss_before_mb": rss_before,
            "peak_mb": proc_status_mb("VmHWM"), "frames": frames}


def reader_side_by_side(users: int = 20_000, days: int = 31) -> list[dict]:
    from domains.aurora.feature_store import FEATURE_GROUPS
    from domains.aurora.history import TABLES

    rows: list[dict] = []
    with aurora_platform(Path(tempfile.mkdtemp(prefix="aurora-bench-"))) as where:
        print(f"aurora read_history, old vs new: {users:,} users, {days} days ending {END} ({where})", flush=True)
        load_generated(users, days)
        spawn = multiprocessing.get_context("spawn")
        print(f"  {'step':16s} {'path':4s} {'seconds':>8s} {'rows':>10s} {'rows/s':>10s} {'RSS before':>11s}"
              f" {'peak RSS':>9s}", flush=True)
        steps = [f"table:{t}" for t in TABLES] + [f"group:{g}" for g in FEATURE_GROUPS] + ["training"]
        for what in steps:
            frames = {}
            for path in ("old", "new"):
                with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                    out = pool.submit(run_reader, path, what, days).result()
                frames[path] = out.pop("frames")
                row = {"step": what, "path": path, **out}
                rows.append(row)
                print(f"  {what:16s} {path:4s} {row['seconds']:8.2f} {row['rows']:10,} "
                      f"{row['rows'] / row['seconds']:10,.0f} {row['rss_before_mb']:8,.0f} MB "
                      f"{row['peak_mb']:6,.0f} MB", flush=True)
            assert list(frames["new"]) == list(frames["old"]), what
            for name, frame in frames["old"].items():
                pd.testing.assert_frame_equal(frames["new"][name], frame, check_exact=True, obj=f"{what} {name}")
            print(f"  {what:16s} old and new frames equal exactly", flush=True)
        for path in ("old", "new"):
            total = sum(r["seconds"] for r in rows if r["path"] == path and r["step"].startswith("group:"))
            print(f"  all four groups, {path}: {total:.1f} s")
    return rows


def main(users: int = 100_000, days: int = 31) -> None:
    with aurora_platform(Path(tempfile.mkdtemp(prefix="aurora-bench-"))) as where:
        from domains.aurora import feature_store, models, predictions, registry
        from domains.aurora.db import DATABASE
        from domains.aurora.features import training_sets
        from domains.aurora.history import read_history

        print(f"aurora benchmark: {users:,} users, {days} days ending {END} ({where})", flush=True)
        load_generated(users, days)
        t0 = time.perf_counter()
        with closing(DATABASE.connect()) as conn:
            as_of = pd.Timestamp(END, tz="UTC")
            sample = list(range(1, min(users, TRAIN_SAMPLE_USERS) + 1))
            sets = training_sets(read_history(conn, as_of - pd.Timedelta(days=days), as_of, sample))
            for target in models.MODEL_NAMES:
                entry = registry.train_target(conn, target, sets[target], "bench", as_of)
                if not entry.is_current:
                    raise SystemExit(f"{target}: the trained model was not promoted: {entry.decision}")
        print(f"  models trained on {len(sample):,} users in {time.perf_counter() - t0:.0f} s (not timed below)",
              flush=True)

        results: list = []
        t_all = time.perf_counter()
        print("feature_engineering_pipeline", flush=True)
        for group in feature_store.FEATURE_GROUPS:
            step(results, f"compute_group({group})",
                 lambda g=group: feature_store.compute_group(g, AS_OF_FEATURES), lambda r: r["users"])
        step(results, "update_feature_store", lambda: feature_store.update_feature_store(AS_OF_FEATURES),
             lambda r: r["users"])
        t_features = time.perf_counter() - t_all
        print("prediction_pipeline", flush=True)
        t1 = time.perf_counter()
        step(results, "get_active_users", lambda: predictions.select_users(AS_OF_PREDICTIONS), lambda r: r["users"])
        for target in predictions.TARGETS:
            step(results, f"predict_target({target})",
                 lambda t=target: predictions.predict_target(t, AS_OF_PREDICTIONS), lambda r: r["rows"])
        step(results, "save_predictions (+ outbox)", lambda: predictions.save_predictions(AS_OF_PREDICTIONS),
             lambda r: r["rows"])
        step(results, "cache_predictions", lambda: predictions.cache_predictions(AS_OF_PREDICTIONS),
             lambda r: r["users"])
        step(results, "publish_prediction_events", predictions.publish_events, lambda r: r["published"])
        t_predictions = time.perf_counter() - t1
        feature_users = next(r[2] for r in results if r[0] == "update_feature_store")
        prediction_rows = next(r[2] for r in results if r[0].startswith("save_predictions"))
        print(f"feature engineering: {t_features:.1f} s for {feature_users:,} users "
              f"({feature_users / t_features:,.0f} users/s)")
        print(f"predictions: {t_predictions:.1f} s for {prediction_rows:,} prediction rows "
              f"({prediction_rows / t_predictions:,.0f} rows/s)")
        print(f"peak RSS of the whole run: {peak_mb():,.0f} MB")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--groups"]:
        groups_side_by_side(*(int(a) for a in sys.argv[2:4]))
    elif sys.argv[1:2] == ["--reader"]:
        reader_side_by_side(*(int(a) for a in sys.argv[2:4]))
    else:
        main(*(int(a) for a in sys.argv[1:3]))
