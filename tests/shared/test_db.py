"""shared.db on a real PostgreSQL: migrations, bulk upsert, atomicity under a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg2
import pytest

from shared.db import bulk_upsert, migrate


@pytest.fixture
def dbf(domain_db) -> dict:
    return domain_db("platform_tests")


@pytest.fixture
def conn(dbf):
    c = connect(dbf)
    yield c
    c.close()


def connect(f):
    return psycopg2.connect(host=f["host"], port=f["port"], dbname=f["schema"], user=f["login"], password=f["password"])


@pytest.fixture
def migrations(tmp_path) -> Path:
    d = tmp_path / "migrations"
    d.mkdir()
    (d / "0001_people.sql").write_text(
        "CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL, score numeric, note text);"
    )
    (d / "0002_index.sql").write_text("CREATE INDEX people_name ON people (name);")
    return d


def rows(conn, sql="SELECT id, name, score, note FROM people ORDER BY id"):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def test_migrations_apply_once_and_in_order(conn, migrations):
    assert migrate(conn, migrations) == ["0001_people", "0002_index"]
    assert migrate(conn, migrations) == []
    (migrations / "0003_more.sql").write_text("ALTER TABLE people ADD COLUMN email text;")
    assert migrate(conn, migrations) == ["0003_more"]


def test_edited_migration_is_refused(conn, migrations):
    migrate(conn, migrations)
    (migrations / "0001_people.sql").write_text("CREATE TABLE people (id int);")
    with pytest.raises(RuntimeError, match="was edited after it was applied"):
        migrate(conn, migrations)


def test_concurrent_migrations_apply_each_file_once(dbf, migrations):
    results, errors = [], []

    def run():
        c = connect(dbf)
        try:
            results.append(migrate(c, migrations, lock_name="people"))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results, key=len) == [[], [], [], ["0001_people", "0002_index"]]


def test_upsert_inserts_updates_only_changes_and_is_idempotent(conn, migrations):
    migrate(conn, migrations)
    cols = ["id", "name", "score", "note"]
    data = [(1, "ann", 1.5, None), (2, "bob", None, "x,\"quoted\"\nline"), (3, "cy", 3, "")]
    r = bulk_upsert(conn, "people", cols, data, key=["id"])
    assert (r.inserted, r.updated) == (3, 0)
    again = bulk_upsert(conn, "people", cols, data, key=["id"])
    assert (again.inserted, again.updated) == (0, 0)
    changed = bulk_upsert(conn, "people", cols, [(2, "bob", 9, "x,\"quoted\"\nline"), (4, "dee", 4, None)], key=["id"])
    assert (changed.inserted, changed.updated) == (1, 1)
    got = rows(conn)
    assert [g[0] for g in got] == [1, 2, 3, 4]
    assert got[1][2] == 9 and got[1][3] == "x,\"quoted\"\nline"
    assert got[0][3] is None and got[2][3] == ""


def test_duplicate_keys_in_one_load_last_wins(conn, migrations):
    migrate(conn, migrations)
    r = bulk_upsert(conn, "people", ["id", "name"], [(1, "first"), (1, "second")], key=["id"])
    assert r.inserted == 1
    assert rows(conn, "SELECT name FROM people") == [("second",)]


def test_dataframe_into_an_empty_table_is_copied_then_merged_after(conn, migrations):
    import pandas as pd

    migrate(conn, migrations)
    df = pd.DataFrame({"id": [1, 2, 2], "name": ["a", "b", "b2"]})
    assert bulk_upsert(conn, "people", ["id", "name"], df, key=["id"]).inserted == 2  # straight COPY, de-duplicated
    r = bulk_upsert(conn, "people", ["id", "name"], pd.DataFrame({"id": [2, 3], "name": ["B", "c"]}), key=["id"])
    assert (r.inserted, r.updated) == (1, 1)
    assert rows(conn, "SELECT id, name FROM people ORDER BY id") == [(1, "a"), (2, "B"), (3, "c")]


def test_dataframe_input(conn, migrations):
    import pandas as pd

    migrate(conn, migrations)
    df = pd.DataFrame({"id": [1, 2], "name": ["a", "b"], "score": [0.5, None]})
    r = bulk_upsert(conn, "people", ["id", "name", "score"], df, key=["id"])
    assert r.inserted == 2
    assert rows(conn, "SELECT id, score FROM people ORDER BY id")[1] == (2, None)


KILL_SCRIPT = """
import sys, psycopg2
from shared.db import bulk_upsert
f = dict(host=sys.argv[1], port=int(sys.argv[2]), dbname=sys.argv[3], user=sys.argv[4], password=sys.argv[5])
conn = psycopg2.connect(application_name="kill-test", **f)
total, block_after = int(sys.argv[6]), int(sys.argv[7])
def gen():
    for i in range(total):
        if i == block_after:
            sys.stdin.readline()  # blocks: the test never writes, it kills
        yield (i, "n%d" % i, i, None)
bulk_upsert(conn, "people", ["id", "name", "score", "note"], gen(), key=["id"])
"""
LOCKED_ID = 40_000


def wait_for(conn, sql: str, proc: subprocess.Popen, what: str) -> None:
    """Poll until ``sql`` returns a row (the loader reached a known point); no sleeps to guess."""
    deadline = time.monotonic() + 120
    with conn.cursor() as cur:
        while True:
            cur.execute(sql)
            if cur.fetchone() is not None:
                return
            assert proc.poll() is None, f"the loader exited ({proc.returncode}) before {what}"
            assert time.monotonic() < deadline, f"the loader never reached: {what}"
            time.sleep(0.02)


LOADER_BACKEND = "SELECT pid FROM pg_stat_activity WHERE application_name = 'kill-test'"


@pytest.mark.parametrize("phase", ["copy", "merge"])
def test_killed_load_leaves_nothing_half_written(conn, dbf, migrations, phase):
    """Kill the loader at a point it is known to have reached, inside its transaction:
    ``copy``: rows have reached the server and the row source blocks; ``merge``: the upsert
    waits for a row lock this test holds, after writing the rows before it."""
    migrate(conn, migrations)
    bulk_upsert(conn, "people", ["id", "name"], [(1, "kept"), (LOCKED_ID, "kept")], key=["id"])
    conn.autocommit = True
    holder = connect(dbf)
    if phase == "merge":
        with holder.cursor() as cur:
            cur.execute("SELECT 1 FROM people WHERE id = %s FOR UPDATE", (LOCKED_ID,))
    f = dbf
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, f["host"], str(f["port"]), f["schema"], f["login"], f["password"],
         *(("50000", "-1") if phase == "merge" else ("300000", "200000"))],  # copy: blocks after ~5 MB sent
        stdin=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        if phase == "copy":
            wait_for(conn, "SELECT 1 FROM pg_stat_progress_copy p JOIN pg_stat_activity a USING (pid)"
                           " WHERE a.application_name = 'kill-test' AND p.tuples_processed > 0", proc, "rows copied")
        else:
            wait_for(conn, "SELECT 1 FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted"
                           " WHERE a.application_name = 'kill-test' AND a.wait_event_type = 'Lock'", proc,
                     f"waiting for the lock on row {LOCKED_ID}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        holder.rollback()  # the loader's backend goes on, finds its client gone, and rolls back
        holder.close()
    deadline = time.monotonic() + 120
    while rows(conn, LOADER_BACKEND):  # the backend has ended: its transaction is over
        assert time.monotonic() < deadline, "the killed loader's backend never ended"
        time.sleep(0.02)
    assert rows(conn, "SELECT id, name FROM people ORDER BY id") == [(1, "kept"), (LOCKED_ID, "kept")]
