"""DAG 7, events and funnels: each run processes exactly its data interval ``[start, end)``
(a quarter hour): the events whose ``ts`` falls in it.

Input: ``raw/events/dt=<day>/slot=<HHMM>/part-<arrival YYYYMMDDHHMM>.csv``, one folder per 15-minute slot
of ``ts``; a part file holds the events that arrived in one slot, so events that arrive late
are later parts of their own (older) slot.

Per run:

1. :func:`validate_events` reads every part file of the interval's slots and of the
   ``LOOKBACK`` before it strictly (a corrupt file fails naming file, line and column).
2. :func:`process_interval`: rejects events with reasons (``missing_value``,
   ``duplicate_event_id`` (a later copy of an event id already seen), ``unknown_article`` (not in the latest
   ``articles.csv`` drop up to that day), ``invalid_event_type``, ``wrong_slot`` (in another
   slot's folder)); sessionises by ``session_key`` with 30 minutes of inactivity ending a
   session (events of the lookback only carry sessions into the interval); writes the
   interval's ``event_sessions``, ``funnel_interval``, ``funnel_article``,
   ``event_rejections``, ``event_files`` and a Parquet artifact of ``funnel_article``, all in
   one transaction, replacing that interval's rows (a rerun gives the same rows).
3. :func:`reprocess_late_slots`: late events. Every run looks at the ``LATE_SLOTS`` slots
   before its interval; a slot whose folder now has part files that its last processing did
   not see (``event_files``) is processed again the same way, so its rows include the late
   events. Events arriving more than ``LATE_SLOTS`` x 15 minutes late are picked up only by
   clearing that interval's run (documented limit); ``late_events`` counts, per interval,
   the events that arrived after it closed.

Funnel steps per session: the first view; the first add_to_cart at or after it; the first
purchase at or after that. A step counts in the interval in which it happened. Per article
the same, per (session, article).
"""

from __future__ import annotations

import os
import re
from contextlib import closing
from datetime import UTC, datetime, timedelta

from domains.ecommerce_ml import assets, formats, ingest, lake, registry
from domains.ecommerce_ml.common import (
    Run,
    artifact_output,
    copy_from_duckdb,
    lake_path,
    publish_parquet,
    registered_paths,
)
from domains.ecommerce_ml.db import DATABASE

SLOT = timedelta(minutes=15)
LOOKBACK = timedelta(hours=2)
LATE_SLOTS = 8
INACTIVITY = "30 minutes"
TABLES = ("funnel_interval", "funnel_article", "event_rejections")
SESSIONS = "event_sessions"  # the lake dataset (migration 0007 dropped the table)
# funnel_article's retention in PostgreSQL, where dashboards read it by article and interval: slots older
# than this (before the processed interval's start) leave the table once their Parquet artifact is
# registered; the lake keeps every slot (curated/funnel_article/v=<version>/). 54 MB a day at 1x.
FUNNEL_ARTICLE_PG_DAYS = 90


def funnel_article_pg_days() -> int:
    """The retention in days: ``ECOMMERCE_ML_FUNNEL_ARTICLE_PG_DAYS`` when set, read when a run uses it
    (not when the module is imported: a worker imports it once and runs many tasks), else 90."""
    return int(os.environ.get("ECOMMERCE_ML_FUNNEL_ARTICLE_PG_DAYS") or FUNNEL_ARTICLE_PG_DAYS)


def _slots(start: datetime, end: datetime) -> list[datetime]:
    first = start.replace(minute=start.minute - start.minute % 15, second=0, microsecond=0)
    out = []
    while first < end:
        out.append(first)
        first += SLOT
    return out


def _part_files(root, slots: list[datetime]) -> list[tuple[datetime, object]]:
    """The part files of the slots' folders; the events drop (``raw/events/``) it scanned is
    reported as read, also when no slot has a file yet."""
    lake.record_reads(root / "raw" / "events")
    files = []
    for slot in slots:
        folder = lake.events_slot_dir(root, slot)
        if folder.exists():
            files += [(slot, p) for p in sorted(folder.iterdir(), key=lambda p: p.name)
                      if p.name.startswith("part-") and p.name.endswith(".csv")]
    return files


def _relative(path) -> str:
    return "raw/" + lake.url(path).split("/raw/", 1)[1]


def _load(con, root, start: datetime, end: datetime) -> list[dict]:
    """All part files of [start - LOOKBACK, end) into DuckDB table ``ev`` (+ slot, file, line)."""
    files = _part_files(root, _slots(start - LOOKBACK, end))
    con.execute("CREATE OR REPLACE TABLE ev (event_id VARCHAR, session_key VARCHAR, customer_id VARCHAR,"
                " article_id VARCHAR, event_type VARCHAR, ts TIMESTAMPTZ, _line BIGINT, _slot TIMESTAMPTZ,"
                " _file VARCHAR, _arrival VARCHAR, _order BIGINT)")
    manifest = []
    for order, (slot, path) in enumerate(files):
        with lake.readable(path) as local:
            rows = ingest.load_csv(con, "part", local, formats.EVENTS, lake.url(path))
            sha = lake.sha256_file(local)
        rel = _relative(path)
        con.execute("INSERT INTO ev SELECT *, ?::TIMESTAMPTZ, ?, ?, ? FROM part",
                    [slot, rel, path.name[5:-4], order])
        manifest.append({"path": rel, "slot": slot, "rows": rows, "sha256": sha})
    return manifest


@ingest.fails_fast
def validate_events(run: Run, root=None) -> dict:
    root = root or lake.lake_root()
    with ingest.duckdb_session() as con:
        manifest = _load(con, root, run.start, run.end)
    own = [m for m in manifest if run.start <= m["slot"] < run.end]
    return {"files": len(own), "rows": sum(m["rows"] for m in own), "lookback_files": len(manifest) - len(own)}


def _article_ids(con, root, day) -> str:
    for back in range(0, 8):
        path = lake.hm_day(root, day - timedelta(days=back)) / "articles.csv"
        if path.exists():
            with lake.readable(path) as local:
                ingest.load_csv(con, "articles", local, formats.ARTICLES, lake.url(path))
            con.execute("CREATE OR REPLACE TABLE article_ids AS SELECT DISTINCT article_id FROM articles")
            con.execute("DROP TABLE articles")
            return lake.url(path)
    raise FileNotFoundError(f"no articles.csv drop in the 7 days up to {day}: cannot check the events' article ids")


def _transform(con, start: datetime, end: datetime) -> None:
    """DuckDB tables ``rejected``, ``sess`` (valid events with session ids), ``steps``, ``art_steps``."""
    params = {"s": start, "e": end}
    con.execute("""
        CREATE OR REPLACE TABLE classified AS
        SELECT *, CASE
            WHEN event_id IS NULL OR session_key IS NULL OR article_id IS NULL OR event_type IS NULL OR ts IS NULL
              THEN 'missing_value'
            WHEN row_number() OVER (PARTITION BY event_id ORDER BY _order, _line) > 1 THEN 'duplicate_event_id'
            WHEN ts < _slot OR ts >= _slot + INTERVAL 15 MINUTE THEN 'wrong_slot'
            WHEN event_type NOT IN ('view', 'add_to_cart', 'purchase') THEN 'invalid_event_type'
            WHEN article_id NOT IN (SELECT article_id FROM article_ids) THEN 'unknown_article'
          END AS reason
        FROM ev""")
    con.execute("CREATE OR REPLACE TABLE rejected AS SELECT _slot AS slot_start, _file AS file, _line::INTEGER AS line,"
                " event_id, reason FROM classified WHERE reason IS NOT NULL AND _slot >= $s AND _slot < $e", params)
    con.execute(f"""
        CREATE OR REPLACE TABLE sess AS
        WITH valid AS (
            SELECT event_id, session_key, customer_id, article_id, event_type, ts, _arrival, _slot
            FROM classified WHERE reason IS NULL AND ts < $e
        ), gaps AS (
            SELECT *, CASE WHEN lag(ts) OVER w IS NULL OR ts - lag(ts) OVER w > INTERVAL '{INACTIVITY}' THEN 1 ELSE 0 END
                      AS new_session
            FROM valid WINDOW w AS (PARTITION BY session_key ORDER BY ts, event_id)
        ), numbered AS (
            SELECT *, sum(new_session) OVER (PARTITION BY session_key ORDER BY ts, event_id
                                             ROWS UNBOUNDED PRECEDING) AS session_no
            FROM gaps
        )
        SELECT *, min(ts) OVER (PARTITION BY session_key, session_no) AS session_start,
               session_key || '-' || epoch_ms(min(ts) OVER (PARTITION BY session_key, session_no))::VARCHAR AS session_id
        FROM numbered""", {"e": end})
    for name, keys in (("steps", "session_id"), ("art_steps", "session_id, article_id")):
        con.execute(f"""
            CREATE OR REPLACE TABLE {name} AS
            WITH v AS (SELECT {keys}, min(ts) AS t_view FROM sess WHERE event_type = 'view' GROUP BY ALL),
            c AS (SELECT {', '.join('s.' + k.strip() for k in keys.split(','))}, min(s.ts) AS t_cart FROM sess s
                  JOIN v USING ({keys}) WHERE s.event_type = 'add_to_cart' AND s.ts >= v.t_view GROUP BY ALL),
            p AS (SELECT {', '.join('s.' + k.strip() for k in keys.split(','))}, min(s.ts) AS t_purchase FROM sess s
                  JOIN c USING ({keys}) WHERE s.event_type = 'purchase' AND s.ts >= c.t_cart GROUP BY ALL)
            SELECT * FROM v LEFT JOIN c USING ({keys}) LEFT JOIN p USING ({keys})""")


SESSIONS_SQL = """
    SELECT $s::TIMESTAMPTZ AS slot_start, session_id, any_value(session_key) AS session_key,
           max(customer_id) AS customer_id, min(session_start) AS session_start, min(ts) AS first_ts,
           max(ts) AS last_ts,
           count(*) FILTER (WHERE event_type = 'view')::INTEGER AS views,
           count(*) FILTER (WHERE event_type = 'add_to_cart')::INTEGER AS carts,
           count(*) FILTER (WHERE event_type = 'purchase')::INTEGER AS purchases
    FROM sess WHERE ts >= $s AND ts < $e GROUP BY session_id ORDER BY session_id"""

INTERVAL_SQL = """
    WITH cur AS (SELECT * FROM sess WHERE ts >= $s AND ts < $e),
    st AS (SELECT count(*) FILTER (WHERE t_view >= $s AND t_view < $e) AS viewed,
                  count(*) FILTER (WHERE t_cart >= $s AND t_cart < $e) AS carted,
                  count(*) FILTER (WHERE t_purchase >= $s AND t_purchase < $e) AS purchased FROM steps)
    SELECT $s::TIMESTAMPTZ AS slot_start, $e::TIMESTAMPTZ AS slot_end,
           (SELECT count(*) FROM cur)::INTEGER AS events,
           (SELECT count(*) FROM cur WHERE _arrival > strftime(_slot, '%Y%m%d%H%M'))::INTEGER AS late_events,
           (SELECT count(*) FROM rejected)::INTEGER AS rejected_events,
           (SELECT count(DISTINCT session_id) FROM cur)::INTEGER AS active_sessions,
           (SELECT count(DISTINCT session_id) FROM cur WHERE session_start >= $s)::INTEGER AS new_sessions,
           (SELECT count(*) FROM cur WHERE event_type = 'view')::INTEGER AS views,
           (SELECT count(*) FROM cur WHERE event_type = 'add_to_cart')::INTEGER AS carts,
           (SELECT count(*) FROM cur WHERE event_type = 'purchase')::INTEGER AS purchases,
           st.viewed::INTEGER AS sessions_viewed, st.carted::INTEGER AS sessions_carted,
           st.purchased::INTEGER AS sessions_purchased,
           round(st.carted / nullif(st.viewed, 0), 6) AS view_to_cart_rate,
           round(st.purchased / nullif(st.carted, 0), 6) AS cart_to_purchase_rate
    FROM st"""

ARTICLE_SQL = """
    WITH ev AS (SELECT article_id,
                       count(*) FILTER (WHERE event_type = 'view') AS views,
                       count(*) FILTER (WHERE event_type = 'add_to_cart') AS carts,
                       count(*) FILTER (WHERE event_type = 'purchase') AS purchases
                FROM sess WHERE ts >= $s AND ts < $e GROUP BY article_id),
    st AS (SELECT article_id,
                  count(*) FILTER (WHERE t_view >= $s AND t_view < $e) AS sv,
                  count(*) FILTER (WHERE t_cart >= $s AND t_cart < $e) AS sc,
                  count(*) FILTER (WHERE t_purchase >= $s AND t_purchase < $e) AS sp
           FROM art_steps GROUP BY article_id)
    SELECT $s::TIMESTAMPTZ AS slot_start, article_id, ev.views::INTEGER AS views, ev.carts::INTEGER AS carts,
           ev.purchases::INTEGER AS purchases, coalesce(st.sv, 0)::INTEGER AS sessions_viewed,
           coalesce(st.sc, 0)::INTEGER AS sessions_carted, coalesce(st.sp, 0)::INTEGER AS sessions_purchased
    FROM ev LEFT JOIN st USING (article_id) ORDER BY article_id"""

COLUMNS = {
    "funnel_interval": ["slot_start", "slot_end", "events", "late_events", "rejected_events", "active_sessions",
                        "new_sessions", "views", "carts", "purchases", "sessions_viewed", "sessions_carted",
                        "sessions_purchased", "view_to_cart_rate", "cart_to_purchase_rate"],
    "funnel_article": ["slot_start", "article_id", "views", "carts", "purchases", "sessions_viewed", "sessions_carted",
                       "sessions_purchased"],
    "event_rejections": ["slot_start", "file", "line", "event_id", "reason"],
}


VERSION_FORMAT = "%Y-%m-%dT%H%M"  # a slot's start in a version (2024-06-03T2000), UTC


def version(start: datetime, end: datetime) -> str:
    v = start.astimezone(UTC).strftime(VERSION_FORMAT)
    return v if end - start == SLOT else f"{v}-{end.astimezone(UTC).strftime(VERSION_FORMAT)}"


def sessions_stem(ver: str) -> str:
    """The file name stem of a version's sessions in its day folder (``sessions-2024-06-03T2000``)."""
    return f"sessions-{ver}"


def _lock_version(cur, ver: str) -> None:
    """Serialise the processing of one version (a run's interval and another run's late pass may
    process the same slot at once): a transaction-level advisory lock on the version."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"ecommerce_ml.events:{ver}",))


@ingest.fails_fast
def process_interval(run: Run, start: datetime | None = None, end: datetime | None = None, root=None) -> dict:
    """Events with ts in [start, end) (the run's interval by default) -> the tables and the
    sessions' lake file, registered in one transaction."""
    from shared.lineage import record_postgres_io

    root = root or lake.lake_root()
    start, end = start or run.start, end or run.end
    ver = version(start, end)
    day = start.astimezone(UTC).date().isoformat()
    pg = DATABASE.hook()
    with ingest.duckdb_session() as con, closing(DATABASE.connect(pg)) as conn:
        manifest = _load(con, root, start, end)
        _article_ids(con, root, start.astimezone(UTC).date())
        _transform(con, start, end)
        with conn.cursor() as cur:
            _lock_version(cur, ver)
            for table in ("funnel_article", "event_rejections", "funnel_interval"):
                cur.execute(f"DELETE FROM {table} WHERE slot_start >= %s AND slot_start < %s", (start, end))
            cur.execute("DELETE FROM event_files WHERE slot_start >= %s AND slot_start < %s", (start, end))
            for sql, table in ((INTERVAL_SQL, "funnel_interval"), (ARTICLE_SQL, "funnel_article"),
                               ("SELECT * FROM rejected ORDER BY file, line", "event_rejections")):
                copy_from_duckdb(con, _bind(sql, start, end), cur, table, COLUMNS[table])
            own = [m for m in manifest if start <= m["slot"] < end]
            for m in own:
                cur.execute("INSERT INTO event_files (path, slot_start, rows, sha256) VALUES (%s, %s, %s, %s)",
                            (m["path"], m["slot"], m["rows"], m["sha256"]))
            artifact = publish_parquet(con, _bind(ARTICLE_SQL, start, end), root, "funnel_article", ver,
                                       "funnel_article")
            sessions = publish_parquet(con, _bind(SESSIONS_SQL, start, end), root, SESSIONS, day, sessions_stem(ver))
            outputs = [artifact_output(artifact, "funnel_article"), artifact_output(sessions, SESSIONS)] + [
                registry.table_output(cur, t, t, assets.table(t), "slot_start >= %s AND slot_start < %s", (start, end))
                for t in TABLES]
            for out in outputs:
                registry.register(cur, out, ver, run.dag_id, run.run_id)
            expired = expire_funnel_article(cur, start - timedelta(days=funnel_article_pg_days()))
            cur.execute("SELECT events, late_events, rejected_events, active_sessions, sessions_viewed,"
                        " sessions_carted, sessions_purchased FROM funnel_interval WHERE slot_start = %s", (start,))
            row = cur.fetchone()
        conn.commit()
        removed = _remove_superseded_sessions(conn, root, day)
    record_postgres_io(pg, outputs=[*TABLES, "event_files", "dataset_registry"])
    registry.emit_asset_events(outputs, ver)
    keys = ("events", "late_events", "rejected_events", "active_sessions", "sessions_viewed", "sessions_carted",
            "sessions_purchased")
    return {"version": ver, "files": len(own), "sessions_file": sessions["relative"],
            "superseded_removed": removed, "funnel_article_expired": expired,
            **dict(zip(keys, row or (0,) * len(keys), strict=True))}


def version_bounds(ver: str) -> tuple[datetime, datetime]:
    """[start, end) of a version (:func:`version`: one slot, or ``<start>-<end>``)."""
    def parse(v: str) -> datetime:
        return datetime.strptime(v, VERSION_FORMAT).replace(tzinfo=UTC)

    start = parse(ver[:15])
    return start, parse(ver[16:]) if len(ver) > 15 else start + SLOT


def expire_funnel_article(cur, before: datetime) -> dict:
    """``funnel_article``'s retention: the rows of every processed version that ended at or before
    ``before`` leave the table, with the registry row that described them, when the version's Parquet
    artifact is registered (the lake keeps it); a version without one stays and is counted. In the
    caller's transaction. The first run after an upgrade expires the whole backlog, in one statement."""
    cur.execute("SELECT t.version, a.version IS NOT NULL FROM dataset_registry t LEFT JOIN dataset_registry a"
                " ON a.dataset = t.dataset AND a.kind = 'artifact' AND a.version = t.version"
                " WHERE t.dataset = 'funnel_article' AND t.kind = 'table' AND t.version < %s",
                (before.astimezone(UTC).strftime(VERSION_FORMAT),))
    expired, not_in_lake = [], []
    for ver, in_lake in cur.fetchall():
        start, end = version_bounds(ver)
        if end <= before:
            (expired if in_lake else not_in_lake).append((ver, start, end))
    rows = 0
    if expired:
        cur.execute("DELETE FROM funnel_article f USING unnest(%s::timestamptz[], %s::timestamptz[]) AS r(s, e)"
                    " WHERE f.slot_start >= r.s AND f.slot_start < r.e",
                    ([s for _, s, _ in expired], [e for _, _, e in expired]))
        rows = cur.rowcount
        cur.execute("DELETE FROM dataset_registry WHERE dataset = 'funnel_article' AND kind = 'table'"
                    " AND version = ANY(%s)", ([v for v, _, _ in expired],))
    return {"versions": len(expired), "rows": rows, "kept_not_in_lake": [v for v, _, _ in not_in_lake]}


_SESSIONS_FILE = re.compile(r"sessions-(?P<ver>\d{4}-\d{2}-\d{2}T\d{4}(?:-\d{4}-\d{2}-\d{2}T\d{4})?)-[0-9a-f]{16}\.parquet")


def _remove_superseded_sessions(conn, root, day: str) -> list[str]:
    """Delete the day's sessions files that the registry does not name, for each version of the
    day that has a registered file (the file of an earlier processing with other input), each
    version under its lock, so that a concurrent processing of that slot cannot register a file
    in between. Every processing sweeps its whole day: a file left by a crash between a
    processing's commit and its sweep goes with the day's next processed slot (the next run, a
    slot later), not only when its own slot is processed again. A version with no registered
    file is left alone: its first processing may be writing it now."""
    folder = lake.curated_dir(root, SESSIONS, day)
    if not folder.exists():
        return []
    by_version: dict[str, list] = {}
    for path in folder.iterdir():
        if m := _SESSIONS_FILE.fullmatch(path.name):
            by_version.setdefault(m["ver"], []).append(path)
    removed = []
    for ver in sorted(by_version):
        with conn.cursor() as cur:
            _lock_version(cur, ver)
            cur.execute("SELECT path FROM dataset_registry WHERE dataset = %s AND kind = 'artifact' AND version = %s",
                        (SESSIONS, ver))
            registered = {r[0] for r in cur.fetchall()}
            for path in by_version[ver] if registered else ():
                if lake.url(path) not in registered:
                    path.unlink()
                    removed.append(path.name)
        conn.commit()
    return sorted(removed)


def session_files(first: str, last: str, root=None) -> list[tuple[str, object]]:
    """(version, ObjectStoragePath) of the registered sessions files whose versions are in
    ``[first, last]`` (``2024-06-03T2000``; a day ``2024-06-03`` to ``2024-06-03T9999`` covers its
    slots), oldest first: what a reader of the sessions opens (DuckDB ``read_parquet``)."""
    root = root or lake.lake_root()
    with closing(DATABASE.connect()) as conn, conn.cursor() as cur:
        rows = registered_paths(cur, SESSIONS, first, last)
    return [(v, lake_path(root, p)) for v, p in rows]


SESSION_TYPES = {"slot_start": "TIMESTAMPTZ", "session_id": "VARCHAR", "session_key": "VARCHAR",
                 "customer_id": "VARCHAR", "session_start": "TIMESTAMPTZ", "first_ts": "TIMESTAMPTZ",
                 "last_ts": "TIMESTAMPTZ", "views": "INTEGER", "carts": "INTEGER", "purchases": "INTEGER"}


def move_table_sessions_to_lake(conn, root=None, dag_id: str = "ecommerce_ml_events_funnels") -> dict:
    """Before migration 0007 on a database that the previous release wrote: each slot the table
    ``event_sessions`` holds without a registered lake file is written from the table's rows as the
    file :func:`process_interval` writes (same columns, types and order) and registered, so that the
    migration's check passes and nothing is lost. ``conn`` is a plain connection to the domain's
    database (not :meth:`DATABASE.connect`, which would apply the migration first). Idempotent."""
    import tempfile
    from pathlib import Path

    from shared.db import copy_reader

    moved = {}
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('event_sessions')")
        if cur.fetchone()[0] is None:
            conn.commit()
            return moved
        cur.execute("SELECT DISTINCT slot_start FROM event_sessions ORDER BY 1")
        slots = [r[0] for r in cur.fetchall()]
    root = root or lake.lake_root()
    for slot in slots:
        ver = version(slot, slot + SLOT)
        with conn.cursor() as cur:
            _lock_version(cur, ver)
            cur.execute("SELECT 1 FROM dataset_registry WHERE dataset = %s AND kind = 'artifact'"
                        " AND (version = %s OR version LIKE %s)", (SESSIONS, ver, ver + "-%"))
            if cur.fetchone():
                conn.commit()
                continue
            with ingest.duckdb_session() as con, tempfile.TemporaryDirectory(prefix="ecommerce-ml-move-") as tmp:
                local = Path(tmp) / "sessions.csv"
                with copy_reader(cur, f"COPY (SELECT {', '.join(SESSION_TYPES)} FROM event_sessions"
                                      " WHERE slot_start = %s) TO STDOUT WITH (FORMAT csv, HEADER)", (slot,)) as src, \
                        open(local, "wb") as dst:
                    while block := src.read(1 << 20):
                        dst.write(block)
                con.execute(f"CREATE TABLE held AS SELECT * FROM read_csv('{local}', header = true, "
                            f"columns = {SESSION_TYPES!r}, allow_quoted_nulls = false)")
                artifact = publish_parquet(con, "SELECT * FROM held ORDER BY session_id", root, SESSIONS,
                                           slot.astimezone(UTC).date().isoformat(), sessions_stem(ver))
            registry.register(cur, artifact_output(artifact, SESSIONS), ver, dag_id, "migration-0007")
        conn.commit()
        moved[ver] = artifact["relative"]
    return moved


def _bind(sql: str, start: datetime, end: datetime) -> str:
    """The interval's bounds as literals (COPY and streamed reads take no parameters)."""
    s = f"TIMESTAMPTZ '{start.astimezone(UTC).isoformat()}'"
    e = f"TIMESTAMPTZ '{end.astimezone(UTC).isoformat()}'"
    return sql.replace("$s", s).replace("$e", e)


def late_slots(run: Run, root=None) -> list[datetime]:
    """Slots of the ``LATE_SLOTS`` before the run's interval whose folders have files not yet processed."""
    root = root or lake.lake_root()
    slots = _slots(run.start - LATE_SLOTS * SLOT, run.start)
    files = _part_files(root, slots)
    pg = DATABASE.hook()
    with closing(DATABASE.connect(pg)) as conn, conn.cursor() as cur:
        cur.execute("SELECT path FROM event_files WHERE slot_start >= %s AND slot_start < %s",
                    (slots[0] if slots else run.start, run.start))
        seen = {r[0] for r in cur.fetchall()}
        cur.execute("SELECT slot_start FROM funnel_interval WHERE slot_start >= %s AND slot_start < %s",
                    (slots[0] if slots else run.start, run.start))
        processed = {r[0].astimezone(UTC) for r in cur.fetchall()}
    from shared.lineage import record_postgres_io

    record_postgres_io(pg, inputs=["event_files", "funnel_interval"])
    return sorted({slot for slot, p in files if slot in processed and _relative(p) not in seen})


def reprocess_late_slots(run: Run, root=None) -> dict:
    """Process again each earlier slot that received late files (see the module doc)."""
    root = root or lake.lake_root()
    done = {}
    for slot in late_slots(run, root):
        done[slot.isoformat()] = process_interval(run, slot, slot + SLOT, root)
    return {"reprocessed": done}
