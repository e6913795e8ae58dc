"""Benchmark (not a test): aurora's feature engineering and predictions at scale.

On its own embedded PostgreSQL 18, domain Redis (ACL user ``aurora``) and Kafka stand-in, all on
free ports, over a generated dataset of USERS users and DAYS days (the three models trained on a
sample of users, not timed: ml_training_pipeline's job), each task body of
``feature_engineering_pipeline`` and ``prediction_pipeline`` runs side by side with a bare
baseline doing the same work over the same tables, each path in a fresh child process (its peak
RSS, ``VmHWM``, is the step's own), in interleaved rounds; every path of a step must produce the
same result (checked), timings are only printed.

``python -m benchmarks.aurora_features [USERS] [DAYS] [ROUNDS] [--rev REV] [--data FOLDER] [--paths old,new,bare]``
(default 100000 31 3, REV ``BEFORE_REV``): the full run in one command (``main``): the four feature
groups (after vs bare), the feature store (after vs bare), the three predictions, save + outbox,
cache and publish (before = the task bodies at REV, after, bare), on the ``--prepare`` folder
``--data`` or on one prepared first (outside any timing); then the closing note's tables
(``side_by_side_table``: medians, after / bare, rows/s, peak RSS, load average, rounds).
``tests/test_aurora_features_benchmark.py`` runs it at 300 users x 31 days. The modes below run
one part of it (at 100,000 users the whole run takes about an hour; split across runs, rounds of
one step stay interleaved in one run).

``python -m benchmarks.aurora_features --groups [USERS] [DAYS] [ROUNDS] [--data FOLDER] [--paths old,new,bare] [--steps sleep,social]``
(default 20000 31 1, every path, data generated): the four
feature groups side by side on one database, each path in a fresh child process (so its peak
RSS, ``VmHWM``, is the step's own: imports + the step, no data generation; ``RSS before``:
the child's ``VmRSS`` once imported and connected, before the step):

- old: what ``group_features`` did before, the whole history read (``read_history`` with its
  default ``tables=None``) and every feature computed (``user_features``), then the group's
  columns kept, per chunk of users;
- new: ``feature_store.group_features``, only the group's tables (and event types) read and only
  its features computed.

- bare: per chunk of users, one PostgreSQL query computing the group's features with aggregates
  (``FILTER``, ``count(DISTINCT)``, ``stddev_pop``) over the same valid rows (``history_queries``'
  queries over the group's ``feature_window`` as subqueries), fetched into a frame.

Old and new frames must be equal exactly (checked); bare's must hold the same users and the same
values as new's, up to floating-point rounding (checked, ``check_bare``); per group and path:
seconds, users/s, peak RSS; ROUNDS interleaved rounds (the paths' order rotated), then the medians
and new's ratio to bare. ``--data``: the folder ``--prepare`` made (nothing generated).

``python -m benchmarks.aurora_features --store [USERS] [DAYS] [ROUNDS] [--data FOLDER]`` (default
100000 31 3): ``update_feature_store`` against a bare baseline writing the same rows and hashes
(``store_side_by_side``).

``python -m benchmarks.aurora_features --reader [USERS] [DAYS]`` (default 20000 31): the history
reader, old vs new, on one database, each step and path in a fresh child process (seconds, rows,
``VmHWM``), the frames checked equal exactly:

- old: ``read_history`` as it was, rows fetched as Python objects (``pd.DataFrame(cur.fetchall())``
  and ``pd.to_datetime(utc=True)``); new: ``history.read_history`` (COPY ... CSV into ``pd.read_csv``);
- per table: that table of every user over the prediction window (one query);
- per feature group: ``feature_store.group_features`` (its reads and its features, per chunk of
  users), the old path the same loop with the old reader;
- training: the whole history of the DAYS days, every table (as ``training``/``models`` read it).

``python -m benchmarks.aurora_features --predictions [USERS] [DAYS] [REV] [ROUNDS]`` (default 20000 31
main 3): ``prediction_pipeline``'s steps side by side on one database: ``old`` (the task bodies as
they are at git revision REV, extracted with ``git archive``), ``new`` (this tree) and ``bare`` (the
same work without the project's code around it), each step and path in a fresh child process
(seconds, rows, ``VmHWM``), ROUNDS interleaved rounds per step (the paths' order rotated each
round), then per step the medians, their ratios and each path's highest peak RSS:

- predict_target(t): bare = the same history queries (``history.history_queries``, in the project's
  chunks of users: ``predictions.chunk_users()``, ``AURORA_PREDICTION_CHUNK_USERS``) as plain
  ``COPY ... TO STDOUT`` into a buffer + one call of the model per chunk on its feature rows
  (features computed before the clock starts);
- save_predictions: bare = in one transaction, ``COPY`` of the same rows into ``predictions`` and
  the outbox rows built by one ``INSERT ... SELECT ... GROUP BY`` (``jsonb_agg``) over them;
  ``predictions`` and the topic's outbox rows are emptied before each path;
- cache_predictions: bare = the same query + one pipelined ``HSET`` per user of prepared hashes;
- publish_prediction_events: bare = the same payloads (read before the clock starts) produced
  with a bare ``confluent_kafka.Producer`` (same connection settings) and one flush; the outbox
  rows are marked unpublished again before each path.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
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

import numpy as np
import pandas as pd

from devplatform.domain_redis import DomainRedis
from devplatform.kafka_standin import KafkaStandIn
from devplatform.pg import PgServer
from devplatform.ports import free_port

END = date(2026, 11, 30)
AS_OF_FEATURES = pd.Timestamp("2026-11-30T06:00:00Z")
AS_OF_PREDICTIONS = pd.Timestamp("2026-11-30T06:00:00Z")
TRAIN_SAMPLE_USERS = 3000
BEFORE_REV = "02599bc"  # main before issue 25 item 4's last passes (the before of the full run)


def proc_status_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process from /proc: unlike ``ru_maxrss``,
    which a child keeps from its parent across ``exec``, these belong to this process's own memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def set_connection(conn_id: str, **fields) -> None:
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(fields)


@contextmanager
def aurora_platform(tmp: Path, pgdata: Path | None = None):
    """Embedded PostgreSQL with the aurora database, the domain Redis and the Kafka stand-in, on
    free ports, wired to aurora's connections (environment variables: child processes see them).
    ``pgdata``: a PostgreSQL data folder kept after the run (``--prepare``), else one in ``tmp``."""
    os.environ.setdefault("AIRFLOW_HOME", str(tmp / "airflow"))
    pg = PgServer(pgdata or tmp / "pgdata", free_port())
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
        from shared.outbox import PRODUCER_BATCHING  # what aurora's settings.yaml sets on the connection

        set_connection("aurora_kafka", conn_type="kafka",
                       extra={"bootstrap.servers": bootstrap, "enable.idempotence": True, "message.timeout.ms": 60000,
                              **PRODUCER_BATCHING})
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


# The bare baseline of a feature group: per chunk of users, one PostgreSQL query computing the
# group's features at the start of as_of's day (``%(day)s``) with aggregates over the same valid
# rows the project reads (``history.history_queries``: the group's tables and event types, as
# subqueries), every user of the chunk one row (LEFT JOIN), fetched as Python rows into a frame.
# Window of a feature at day D: the days before D (D excluded), nights by sleep_date.
_BARE_GROUP_SQL = {
    "activity": """
        SELECT u.id AS user_id,
               count(e.user_id) FILTER (WHERE e.started_at >= %(day)s - interval '1 day') AS activity_count_24h,
               count(e.user_id) FILTER (WHERE e.started_at >= %(day)s - interval '7 days') AS activity_count_7d,
               count(e.user_id) FILTER (WHERE e.started_at >= %(day)s - interval '30 days') AS activity_count_30d,
               count(DISTINCT e.event_type) FILTER (WHERE e.started_at >= %(day)s - interval '7 days')
                 AS activity_diversity_7d,
               coalesce(sum(e.duration_minutes) FILTER (WHERE e.started_at >= %(day)s - interval '7 days'), 0)
                 AS total_minutes_7d
          FROM unnest(%(ids)s::bigint[]) AS u(id)
          LEFT JOIN ({events}) e ON e.user_id = u.id AND e.started_at < %(day)s
         GROUP BY u.id ORDER BY u.id""",
    "sleep": """
        SELECT u.id AS user_id, avg(s.duration_minutes) AS avg_sleep_duration_7d,
               CASE WHEN count(s.user_id) >= 2 THEN stddev_pop(extract(epoch FROM s.bedtime - s.sleep_date) / 60)
               END AS sleep_consistency_7d,
               coalesce(sum(480 - s.duration_minutes), 0) AS sleep_debt_minutes
          FROM unnest(%(ids)s::bigint[]) AS u(id)
          LEFT JOIN ({sleep}) s ON s.user_id = u.id AND s.sleep_date >= %(day)s::date - 7 AND s.sleep_date < %(day)s::date
         GROUP BY u.id ORDER BY u.id""",
    "exercise": """
        SELECT u.id AS user_id,
               count(x.user_id) FILTER (WHERE x.started_at >= %(day)s - interval '7 days') AS exercise_count_7d,
               count(DISTINCT x.started_at::date) FILTER (WHERE x.started_at >= %(day)s - interval '28 days') / 28.0
                 AS exercise_consistency_score
          FROM unnest(%(ids)s::bigint[]) AS u(id)
          LEFT JOIN ({exercise}) x ON x.user_id = u.id AND x.started_at < %(day)s
         GROUP BY u.id ORDER BY u.id""",
    "social": """
        SELECT u.id AS user_id, coalesce(f.n, 0) AS friend_count,
               coalesce(e.n, 0) / 7.0 + coalesce(f.n, 0) / 10.0 AS social_engagement_score
          FROM unnest(%(ids)s::bigint[]) AS u(id)
          LEFT JOIN (SELECT user_id, count(*) AS n FROM ({friends}) fr WHERE fr.connected_at < %(day)s
                      GROUP BY user_id) f ON f.user_id = u.id
          LEFT JOIN (SELECT user_id, count(*) AS n FROM ({events}) ev
                      WHERE ev.started_at >= %(day)s - interval '7 days' AND ev.started_at < %(day)s
                      GROUP BY user_id) e ON e.user_id = u.id
         ORDER BY u.id""",
}


def bare_group_features(conn, group: str, as_of, users: list[int]) -> pd.DataFrame:
    """The bare baseline of ``group``: per chunk of users, one query (``_BARE_GROUP_SQL``) over the
    same valid rows, its rows framed (index ``user_id``)."""
    from domains.aurora.feature_store import CHUNK_USERS, FEATURE_GROUPS
    from domains.aurora.features import feature_window, history_needs
    from domains.aurora.history import history_queries

    needs = history_needs(FEATURE_GROUPS[group])
    start, end = feature_window(as_of, FEATURE_GROUPS[group])  # the rows the project reads
    parts = []
    with conn.cursor() as cur:
        for i in range(0, len(users), CHUNK_USERS):
            queries, params = history_queries(start, end, users[i:i + CHUNK_USERS], needs.tables, needs.event_types)
            params["day"] = end.normalize().to_pydatetime()
            cur.execute(_BARE_GROUP_SQL[group].format(**queries), params)
            columns = [d.name for d in cur.description]
            parts.append(pd.DataFrame(cur.fetchall(), columns=columns).set_index("user_id"))
    conn.commit()
    return pd.concat(parts)


def check_bare(group: str, bare: pd.DataFrame, new: pd.DataFrame) -> None:
    """The bare baseline computes the project's features: the same users (one row each, same
    order), columns and values (NaN where the project has NaN), up to floating-point rounding
    (PostgreSQL's ``numeric``/``stddev_pop`` against numpy's sums: relative 1e-9)."""
    assert list(bare.index) == list(new.index), group
    assert list(bare.columns) == list(new.columns), (group, list(bare.columns))
    pd.testing.assert_frame_equal(bare.astype("float64"), new, check_exact=False, rtol=1e-9, atol=1e-9,
                                  check_names=False, obj=f"{group}: bare vs new")
    print(f"  {group:9s} bare computes the same values as new ({len(new):,} x {new.shape[1]},"
          f" {int(new.isna().sum().sum()):,} NaN, {int((new != 0).sum().sum()):,} non-zero)", flush=True)


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
        elif path == "bare":
            frame = bare_group_features(conn, group, AS_OF_FEATURES, users)
        else:
            frame = group_features(conn, group, AS_OF_FEATURES, users)
        took = time.perf_counter() - t0
    return {"seconds": took, "users": len(frame), "rss_before_mb": rss_before, "peak_mb": proc_status_mb("VmHWM"),
            "frame": frame}


@contextmanager
def feature_bench_platform(what: str, users: int, days: int, rounds: int, data: str | None):
    """The platform a feature benchmark runs on: the prepared data's copy (``data``) or freshly
    generated history of ``users`` x ``days``; its heading printed."""
    pgdata = _prepared_pgdata(data, users, days)
    with aurora_platform(Path(tempfile.mkdtemp(prefix="aurora-bench-")), pgdata=pgdata) as where:
        print(f"aurora {what}: {users:,} users, {days} days ending {END} ({where});"
              f" {rounds} interleaved round(s); load average {os.getloadavg()[0]:.1f}", flush=True)
        if not data:
            load_generated(users, days)
        yield where


def groups_side_by_side(users: int = 20_000, days: int = 31, rounds: int = 1, data: str | None = None,
                        paths: list[str] | None = None, only: list[str] | None = None) -> list[dict]:
    """``data``: a folder made by ``--prepare`` (same USERS and DAYS; nothing generated here);
    ``paths``: only these of old, new, bare (``--paths new,bare``: old reads the whole history);
    ``only``: only these groups (``--steps sleep,social``);
    ``rounds``: interleaved rounds per group (the paths' order rotated each round), then per
    group the medians, new's ratio to bare and each path's highest peak RSS."""
    from domains.aurora.feature_store import FEATURE_GROUPS

    rows: list[dict] = []
    with feature_bench_platform("feature groups, old vs new vs bare", users, days, rounds, data):
        spawn = multiprocessing.get_context("spawn")
        print(f"  {'group':9s} {'path':4s} {'round':>5s} {'seconds':>8s} {'users':>8s} {'users/s':>8s}"
              f" {'RSS before':>11s} {'peak RSS':>9s}", flush=True)
        base = tuple(p for p in ("old", "new", "bare") if p in (paths or ("old", "new", "bare")))
        for group in only or FEATURE_GROUPS:
            frames = {}
            for r in range(rounds):
                for path in base[r % len(base):] + base[:r % len(base)]:
                    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                        out = pool.submit(run_group, path, group).result()
                    frames[path] = out.pop("frame")
                    row = {"group": group, "step": group, "path": path, "round": r + 1, **out, "rows": out["users"],
                           "users_per_s": out["users"] / out["seconds"], "load": os.getloadavg()[0]}
                    rows.append(row)
                    print(f"  {group:9s} {path:4s} {r + 1:5d} {row['seconds']:8.1f} {row['users']:8,}"
                          f" {row['users_per_s']:8,.0f} {row['rss_before_mb']:8,.0f} MB {row['peak_mb']:6,.0f} MB",
                          flush=True)
            if "old" in frames and "new" in frames:
                pd.testing.assert_frame_equal(frames["new"], frames["old"], check_exact=True)
                print(f"  {group:9s} old and new frames equal exactly ({len(frames['new']):,} x "
                      f"{frames['new'].shape[1]}, {int(frames['new'].isna().sum().sum()):,} NaN)", flush=True)
            if "bare" in frames and "new" in frames:  # the same users and the same values on both sides
                check_bare(group, frames["bare"], frames["new"])
            med = {p: float(np.median([x["seconds"] for x in rows if x["group"] == group and x["path"] == p]))
                   for p in base}
            peak = {p: max(x["peak_mb"] for x in rows if x["group"] == group and x["path"] == p) for p in base}
            ratio = f"; new at {med['bare'] / med['new']:.2f}x of bare" if {"new", "bare"} <= set(med) else ""
            print(f"  {group:9s} medians: " + ", ".join(f"{p} {med[p]:.2f} s" for p in base) + ratio
                  + "; peak RSS " + " / ".join(f"{p} {peak[p]:,.0f} MB" for p in base)
                  + f"; load average {os.getloadavg()[0]:.1f}", flush=True)
        for path in base:
            total = sum(float(np.median([x["seconds"] for x in rows if x["group"] == g and x["path"] == path]))
                        for g in only or FEATURE_GROUPS)
            n = rows[0]["users"]
            print(f"  {'all four groups' if not only else ', '.join(only)}, {path} (medians): {total:.1f} s"
                  f" ({n / total:,.0f} users/s of the feature step)")
    return rows


def run_store(path: str) -> dict:
    """In a fresh child process: ``update_feature_store`` (new) or its bare baseline at
    AS_OF_FEATURES, the snapshot's rows of that as_of deleted first (untimed); both read the
    four stored groups (``feature_store.snapshot``) inside the clock."""
    from domains.aurora import feature_store
    from domains.aurora.db import DATABASE, REDIS_CONN_ID
    from shared.db import copy_rows
    from shared.redis_store import connect

    as_of = AS_OF_FEATURES.to_pydatetime()
    with closing(DATABASE.connect()) as conn:
        with conn.cursor() as cur:
            cur.execute("DELETE FROM feature_store WHERE as_of = %s", (as_of,))
        conn.commit()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM (ANALYZE) feature_store")
        conn.autocommit = False
    client = connect(REDIS_CONN_ID)
    # a task body runs inside Airflow's task runner, which loaded the plugins (its listeners)
    # before the body starts: loaded here before the clock, for both paths (as child_step does)
    from airflow.sdk.lineage import get_hook_lineage_collector

    get_hook_lineage_collector()
    rss_before = proc_status_mb("VmRSS")
    t0 = time.perf_counter()
    if path == "new":
        users = feature_store.update_feature_store(AS_OF_FEATURES)["users"]
    else:  # the same input read (the four stored groups joined), the same writes done plainly:
        # COPY + one INSERT ... ON CONFLICT; per user DEL, HSET, EXPIRE pipelined
        with closing(DATABASE.connect()) as conn:
            frame = feature_store.snapshot(conn, AS_OF_FEATURES)
            conn.commit()
        cols = ["user_id", "as_of", *feature_store.FEATURES]
        rows = frame.reset_index()
        rows.insert(1, "as_of", AS_OF_FEATURES)
        with closing(DATABASE.connect()) as conn, conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE _bare_fs (LIKE feature_store INCLUDING DEFAULTS) ON COMMIT DROP")
            copy_rows(cur, "_bare_fs", cols, rows)
            names = ", ".join(cols)
            cur.execute(f"INSERT INTO feature_store ({names}) SELECT {names} FROM _bare_fs ON CONFLICT (user_id, as_of)"
                        " DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in feature_store.FEATURES))
            conn.commit()
        stamp = AS_OF_FEATURES.isoformat()
        values = frame.to_numpy()
        ids = frame.index.tolist()
        for i in range(0, len(ids), 1000):
            with client.pipeline(transaction=False) as pipe:
                for uid, vals in zip(ids[i:i + 1000], values[i:i + 1000], strict=True):
                    key = f"{feature_store.KEY_PREFIX}{uid}"
                    pipe.delete(key)
                    pipe.hset(key, mapping={**{f: ("nan" if v != v else repr(float(v)))
                                               for f, v in zip(feature_store.FEATURES, vals, strict=True)},
                                            "as_of": stamp})
                    pipe.expire(key, feature_store.TTL_SECONDS)
                pipe.execute()
        users = len(ids)
    took = time.perf_counter() - t0
    with closing(DATABASE.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM feature_store WHERE as_of = %s", (as_of,))
        stored = cur.fetchone()[0]
    sample = feature_store.read_online(client, 1 if client.exists(f"{feature_store.KEY_PREFIX}1") else
                                       int(next(iter(client.scan_iter(f"{feature_store.KEY_PREFIX}*"))).split(b":")[-1]))
    return {"seconds": took, "users": users, "stored": stored, "sample": repr(sorted(sample.items())),
            "rss_before_mb": rss_before, "peak_mb": proc_status_mb("VmHWM")}


def store_side_by_side(users: int = 100_000, days: int = 31, rounds: int = 3, data: str | None = None) -> list[dict]:
    """``--store``: ``update_feature_store`` (new) vs its bare baseline (the same stored groups
    joined, then the same rows into
    ``feature_store`` with COPY + one ``INSERT ... ON CONFLICT DO UPDATE``, the same hashes with a
    plain pipelined DEL/HSET/EXPIRE per user), each in a fresh child process, ROUNDS interleaved
    rounds; the four groups computed first (untimed) when ``data`` does not hold them yet, and an
    older snapshot row kept in ``feature_store`` (both paths merge, neither loads an empty table).
    Both must store the same number of rows and the same hash (checked on one user)."""
    from domains.aurora import feature_store
    from domains.aurora.datasets import load_frame
    from domains.aurora.db import DATABASE

    rows: list[dict] = []
    with feature_bench_platform("update_feature_store, new vs bare", users, days, rounds, data):
        with closing(DATABASE.connect()) as conn:
            for group in feature_store.FEATURE_GROUPS:
                try:
                    load_frame(conn, as_of_key_features(), f"features:{group}")
                except LookupError:
                    t0 = time.perf_counter()
                    feature_store.compute_group(group, AS_OF_FEATURES)
                    print(f"  group {group} computed (not timed): {time.perf_counter() - t0:.0f} s", flush=True)
            conn.rollback()
            with conn.cursor() as cur:
                cur.execute("INSERT INTO feature_store (user_id, as_of) VALUES (0, %s) ON CONFLICT DO NOTHING",
                            ((AS_OF_FEATURES - pd.Timedelta(hours=6)).to_pydatetime(),))
            conn.commit()
        if not rounds:  # --store ... 0: only the groups prepared (outside any timing)
            return rows
        spawn = multiprocessing.get_context("spawn")
        base = ("new", "bare")
        for r in range(rounds):
            for path in base[r % 2:] + base[:r % 2]:
                with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                    out = pool.submit(run_store, path).result()
                rows.append({"step": "update_feature_store", "path": path, "round": r + 1, **out, "rows": out["users"],
                             "load": os.getloadavg()[0]})
                print(f"  store {path:4s} {r + 1:5d} {out['seconds']:8.2f} s {out['users']:8,} users"
                      f" {out['users'] / out['seconds']:8,.0f} users/s  RSS before {out['rss_before_mb']:6,.0f} MB"
                      f"  peak RSS {out['peak_mb']:6,.0f} MB", flush=True)
        for key in ("stored", "sample"):
            assert len({x[key] for x in rows}) == 1, (key, {x["path"]: x[key] for x in rows})
        med = {p: float(np.median([x["seconds"] for x in rows if x["path"] == p])) for p in base}
        peak = {p: max(x["peak_mb"] for x in rows if x["path"] == p) for p in base}
        print(f"  store medians: new {med['new']:.2f} s, bare {med['bare']:.2f} s; new at {med['bare'] / med['new']:.2f}x"
              f" of bare; same rows ({rows[0]['stored']:,}) and hash; peak RSS new {peak['new']:,.0f} / bare"
              f" {peak['bare']:,.0f} MB; load average {os.getloadavg()[0]:.1f}", flush=True)
    return rows


def as_of_key_features() -> str:
    from shared.runs import as_of_key

    return as_of_key("feature_store", AS_OF_FEATURES)


def _prepared_pgdata(data: str | None, users: int, days: int) -> Path | None:
    """The PostgreSQL data folder of ``--prepare``'s ``data`` (checked: same USERS and DAYS), or None."""
    if not data:
        return None
    meta = json.loads((Path(data) / "prepared.json").read_text())
    if (meta["users"], meta["days"]) != (users, days):
        raise SystemExit(f"{data} holds {meta['users']} users x {meta['days']} days, not {users} x {days}")
    return Path(data).resolve() / "pgdata"


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


# -- prediction_pipeline side by side: old (a git revision), new (this tree), bare ------------------
CHILD = r"""
import json, sys, time
from contextlib import closing
from pathlib import Path
import pandas as pd
sys.path.insert(0, sys.argv[1])
from benchmarks_child import run  # noqa: E402
print("RESULT " + json.dumps(run(sys.argv[2], sys.argv[3])), flush=True)
"""


def child_step(path: str, what: str) -> dict:
    """In a fresh process (``path``'s tree first on ``sys.path``): reset what the step writes
    (untimed), then time one step of prediction_pipeline by ``path`` (old/new) or the bare baseline."""
    from domains.aurora import predictions
    from domains.aurora.db import DATABASE

    as_of = AS_OF_PREDICTIONS
    kind, _, target = what.partition(":")
    with closing(DATABASE.connect()) as conn:
        with conn.cursor() as cur:
            if kind == "save":
                cur.execute("TRUNCATE predictions")
                cur.execute("DELETE FROM event_outbox WHERE topic = %s", (predictions.TOPIC,))
            elif kind == "publish":  # every event waiting again, for the old code (published_at) and the new (mark)
                cur.execute("UPDATE event_outbox SET published_at = NULL, attempts = 0 WHERE topic = %s"
                            " AND (published_at IS NOT NULL OR attempts <> 0)", (predictions.TOPIC,))
                cur.execute("SELECT to_regclass('event_outbox_mark') IS NOT NULL")
                if cur.fetchone()[0]:
                    cur.execute("UPDATE event_outbox_mark SET txid = '0', id = 0")
            if kind in ("save", "publish"):  # each path on its own outbox indexes: an old tree before
                # the publish mark (migration 0002) reads by its partial index, one with it by (txid, id)
                premark = path == "old" and not (Path(predictions.__file__).resolve().parents[2]
                                                 / "shared/migrations/outbox/0002_publish_mark.sql").exists()
                cur.execute("SELECT to_regclass('event_outbox_mark') IS NOT NULL")
                if cur.fetchone()[0] and premark:
                    cur.execute("DROP INDEX IF EXISTS event_outbox_txid_id")
                    cur.execute("CREATE INDEX IF NOT EXISTS event_outbox_unpublished ON event_outbox (id)"
                                " WHERE published_at IS NULL")
                elif not premark:
                    cur.execute("DROP INDEX IF EXISTS event_outbox_unpublished")
                    cur.execute("CREATE INDEX IF NOT EXISTS event_outbox_txid_id ON event_outbox (txid, id)")
        conn.commit()
        if kind in ("save", "publish"):  # the dead rows of the reset gone, for every path alike
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("VACUUM (ANALYZE) event_outbox")
                cur.execute("VACUUM (ANALYZE) predictions")
            conn.autocommit = False
        if kind == "predict":  # every path: the model library imported and the model loaded once, untimed
            from domains.aurora import registry

            registry.load_current(conn, target)
            conn.commit()
        prepared = _bare_prepare(conn, kind, target) if path == "bare" else None
    # a task body runs inside Airflow's task runner, which loaded the plugins (its listeners)
    # before the body starts; here the first lineage call would load them (about 2 s of CPU,
    # airflow.sdk.execution_time and the plugins manager) inside the clock. Every path, untimed:
    from airflow.sdk.lineage import get_hook_lineage_collector

    get_hook_lineage_collector()
    t0 = time.perf_counter()
    if path == "bare":
        rows = _bare_run(kind, target, prepared)
    elif kind == "predict":
        rows = predictions.predict_target(target, as_of)["rows"]
    elif kind == "save":
        rows = predictions.save_predictions(as_of)["rows"]
    elif kind == "cache":
        rows = predictions.cache_predictions(as_of)["users"]
    else:
        rows = predictions.publish_events()["published"]
    took = time.perf_counter() - t0
    peak = proc_status_mb("VmHWM")  # before the check reads anything
    return {"seconds": took, "rows": int(rows), "peak_mb": peak, "check": _step_check(kind, target, prepared)}


class _CapturedInputs:
    """Stands in for a model in ``models.predict_from_features``: keeps each input frame (the
    model's feature columns as floats) and predicts zeros, so the bare baseline gets the exact
    rows the project's model call gets, built before its clock starts."""

    def __init__(self, model) -> None:
        self.model, self.name, self.version, self.inputs = model, model.name, model.version, []

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.inputs.append(frame[self.model.features].astype(float))
        return np.zeros(len(frame))


def _values_digest(user_id, horizon, value) -> str:
    """The predictions as (user, horizon, value rounded to 6 decimals, as ``to_rows`` stores it),
    sorted: the same text for the same predictions whatever the path."""
    import hashlib

    u, h = np.asarray(user_id, dtype="int64"), np.asarray(horizon, dtype="int64")
    v = np.rint(np.round(np.asarray(value, dtype="float64"), 6) * 1e6).astype("int64")
    order = np.lexsort((h, u))
    digest = hashlib.sha256(u[order].tobytes() + h[order].tobytes() + v[order].tobytes()).hexdigest()[:16]
    return f"{len(u)} rows, values {digest}"


def _step_check(kind: str, target: str, prepared) -> str:
    """After the clock: what the step produced, comparable across old, new and bare (the
    predictions' values; the ``predictions`` rows and the outbox's event count after save)."""
    from domains.aurora import predictions
    from domains.aurora.db import DATABASE

    if kind == "predict":
        if prepared is not None:  # bare: its own model call's values
            keys = pd.concat(prepared["keys"], ignore_index=True)
            return _values_digest(keys["user_id"], keys["horizon_hours"], np.concatenate(prepared["values"]))
        with closing(DATABASE.connect()) as conn:
            rows = _stored_predictions(conn, [target])
            conn.commit()
        return _values_digest(rows["user_id"], rows["horizon_hours"], rows["predicted_value"])
    if kind == "save":
        with closing(DATABASE.connect()) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*), md5(string_agg(concat_ws(',', user_id, target, target_date, horizon_hours,"
                        " target_time, predicted_value, model_name, model_version, as_of), ';'"
                        " ORDER BY user_id, target, target_date, horizon_hours)) FROM predictions")
            n, digest = cur.fetchone()
            cur.execute("SELECT count(*) FROM event_outbox WHERE topic = %s", (predictions.TOPIC,))
            events = cur.fetchone()[0]
            conn.commit()
        return f"{n} rows, {digest}; {events} events"
    return ""


def _stored_predictions(conn, targets) -> pd.DataFrame:
    """The predictions the predict steps stored for ``targets``, whole: in parts (this tree's
    ``datasets.load_parts``) or as one frame (a tree before it, whose ``predict_target`` stored
    ``predictions:<target>`` whole). Imported from the running path's tree."""
    from domains.aurora import datasets
    from shared.runs import as_of_key

    key = as_of_key("predictions", AS_OF_PREDICTIONS)
    load = getattr(datasets, "load_parts", None)
    frames = [f for t in targets for f in (load(conn, key, f"predictions:{t}") if load
                                           else [datasets.load_frame(conn, key, f"predictions:{t}")])]
    return pd.concat(frames, ignore_index=True)


def _bare_prepare(conn, kind: str, target: str):
    """What a bare baseline gets before the clock starts."""
    from domains.aurora import models, predictions, registry
    from domains.aurora.features import prediction_window, user_features
    from domains.aurora.history import read_history

    as_of = AS_OF_PREDICTIONS
    users = predictions.cohort(conn, as_of)
    if kind == "predict":
        model = registry.load_current(conn, target)
        start, end = prediction_window(as_of)
        capture = _CapturedInputs(model)
        keys = []
        chunk = predictions.chunk_users()  # the project's chunks of users
        for i in range(0, len(users), chunk):
            ids = users[i:i + chunk]
            h = read_history(conn, start, end, ids)
            # the model's input rows as the project builds them (its features, hour features,
            # exercised_before), captured instead of predicted: the clock times the model call
            out = models.predict_from_features(target, user_features(h, end, ids), end, capture,
                                               h if target == "energy" else None)
            keys.append(out.reindex(columns=["user_id", "horizon_hours"], fill_value=0))
        return {"users": users, "model": model, "inputs": capture.inputs, "keys": keys, "values": []}
    if kind == "save":
        rows = _stored_predictions(conn, predictions.TARGETS).reindex(columns=predictions.COLUMNS)
        rows["target_time"] = pd.to_datetime(rows["target_time"], utc=True)
        for col in ("user_id", "horizon_hours", "model_version"):
            rows[col] = rows[col].astype("int64")
        return rows
    if kind == "cache":
        return {"users": users}
    with conn.cursor() as cur:  # every waiting event, as publish_outbox sends it (any topic: the outbox is the domain's)
        cur.execute("SELECT event_id::text, topic, event_key, payload::text FROM event_outbox"
                    " WHERE published_at IS NULL ORDER BY txid, id")
        return cur.fetchall()


def _bare_run(kind: str, target: str, prepared) -> int:
    from domains.aurora import predictions
    from domains.aurora.db import DATABASE
    from domains.aurora.features import prediction_window
    from domains.aurora.history import history_queries
    from shared.db import copy_rows

    as_of = AS_OF_PREDICTIONS
    if kind == "predict":
        start, end = prediction_window(as_of)
        users, model = prepared["users"], prepared["model"]
        with closing(DATABASE.connect()) as conn, conn.cursor() as cur:
            chunk = predictions.chunk_users()
            for i in range(0, len(users), chunk):
                queries, params = history_queries(start, end, users[i:i + chunk])
                for sql in queries.values():
                    # psycopg's own COPY iteration into a buffer (not the project's reader)
                    with cur.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", params) as copy:
                        buffer = io.BytesIO()
                        for row in copy:
                            buffer.write(row)
            conn.commit()
        for x in prepared["inputs"]:  # the model on the same input rows (built before the clock)
            prepared["values"].append(model.predict(x))
        return sum(len(v) for v in prepared["values"])
    if kind == "save":
        with closing(DATABASE.connect()) as conn:
            with conn.cursor() as cur:
                copy_rows(cur, "predictions", predictions.COLUMNS, prepared)
                cur.execute(
                    "INSERT INTO event_outbox (event_id, topic, event_key, payload)"
                    " SELECT md5(%(topic)s::text || user_id || target || target_date || string_agg(predicted_value::text, ','"
                    "        ORDER BY horizon_hours))::uuid, %(topic)s, user_id::text,"
                    "        jsonb_build_object('event_id', 'x', 'event_type', %(type)s::text, 'schema_version', 1,"
                    "          'occurred_at', now(), 'source', %(source)s::text, 'key', user_id::text, 'data',"
                    "          jsonb_build_object('user_id', user_id, 'target', target, 'target_date', target_date,"
                    "            'as_of', min(as_of), 'model_name', min(model_name), 'model_version', min(model_version),"
                    "            'predictions', jsonb_agg(jsonb_build_object('horizon_hours', horizon_hours,"
                    "              'target_time', target_time, 'value', predicted_value) ORDER BY horizon_hours)))"
                    "   FROM predictions GROUP BY user_id, target, target_date ON CONFLICT (event_id) DO NOTHING",
                    {"topic": predictions.TOPIC, "type": predictions.EVENT_TYPE, "source": predictions.SOURCE})
            conn.commit()
        return len(prepared)
    if kind == "cache":
        from shared.redis_store import connect

        client = connect("aurora_redis")
        with closing(DATABASE.connect()) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT user_id, target, target_date, target_time, predicted_value, model_version"
                " FROM predictions WHERE as_of = %s AND user_id = ANY(%s) ORDER BY user_id, target, horizon_hours",
                (as_of.to_pydatetime(), prepared["users"]))
            fetched = cur.fetchall()
            conn.commit()
        with client.pipeline(transaction=False) as pipe:
            for uid in prepared["users"]:
                pipe.hset(f"{predictions.KEY_PREFIX}{uid}", mapping={"as_of": "x", "energy": "[]", "mood": 1.0,
                                                                      "sleep_quality": 1.0, "models": "{}"})
            pipe.execute()
        return len(prepared["users"]) if fetched is not None else 0
    import json as _json

    from airflow.sdk import BaseHook
    from confluent_kafka import Producer

    producer = Producer(BaseHook.get_connection(predictions.KAFKA_CONN_ID).extra_dejson)
    acked = [0]

    def on_delivery(err, msg) -> None:
        if err is None:
            acked[0] += 1

    for eid, topic, key, payload in prepared:
        while True:
            try:
                producer.produce(topic, value=payload.encode(), key=key.encode(), headers=[("event_id", eid.encode())],
                                 on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.5)
    producer.flush(60)
    _json.dumps(acked)
    return acked[0]


PATH_NAMES = {"old": "before", "new": "after", "bare": "bare"}


def _summary(rows: list[dict]) -> dict[str, dict]:
    """Per path of one step's rows (``path``, ``seconds``, ``rows``, ``peak_mb``): the median
    seconds, the rounds, the rows, the highest peak RSS."""
    out = {}
    for path in ("old", "new", "bare"):
        mine = [x for x in rows if x["path"] == path]
        if mine:
            out[path] = {"median": float(np.median([x["seconds"] for x in mine])),
                         "rounds": [x["seconds"] for x in mine], "rows": mine[0]["rows"],
                         "peak": max(x["peak_mb"] for x in mine)}
    return out


def _medians_line(rows: list[dict], _key: str = "step") -> str:
    med = _summary(rows)
    text = "medians: " + ", ".join(f"{PATH_NAMES[p]} {m['median']:.2f} s" for p, m in med.items())
    if "new" in med and "bare" in med:
        text += f"; after at {med['bare']['median'] / med['new']['median']:.2f}x of bare"
    if "new" in med and "old" in med:
        text += f" (before {med['bare']['median'] / med['old']['median']:.2f}x)" if "bare" in med else ""
    return (text + "; peak RSS " + " / ".join(f"{PATH_NAMES[p]} {m['peak']:,.0f} MB" for p, m in med.items())
            + f"; load average {os.getloadavg()[0]:.1f}")


def _cell_of(med: dict):
    def cell(path: str, what: str = "median", fmt: str = "{:.2f}") -> str:
        return fmt.format(med[path][what]) if path in med else "–"
    return cell


def _ratio_of(med: dict):
    def ratio(path: str) -> str:  # bare s / path s: the path's speed as a share of bare's
        return f"{med['bare']['median'] / med[path]['median']:.2f}x" if path in med and "bare" in med else "–"
    return ratio


def side_by_side_table(rows: list[dict], unit: str = "rows") -> list[str]:
    """The closing note's table (Markdown) of side-by-side rows (each with ``step``, ``path``,
    ``round``, ``seconds``, ``rows``, ``peak_mb``, ``load``): per step the median seconds of
    before (old), after (new) and bare, after's speed as a share of bare's (bare s / after s),
    after's rows/s, each path's peak RSS, the load average over the step's rounds and the rounds."""
    lines = [f"| step | before s | after s | bare s | after / bare | before / bare | after {unit}/s"
             " | peak RSS before / after / bare MB | load | rounds after; bare |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for step in dict.fromkeys(x["step"] for x in rows):
        mine = [x for x in rows if x["step"] == step]
        med = _summary(mine)
        cell = _cell_of(med)
        ratio = _ratio_of(med)
        loads = [x["load"] for x in mine]
        rounds = "; ".join(" ".join(f"{s:.1f}" for s in med[p]["rounds"]) for p in ("new", "bare") if p in med)
        rate = f"{med['new']['rows'] / med['new']['median']:,.0f}" if "new" in med else "–"
        lines.append(f"| {step} ({mine[0]['rows']:,} {unit}) | {cell('old')} | {cell('new')} | {cell('bare')}"
                     f" | {ratio('new')} | {ratio('old')} | {rate}"
                     f" | {' / '.join(cell(p, 'peak', '{:,.0f}') for p in ('old', 'new', 'bare'))}"
                     f" | {min(loads):.1f}-{max(loads):.1f} | {rounds} |")
    return lines


def _old_tree(rev: str) -> Path:
    """The project's files at ``rev`` (``git archive``) in a temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix=f"aurora-old-{rev}-"))
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(["git", "-C", str(root), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def _run_child(tree: Path, path: str, what: str) -> dict:
    """``child_step`` in a fresh interpreter with ``tree`` (old or this one) first on ``sys.path``;
    the child imports this module (the current tree's copy) as ``benchmarks_child``."""
    here = Path(__file__).resolve()
    shim = Path(tempfile.mkdtemp(prefix="aurora-child-"))
    (shim / "benchmarks_child.py").write_text(
        f"import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('_aurora_bench', {str(here)!r})\n"
        f"mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        f"def run(path, what):\n    return mod.child_step(path, what)\n")
    env = {**os.environ, "PYTHONPATH": f"{shim}:{tree}"}
    try:
        out = subprocess.run([sys.executable, "-c", CHILD, str(tree), path, what], env=env, cwd=str(tree),
                             capture_output=True, text=True)
    finally:
        shutil.rmtree(shim, ignore_errors=True)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{path} {what} failed:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}")
    return json.loads(line[len("RESULT "):])


def prepare_predictions_data(users: int, days: int) -> None:
    """What every step of ``--predictions`` starts from, in ``aurora_platform``'s database: the
    generated data loaded, the three models trained on a sample, the cohort selected, and the
    predictions saved once (so that save, cache and publish have their input)."""
    from domains.aurora import models, predictions, registry
    from domains.aurora.db import DATABASE
    from domains.aurora.features import training_sets
    from domains.aurora.history import read_history

    with closing(DATABASE.connect()) as conn:
        with conn.cursor() as cur:  # a --prepare run stopped after loading: the data is there
            cur.execute("SELECT count(*), (SELECT count(*) FROM life_events) FROM users")
            loaded = cur.fetchone()
        conn.commit()
    if loaded[0] == users and loaded[1]:
        print(f"  {users:,} users already loaded (a --prepare run stopped after loading)", flush=True)
    else:
        load_generated(users, days)
    with closing(DATABASE.connect()) as conn:
        as_of = pd.Timestamp(END, tz="UTC")
        sample = list(range(1, min(users, TRAIN_SAMPLE_USERS) + 1))
        sets = training_sets(read_history(conn, as_of - pd.Timedelta(days=days), as_of, sample))
        for target in models.MODEL_NAMES:
            registry.train_target(conn, target, sets[target], "bench", as_of)
    predictions.select_users(AS_OF_PREDICTIONS)


def prepare(folder: str, users: int = 100_000, days: int = 31) -> None:
    """``--prepare FOLDER USERS DAYS``: the PostgreSQL data folder ``--predictions --data FOLDER``
    runs on, made outside any timing (and outside the benchmark lock)."""
    folder_path = Path(folder).resolve()
    folder_path.mkdir(parents=True, exist_ok=True)
    with aurora_platform(Path(tempfile.mkdtemp(prefix="aurora-bench-")), pgdata=folder_path / "pgdata") as where:
        print(f"preparing {users:,} users x {days} days in {folder_path} ({where})", flush=True)
        prepare_predictions_data(users, days)
        from domains.aurora import predictions
        from domains.aurora.datasets import save_frame
        from domains.aurora.db import DATABASE
        from shared.runs import as_of_key

        for target in predictions.TARGETS:  # save's input, as predict_target leaves it (in parts)
            predictions.predict_target(target, AS_OF_PREDICTIONS)
        with closing(DATABASE.connect()) as conn:  # and whole, as a tree before the parts stored it (--rev)
            for target in predictions.TARGETS:
                save_frame(conn, as_of_key("predictions", AS_OF_PREDICTIONS), f"predictions:{target}",
                           AS_OF_PREDICTIONS.to_pydatetime(), _stored_predictions(conn, [target]))
        (folder_path / "prepared.json").write_text(json.dumps({"users": users, "days": days}))
    print(f"prepared: {folder_path}", flush=True)


def predictions_side_by_side(users: int = 20_000, days: int = 31, rev: str = "main", rounds: int = 3,
                             data: str | None = None, steps: list[str] | None = None,
                             first_round: int = 1, paths: list[str] | None = None) -> list[dict]:
    """``data``: a folder made by ``--prepare`` (same USERS and DAYS; nothing generated here);
    ``steps``: only these (e.g. ``save,cache,publish``); ``first_round``: the number of the
    first round (the paths' order rotates with it), so that rounds split across several runs
    interleave as one run's would; ``paths``: only these of old, new, bare.

    Every path of a step must produce the same (checked): the same number of rows, and for
    ``predict`` the same values (user, horizon, value to 6 decimals; bare's from its own model
    call), for ``save`` the same ``predictions`` rows and as many outbox events."""
    from domains.aurora import predictions

    pgdata = _prepared_pgdata(data, users, days)
    chosen = tuple(paths or ("old", "new", "bare"))
    old_tree = _old_tree(rev) if "old" in chosen else None
    try:
        new_tree = Path(__file__).resolve().parent.parent
        rows: list[dict] = []
        with aurora_platform(Path(tempfile.mkdtemp(prefix="aurora-bench-")), pgdata=pgdata) as where:
            print(f"aurora prediction_pipeline, old ({rev}) vs new vs bare: {users:,} users, {days} days ending {END}"
                  f" ({where}); {rounds} interleaved round(s) from round {first_round};"
                  f" load average {os.getloadavg()[0]:.1f}", flush=True)
            if not data:
                prepare_predictions_data(users, days)
            print(f"  {'step':24s} {'path':4s} {'round':>5s} {'seconds':>8s} {'rows':>9s} {'rows/s':>10s} {'peak RSS':>9s}",
                  flush=True)
            steps = steps or [f"predict:{t}" for t in predictions.TARGETS] + ["save", "cache", "publish"]
            for what in steps:
                base = tuple(p for p in (("bare", "old", "new") if what == "save" else ("old", "new", "bare"))
                             if p in chosen)
                for r in range(first_round - 1, first_round - 1 + rounds):
                    order = base[r % len(base):] + base[:r % len(base)]  # interleaved: each path first once
                    for path in order:
                        out = _run_child(old_tree if path == "old" else new_tree, path, what)
                        row = {"step": what, "path": path, "round": r + 1, **out, "load": os.getloadavg()[0]}
                        rows.append(row)
                        print(f"  {what:24s} {path:4s} {r + 1:5d} {out['seconds']:8.2f} {out['rows']:9,} "
                              f"{out['rows'] / out['seconds']:10,.0f} {out['peak_mb']:6,.0f} MB  {out['check']}",
                              flush=True)
                mine = [x for x in rows if x["step"] == what]
                produced = {(x["rows"], x["check"]) for x in mine}
                if len(produced) != 1:
                    raise AssertionError(f"{what}: the paths produced different results: "
                                         f"{sorted({(x['path'], x['rows'], x['check']) for x in mine})}")
                print(f"  {what:24s} every path produced the same: {mine[0]['rows']:,} rows {mine[0]['check']}",
                      flush=True)
                print(f"  {what:24s} " + _medians_line(mine, "step"), flush=True)
    finally:
        if old_tree is not None:
            shutil.rmtree(old_tree, ignore_errors=True)
    return rows


def main(users: int = 100_000, days: int = 31, rounds: int = 3, rev: str = BEFORE_REV, data: str | None = None,
         paths: list[str] | None = None) -> dict[str, list[dict]]:
    """The whole benchmark in one command: every step of ``feature_engineering_pipeline`` and
    ``prediction_pipeline`` side by side with its bare baseline on one dataset (``data``, a
    ``--prepare`` folder; else one prepared here first, outside any timing, and deleted after):
    the four feature groups (after vs bare; ``check_bare``), ``update_feature_store`` (after vs
    bare; same rows and hash), the three predictions, save + outbox, cache and publish (before =
    the task bodies at ``rev``, after, bare; the same rows and values on every path), ROUNDS
    interleaved rounds each; then the tables (Markdown). ``paths``: the predictions' paths
    (default old, new, bare)."""
    folder = None
    if not data:
        folder = tempfile.mkdtemp(prefix="aurora-full-")
        prepare(folder, users, days)
        data = folder
    try:
        tables = {
            "feature_engineering_pipeline": groups_side_by_side(users, days, rounds, data=data, paths=["new", "bare"])
            + store_side_by_side(users, days, rounds, data=data),
            "prediction_pipeline": predictions_side_by_side(users, days, rev, rounds, data=data, paths=paths),
        }
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    for title, rows in tables.items():
        before = f"before = {rev}; " if "old" in (paths or ("old",)) and title.startswith("prediction") else ""
        print(f"\n{title}, {users:,} users x {days} days, medians of {rounds} interleaved round(s)"
              f" ({before}after / bare = bare s / after s):")
        print("\n".join(side_by_side_table(rows, "users" if title.startswith("feature") else "rows")), flush=True)
    return tables


if __name__ == "__main__":
    args = sys.argv[1:]
    options = {}
    for name in ("--data", "--steps", "--first-round", "--paths", "--rev"):  # options, anywhere
        if name in args:
            i = args.index(name)
            options[name[2:].replace("-", "_")] = args[i + 1]
            del args[i:i + 2]
    if "steps" in options:
        options["steps"] = options["steps"].split(",")
    if "first_round" in options:
        options["first_round"] = int(options["first_round"])
    sys.argv[1:] = args
    if sys.argv[1:2] == ["--groups"]:
        groups_side_by_side(*(int(a) for a in sys.argv[2:5]), data=options.get("data"),
                            paths=options["paths"].split(",") if "paths" in options else None,
                            only=options.get("steps"))
    elif sys.argv[1:2] == ["--store"]:
        store_side_by_side(*(int(a) for a in sys.argv[2:5]), data=options.get("data"))
    elif sys.argv[1:2] == ["--prepare"]:
        prepare(sys.argv[2], *(int(a) for a in sys.argv[3:5]))
    elif sys.argv[1:2] == ["--predictions"]:
        options.pop("rev", None)
        if "paths" in options:
            options["paths"] = options["paths"].split(",")
        predictions_side_by_side(*(int(a) for a in sys.argv[2:4]), *sys.argv[4:5], *(int(a) for a in sys.argv[5:6]),
                                 **options)
    elif sys.argv[1:2] == ["--reader"]:
        reader_side_by_side(*(int(a) for a in sys.argv[2:4]))
    else:
        main(*(int(a) for a in sys.argv[1:4]), rev=options.get("rev", BEFORE_REV), data=options.get("data"),
             paths=options["paths"].split(",") if "paths" in options else None)
