"""Migration 0007 drops PostgreSQL's ``event_sessions`` (each slot's registered lake file is the
system of record) only when every slot the table holds has its file; on a database the previous
release wrote, the domain's own migrate step (``DATABASE.migrate``, what the first
``DATABASE.connect()`` of a process runs) moves those slots into the lake first
(``events.move_table_sessions_to_lake`` as ``before_migrate``), so the upgrade needs no manual
step, and the file moved from the table holds exactly the rows the table held, the rows the new
release writes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
import pytest

from domains.ecommerce_ml import events
from domains.ecommerce_ml.common import Run
from domains.ecommerce_ml.db import DATABASE
from domains.ecommerce_ml.tests.conftest import DAY
from shared.db import migrate

SLOT = timedelta(minutes=15)
FIRST = datetime(DAY.year, DAY.month, DAY.day, 20, 0, tzinfo=UTC)
SECOND = FIRST + SLOT
COLUMNS = ", ".join(events.SESSION_TYPES)


def _connect(db):
    return psycopg2.connect(host=db["host"], port=db["port"], dbname=db["schema"], user=db["login"],
                            password=db["password"])


def _table_ddl() -> str:
    """The table as migration 0004 created it (what the previous release wrote into)."""
    text = (DATABASE.migrations / "0004_events_funnels.sql").read_text()
    return re.search(r"CREATE TABLE event_sessions \(.*?\n\);", text, re.S).group(0)


def _file_rows(cur, path: str) -> list[tuple]:
    """A lake file's rows, loaded into a temporary table of the dropped table's types (PostgreSQL compares)."""
    import duckdb

    local = path.removeprefix("file://")
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        rows = con.execute(f"SELECT {COLUMNS} FROM read_parquet(?)", [local]).fetchall()
    cur.execute(_table_ddl().replace("CREATE TABLE event_sessions", "CREATE TEMP TABLE file_rows"))
    cur.executemany(f"INSERT INTO file_rows ({COLUMNS}) VALUES ({', '.join(['%s'] * len(events.SESSION_TYPES))})",
                    rows)
    cur.execute(f"SELECT {COLUMNS} FROM file_rows ORDER BY session_id")
    out = cur.fetchall()
    cur.execute("DROP TABLE file_rows")
    return out


def _registered(cur, ver: str) -> tuple[str, str] | None:
    cur.execute("SELECT path, content_hash FROM dataset_registry WHERE dataset = 'event_sessions' AND kind = 'artifact'"
                " AND version = %s", (ver,))
    return cur.fetchone()


def test_0007_refuses_while_a_slot_is_only_in_the_table_moves_it_then_drops_it(ecom):
    ecom.generate(DAY, scale=2, parts=("articles", "events"))
    root = ecom.root()
    # this release processes both slots (its first connect applied 0007 on the empty database)
    for s in (FIRST, SECOND):
        events.process_interval(Run("ecommerce_ml_events_funnels", "r", s, s + SLOT), root=root)
    conn = _connect(ecom.db)
    try:
        with conn.cursor() as cur:
            cur.execute(_table_ddl())  # the previous release's table (0004), empty for now
            held = {s: _file_rows(cur, _registered(cur, events.version(s, s + SLOT))[0]) for s in (FIRST, SECOND)}
            assert all(len(rows) > 5 for rows in held.values()), {s: len(r) for s, r in held.items()}
            # the database as the previous release left it: 0007 not applied, the table holding both slots,
            # the second slot processed by that release (no lake file, a registry row of kind table)
            cur.execute("DELETE FROM schema_migrations WHERE version = '0007_event_sessions_in_the_lake'")
            for rows in held.values():
                cur.executemany(f"INSERT INTO event_sessions ({COLUMNS}) VALUES"
                                f" ({', '.join(['%s'] * len(events.SESSION_TYPES))})", rows)
            second = events.version(SECOND, SECOND + SLOT)
            path, _ = _registered(cur, second)
            cur.execute("DELETE FROM dataset_registry WHERE dataset = 'event_sessions' AND version = %s", (second,))
            cur.execute("INSERT INTO dataset_registry (dataset, version, kind, path, row_count, schema, content_hash,"
                        " asset_uri, dag_id, run_id) VALUES ('event_sessions', %s, 'table', 'event_sessions', %s, '[]',"
                        " 'rows:0:0', 'ecommerce-ml://table/event_sessions', 'd', 'r')", (second, len(held[SECOND])))
        conn.commit()
        Path(path.removeprefix("file://")).unlink()

        with pytest.raises(psycopg2.Error, match=rf"slots {second} have rows in the table but no registered lake"):
            migrate(conn, DATABASE.migrations, "ecommerce_ml")
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM event_sessions")  # nothing changed
            assert cur.fetchone() == (len(held[FIRST]) + len(held[SECOND]),)

        # the upgrade: the domain's migrate step moves the slot into the lake, then 0007 drops the table
        assert DATABASE.migrate(conn) == ["0007_event_sessions_in_the_lake"]
        assert events.move_table_sessions_to_lake(conn, root) == {}  # idempotent: nothing left to move
        assert DATABASE.migrate(conn) == []
        with conn.cursor() as cur:
            moved_path, _ = _registered(cur, second)
            assert moved_path.split("/curated/", 1)[1].startswith(f"event_sessions/v={DAY}/sessions-{second}-")
            # the moved file holds exactly the rows the table held, which are the rows this release writes
            assert _file_rows(cur, moved_path) == held[SECOND]
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('event_sessions')")
            assert cur.fetchone() == (None,)
            cur.execute("SELECT version, kind FROM dataset_registry WHERE dataset = 'event_sessions' ORDER BY 1")
            assert cur.fetchall() == [(events.version(FIRST, FIRST + SLOT), "artifact"), (second, "artifact")]
    finally:
        conn.close()
