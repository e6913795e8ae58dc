"""shared.db on a real PostgreSQL: migrations, a domain's database, bulk upsert, atomicity under a kill."""

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

import shared.db
from shared.db import DomainDatabase, bulk_upsert, bulk_upsert_frames, migrate


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


def in_threads(fn, n: int) -> list[BaseException]:
    """Run ``fn`` in ``n`` threads at once; the exceptions they raised."""
    errors: list[BaseException] = []

    def run():
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_concurrent_migrations_apply_each_file_once(dbf, migrations):
    results = []

    def run():
        c = connect(dbf)
        try:
            results.append(migrate(c, migrations, lock_name="people"))
        finally:
            c.close()

    assert not in_threads(run, 4)
    assert sorted(results, key=len) == [[], [], [], ["0001_people", "0002_index"]]


@pytest.fixture
def migrate_calls(monkeypatch) -> list[str]:
    """Every run of shared.db.migrate in this process (the database it ran on)."""
    calls: list[str] = []
    real = shared.db.migrate

    def counting(conn, folder, lock_name=None, **kwargs):
        with conn.cursor() as cur:
            cur.execute("SELECT current_database()")
            calls.append(cur.fetchone()[0])
        return real(conn, folder, lock_name, **kwargs)

    monkeypatch.setattr(shared.db, "migrate", counting)
    return calls


def applied(conn) -> list[str]:
    return [v for (v,) in rows(conn, "SELECT version FROM schema_migrations ORDER BY version")]


def test_domain_database_migrates_once_per_process_however_many_connects(dbf, migrations, migrate_calls):
    database = DomainDatabase("platform_tests", migrations)
    for _ in range(5):
        c = database.connect()
        try:
            assert applied(c) == ["0001_people", "0002_index"]
        finally:
            c.close()
    assert not in_threads(lambda: database.connect().close(), 6)
    assert migrate_calls == [dbf["schema"]]


def test_domain_database_migrates_again_for_new_files_and_for_another_database(
        domain_db, dbf, migrations, migrate_calls):
    database = DomainDatabase("platform_tests", migrations)
    database.connect().close()
    (migrations / "0003_more.sql").write_text("ALTER TABLE people ADD COLUMN email text;")
    c = database.connect()
    try:
        assert applied(c)[-1] == "0003_more"
    finally:
        c.close()
    other = domain_db("platform_tests")  # the same connection id now names another database
    c = database.connect()
    try:
        assert applied(c) == ["0001_people", "0002_index", "0003_more"]
    finally:
        c.close()
    assert migrate_calls == [dbf["schema"], dbf["schema"], other["schema"]]


CONNECT_SCRIPT = """
import sys
from pathlib import Path
from shared.db import DomainDatabase
DomainDatabase("platform_tests", Path(sys.argv[1])).connect().close()
print("connected")
"""


def connect_in_new_process(migrations: Path) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[2]
    return subprocess.run([sys.executable, "-c", CONNECT_SCRIPT, str(migrations)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root)}, timeout=120)


def test_a_new_process_verifies_and_applies_again(conn, dbf, migrations):
    database = DomainDatabase("platform_tests", migrations)
    database.connect().close()
    with conn.cursor() as cur:  # the database changes behind this process's back
        cur.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = '0001_people'")
        cur.execute("DELETE FROM schema_migrations WHERE version = '0002_index'")
        cur.execute("DROP INDEX people_name")
    conn.commit()
    database.connect().close()  # this process migrated already: no check on every connect
    refused = connect_in_new_process(migrations)
    assert refused.returncode != 0 and "was edited after it was applied" in refused.stderr
    with conn.cursor() as cur:
        cur.execute("UPDATE schema_migrations SET checksum = %s WHERE version = '0001_people'",
                    (shared.db.migrations_in(migrations)[0].checksum,))
    conn.commit()
    done = connect_in_new_process(migrations)
    assert done.returncode == 0, done.stderr[-2000:]
    assert applied(conn) == ["0001_people", "0002_index"]
    assert rows(conn, "SELECT count(*) FROM pg_indexes WHERE indexname = 'people_name'") == [(1,)]


def test_a_failed_migration_is_not_remembered(dbf, migrations, migrate_calls):
    (migrations / "0003_broken.sql").write_text("ALTER TABLE nowhere ADD COLUMN x int;")
    database = DomainDatabase("platform_tests", migrations)
    for _ in range(2):
        with pytest.raises(Exception, match="nowhere"):
            database.connect()
    assert len(migrate_calls) == 2


# -- shared components' migrations (shared/migrations/<component>/) -------------------------
@pytest.fixture
def shared_dir(tmp_path, monkeypatch) -> Path:
    """A shared library's migrations folder with one component ``things`` (the real one is
    left alone: a test edits these files)."""
    root = tmp_path / "shared_migrations"
    (root / "things").mkdir(parents=True)
    (root / "things" / "0001_things.sql").write_text("CREATE TABLE things (id int PRIMARY KEY);")
    monkeypatch.setattr(shared.db, "SHARED_MIGRATIONS", root)
    return root


def test_shared_migrations_apply_first_and_are_recorded_with_their_component(conn, migrations, shared_dir):
    # the domain's first migration needs the component's table: only right if that comes first
    (migrations / "0001_people.sql").write_text(
        "CREATE TABLE people (id int PRIMARY KEY REFERENCES things (id), name text NOT NULL, score numeric, note text);"
    )
    assert migrate(conn, migrations, uses=["things"]) == ["things/0001_things", "0001_people", "0002_index"]
    assert applied(conn) == ["0001_people", "0002_index", "things/0001_things"]
    assert migrate(conn, migrations, uses=["things"]) == []
    (shared_dir / "things" / "0002_more.sql").write_text("ALTER TABLE things ADD COLUMN label text;")
    assert migrate(conn, migrations, uses=["things", "things"]) == ["things/0002_more"]


def test_a_shared_version_cannot_collide_with_a_domains(conn, migrations, shared_dir):
    (shared_dir / "things" / "0001_things.sql").rename(shared_dir / "things" / "0001_people.sql")
    assert migrate(conn, migrations, uses=["things"]) == ["things/0001_people", "0001_people", "0002_index"]


def test_edited_shared_migration_is_refused(conn, migrations, shared_dir):
    migrate(conn, migrations, uses=["things"])
    (shared_dir / "things" / "0001_things.sql").write_text("CREATE TABLE things (id bigint PRIMARY KEY);")
    with pytest.raises(RuntimeError, match=r"things/0001_things.sql was edited after it was applied"):
        migrate(conn, migrations, uses=["things"])


def test_an_unknown_shared_component_fails_where_it_is_declared(migrations, shared_dir):
    with pytest.raises(ValueError, match="no shared component 'thing' has migrations; known: things"):
        DomainDatabase("platform_tests", migrations, uses=("thing",))


def test_shared_migrations_run_under_the_domains_lock_in_one_transaction(dbf, conn, migrations, shared_dir):
    """Four processes' worth of connections at once: each file applied once; and a failing
    domain migration leaves no shared table behind either (one transaction)."""
    results = []

    def run():
        c = connect(dbf)
        try:
            results.append(DomainDatabase("platform_tests", migrations, uses=("things",)).migrate(c))
        finally:
            c.close()

    assert not in_threads(run, 4)
    assert sorted(results, key=len) == [[], [], [], ["things/0001_things", "0001_people", "0002_index"]]
    (shared_dir / "things" / "0002_more.sql").write_text("CREATE TABLE more_things (id int);")
    (migrations / "0003_broken.sql").write_text("ALTER TABLE nowhere ADD COLUMN x int;")
    with pytest.raises(Exception, match="nowhere"):
        migrate(conn, migrations, uses=["things"])
    conn.rollback()
    assert rows(conn, "SELECT to_regclass('more_things') IS NULL") == [(True,)]
    assert "things/0002_more" not in applied(conn)


def test_the_cache_key_covers_the_shared_files_used(dbf, migrations, shared_dir, migrate_calls):
    database = DomainDatabase("platform_tests", migrations, uses=("things",))
    before = shared.db.migrations_checksum(migrations, ["things"])
    assert before != shared.db.migrations_checksum(migrations)
    database.connect().close()
    database.connect().close()
    assert len(migrate_calls) == 1
    (shared_dir / "things" / "0002_more.sql").write_text("ALTER TABLE things ADD COLUMN label text;")
    assert shared.db.migrations_checksum(migrations, ["things"]) != before
    c = database.connect()
    try:
        assert applied(c)[-1] == "things/0002_more"
    finally:
        c.close()
    (shared_dir / "things" / "0001_things.sql").write_text("CREATE TABLE things (id bigint PRIMARY KEY);")
    with pytest.raises(RuntimeError, match="was edited after it was applied"):
        database.connect()
    assert len(migrate_calls) == 3


def schema_of(conn) -> dict[str, list]:
    """The user-visible schema: columns, constraints, indexes and sequences of the public schema."""
    q = {
        "columns": "SELECT table_name, column_name, data_type, is_nullable, column_default"
                   " FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> 'schema_migrations'",
        "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
                       " WHERE connamespace = 'public'::regnamespace",
        "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
                   " AND tablename <> 'schema_migrations'",
        "sequences": "SELECT sequencename, data_type::text FROM pg_sequences WHERE schemaname = 'public'",
    }
    return {name: sorted(rows(conn, sql), key=str) for name, sql in q.items()}


AURORA_OUTBOX_0050 = """
CREATE TABLE event_outbox (
    id           bigserial PRIMARY KEY,
    event_id     uuid NOT NULL UNIQUE,
    topic        text NOT NULL,
    event_key    text,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text
);
CREATE INDEX event_outbox_unpublished ON event_outbox (id) WHERE published_at IS NULL;
"""  # aurora's migration 0050_event_outbox.sql as databases applied it before the outbox became shared
OUTBOX_0050_COLUMNS = "id, event_id, topic, event_key, payload, created_at, published_at, attempts, last_error"


def test_a_database_of_the_old_aurora_layout_keeps_its_outbox_and_ends_with_the_same_schema(domain_db, tmp_path):
    from domains.aurora.db import DATABASE

    old_layout = tmp_path / "aurora_old"
    old_layout.mkdir()
    for m in shared.db.migrations_in(DATABASE.migrations):
        (old_layout / m.path.name).write_text(m.sql)
    (old_layout / "0050_event_outbox.sql").write_text(AURORA_OUTBOX_0050)
    assert not (DATABASE.migrations / "0050_event_outbox.sql").exists()

    fresh = connect(domain_db("aurora"))
    old = connect(domain_db("aurora"))
    try:
        assert "outbox/0001_event_outbox" in DATABASE.migrate(fresh)
        assert "0050_event_outbox" in migrate(old, old_layout, lock_name=DATABASE.lock_name)
        with old.cursor() as cur:
            cur.execute("INSERT INTO event_outbox (event_id, topic, event_key, payload, published_at) VALUES"
                        " (gen_random_uuid(), 'aurora.t', 'k1', '{\"n\": 1}', now()),"
                        " (gen_random_uuid(), 'aurora.t', 'k2', '{\"n\": 2}', NULL)")
            cur.execute(f"SELECT {OUTBOX_0050_COLUMNS} FROM event_outbox ORDER BY id")
            kept = cur.fetchall()
        old.commit()

        # 0001 recorded (the table is not touched); 0002 adds the publish mark: the rows keep their
        # columns, the one published before stays published, the other waits
        assert DATABASE.migrate(old) == ["outbox/0001_event_outbox", "outbox/0002_publish_mark"]
        assert rows(old, f"SELECT {OUTBOX_0050_COLUMNS} FROM event_outbox ORDER BY id") == kept
        assert rows(old, "SELECT event_key FROM event_outbox_waiting") == [("k2",)]
        assert schema_of(old) == schema_of(fresh)
        assert set(applied(old)) - set(applied(fresh)) == {"0050_event_outbox"}  # kept, without a file: ignored
        assert DATABASE.migrate(old) == []
        with old.cursor() as cur:  # the sequence goes on after the rows it had given out
            cur.execute("INSERT INTO event_outbox (event_id, topic, payload) VALUES (gen_random_uuid(), 'aurora.t', '{}')"
                        " RETURNING id")
            assert cur.fetchone()[0] > max(r[0] for r in kept)
        old.rollback()
    finally:
        fresh.close()
        old.close()


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


def xmins(conn) -> dict[int, str]:
    return dict(rows(conn, "SELECT id, xmin::text FROM people ORDER BY id"))


@pytest.mark.parametrize("as_frame", [False, True])
def test_unchanged_rows_are_not_rewritten(conn, migrations, as_frame):
    import pandas as pd

    migrate(conn, migrations)
    cols = ["id", "name", "score"]
    first = [(1, "ann", 1.5), (2, "bob", None), (3, "cy", 3.0)]
    bulk_upsert(conn, "people", cols, [(0, "zero", 0.0)], key=["id"])  # not empty: the merge path
    bulk_upsert(conn, "people", cols, first, key=["id"])
    before = xmins(conn)
    second = [(1, "ann", 1.5), (2, "bob", None), (3, "cy", 4.0)]
    load = pd.DataFrame(second, columns=cols) if as_frame else second
    r = bulk_upsert(conn, "people", cols, load, key=["id"])
    assert (r.inserted, r.updated) == (0, 1)
    after = xmins(conn)
    assert after[1] == before[1] and after[2] == before[2]  # equal values (NULL included): same row version
    assert after[3] != before[3]


def test_without_commit_the_load_is_part_of_the_callers_transaction(conn, migrations):
    migrate(conn, migrations)
    bulk_upsert(conn, "people", ["id", "name"], [(1, "kept")], key=["id"])
    bulk_upsert(conn, "people", ["id", "name"], [(1, "changed"), (2, "new")], key=["id"], commit=False)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO people (id, name) VALUES (3, 'the caller''s write')")
    conn.rollback()
    assert rows(conn, "SELECT id, name FROM people") == [(1, "kept")]


def test_concurrent_loads_of_the_same_new_keys_neither_fail_nor_duplicate(conn, dbf, migrations):
    migrate(conn, migrations)
    bulk_upsert(conn, "people", ["id", "name"], [(0, "zero")], key=["id"])
    first = connect(dbf)
    second = connect(dbf)
    try:
        bulk_upsert(first, "people", ["id", "name"], [(i, "first") for i in range(1, 101)], key=["id"], commit=False)
        with second.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            second_pid = cur.fetchone()[0]
        second.commit()
        outcome: list = []

        def load_second():
            try:
                outcome.append(bulk_upsert(second, "people", ["id", "name"],
                                           [(i, "second") for i in range(50, 151)], key=["id"]))
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                outcome.append(exc)

        t = threading.Thread(target=load_second)
        t.start()
        waiting = False
        for _ in range(600):  # until the second load waits for the first one's uncommitted keys
            (waiting,), = rows(conn, f"SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = {second_pid}")
            conn.commit()
            if waiting or not t.is_alive():
                break
            time.sleep(0.05)
        assert waiting, "the second load never waited for the first"
        first.commit()
        t.join(60)
        assert not t.is_alive()
        assert [(o.inserted, o.updated) for o in outcome] == [(50, 51)], outcome
    finally:
        first.close()
        second.close()
    assert rows(conn, "SELECT count(*), count(DISTINCT id) FROM people") == [(151, 151)]
    assert rows(conn, "SELECT count(*) FROM people WHERE name = 'second'") == [(101,)]


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


def test_frames_one_at_a_time_into_an_empty_table_then_merged_once(conn, migrations):
    import pandas as pd

    migrate(conn, migrations)
    made = []

    def frames(chunks):
        for chunk in chunks:  # each frame made when the previous one was sent
            made.append(len(chunk))
            yield pd.DataFrame(chunk, columns=["id", "name"])

    r = bulk_upsert_frames(conn, "people", ["id", "name"], frames([[(1, "a"), (2, "b"), (2, "b2")], [(3, "c")]]),
                           key=["id"])  # straight COPY of each, de-duplicated per frame
    assert (r.inserted, r.updated, made) == (3, 0, [3, 1])
    assert rows(conn, "SELECT id, name FROM people ORDER BY id") == [(1, "a"), (2, "b2"), (3, "c")]
    r = bulk_upsert_frames(conn, "people", ["id", "name"], frames([[(1, "a"), (2, "B")], [(3, "c"), (4, "d")]]),
                           key=["id"])  # not empty: staged, one merge; unchanged rows left alone
    assert (r.inserted, r.updated) == (1, 1)
    assert rows(conn, "SELECT id, name FROM people ORDER BY id") == [(1, "a"), (2, "B"), (3, "c"), (4, "d")]
    r = bulk_upsert_frames(conn, "people", ["id", "name"], frames([]), key=["id"])  # no frames: nothing changes
    assert (r.inserted, r.updated) == (0, 0) and len(rows(conn)) == 4


@pytest.mark.parametrize("first", [[], [(9, "x")]], ids=["empty table", "merge"])
def test_frames_sharing_a_key_fail_and_write_nothing(conn, migrations, first):
    import pandas as pd

    migrate(conn, migrations)
    if first:
        bulk_upsert(conn, "people", ["id", "name"], first, key=["id"])
    frames = (pd.DataFrame(c, columns=["id", "name"]) for c in ([(1, "a")], [(1, "again")]))
    with pytest.raises(psycopg2.Error):
        bulk_upsert_frames(conn, "people", ["id", "name"], frames, key=["id"])
    conn.rollback()
    assert rows(conn, "SELECT id, name FROM people ORDER BY id") == first


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


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_copy_out_binds_its_parameters_on_either_driver(dbf, driver):
    if driver == "psycopg":
        import psycopg

        c = psycopg.connect(host=dbf["host"], port=dbf["port"], dbname=dbf["schema"], user=dbf["login"],
                            password=dbf["password"])
    else:
        c = connect(dbf)
    sql = ("COPY (SELECT n, CASE WHEN n = 2 THEN NULL ELSE %(label)s END AS label FROM generate_series(1, %(n)s) n)"
           " TO STDOUT WITH (FORMAT csv, HEADER, NULL '\\N')")
    try:
        with c.cursor() as cur:
            out = shared.db.copy_out(cur, sql, {"n": 3, "label": "it's; DROP TABLE x"})
    finally:
        c.close()
    assert out.tell() == 0
    assert out.read().decode().splitlines() == ["n,label", "1,it's; DROP TABLE x", "2,\\N", "3,it's; DROP TABLE x"]


def test_copy_rows_of_a_frame_loads_every_value_as_pandas_csv_would(conn):
    """``copy_rows`` writes a DataFrame with DuckDB (``frame_csv``): NULLs, NaN (as NULL, like
    ``to_csv(na_rep)``), quotes, separators, line breaks, the NULL marker as text, empty text,
    booleans, timestamps in another zone and dates reach PostgreSQL unchanged, also from an
    object column that mixes dates and their text."""
    import datetime as dt

    import numpy as np
    import pandas as pd

    from shared.db import copy_rows

    frame = pd.DataFrame({
        "id": [1, 2, 3, 4],
        "txt": ['a,b "q"', "line\nbreak", "\\N", ""],
        "maybe": ["x", None, np.nan, "ü€"],
        "score": [0.1, np.nan, -1e300, 2.5],
        "flag": [True, False, True, False],
        "at": pd.to_datetime(["2026-01-01 10:00", "2026-06-01 23:30", "2026-12-31 00:00", "2026-03-29 02:30"]
                             ).tz_localize("Europe/Berlin", nonexistent="shift_forward"),
        "day": [dt.date(2026, 1, 1), dt.date(2026, 2, 28), None, dt.date(2026, 12, 31)],
    })
    mixed = frame.assign(day=[dt.date(2026, 1, 1), "2026-02-28", None, dt.date(2026, 12, 31)])  # one object column of two types
    with conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE t (id int, txt text, maybe text, score float8, flag bool, at timestamptz, day date)")
        copy_rows(cur, "t", list(frame.columns), frame)
        cur.execute("SELECT * FROM t ORDER BY id")
        got = cur.fetchall()
        cur.execute("TRUNCATE t")
        copy_rows(cur, "t", list(mixed.columns), mixed)
        cur.execute("SELECT * FROM t ORDER BY id")
        assert cur.fetchall() == got
    utc = [t.to_pydatetime().astimezone(dt.UTC) for t in frame["at"]]
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in got] == [
        (1, 'a,b "q"', "x", 0.1, True), (2, "line\nbreak", None, None, False),
        (3, "\\N", None, -1e300, True), (4, "", "ü€", 2.5, False)]
    assert [r[5].astimezone(dt.UTC) for r in got] == utc
    assert [r[6] for r in got] == [dt.date(2026, 1, 1), dt.date(2026, 2, 28), None, dt.date(2026, 12, 31)]


def driver_conn(dbf, driver: str):
    if driver == "psycopg":
        import psycopg

        return psycopg.connect(host=dbf["host"], port=dbf["port"], dbname=dbf["schema"], user=dbf["login"],
                               password=dbf["password"])
    return connect(dbf)


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_copy_frame_reads_types_nulls_and_text_as_the_rows_are(dbf, driver):
    """``copy_frame`` on real PostgreSQL: integers, floats, booleans, text with separators, quotes
    and line breaks, empty text (not NULL), NULLs of every type (NaN/None), bound parameters."""
    import numpy as np

    c = driver_conn(dbf, driver)
    query = ("SELECT * FROM (VALUES (1::bigint, 0.5::float8, true, 'a,b \"q\"'::text, 7::int),"
             " (2, NULL, false, E'line\\nbreak', NULL), (3, -1e300, NULL, '', 9), (4, 2.25, true, NULL, %(n)s))"
             " AS v(id, score, flag, txt, maybe) ORDER BY id")
    try:
        with c.cursor() as cur:
            frame = shared.db.copy_frame(cur, query, {"n": 11}, dtype={"id": "int64", "txt": "object"},
                                         true_values=["t"], false_values=["f"])
            cur.execute("SELECT 1")  # the connection is usable after the COPY
            assert cur.fetchone()[0] == 1
    finally:
        c.close()
    assert list(frame.columns) == ["id", "score", "flag", "txt", "maybe"]
    assert frame["id"].dtype == np.int64 and frame["id"].tolist() == [1, 2, 3, 4]
    assert frame["score"].dtype == np.float64
    assert frame["score"].iloc[[0, 2, 3]].tolist() == [0.5, -1e300, 2.25] and np.isnan(frame["score"].iloc[1])
    assert frame["flag"].tolist()[:2] == [True, False] and frame["flag"].isna().tolist() == [False, False, True, False]
    assert frame["txt"].tolist()[:3] == ['a,b "q"', "line\nbreak", ""] and frame["txt"].isna().tolist()[3]
    assert frame["maybe"].dtype == np.float64 and frame["maybe"].isna().tolist() == [False, True, False, False]
    assert frame["maybe"].dropna().tolist() == [7, 9, 11]


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_copy_frame_of_no_rows_has_the_querys_columns(dbf, driver):
    c = driver_conn(dbf, driver)
    try:
        with c.cursor() as cur:
            frame = shared.db.copy_frame(cur, "SELECT 1 AS a, 'x'::text AS b WHERE false")
    finally:
        c.close()
    assert frame.empty and list(frame.columns) == ["a", "b"]


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_copy_frame_of_a_large_result_equals_the_fetched_rows(dbf, driver):
    """300,000 rows (about 10 MB of CSV: many blocks, rows split across block ends): every value
    as ``fetchall`` gives it, in order."""
    query = ("SELECT n AS id, n %% 7 AS k, 'user-' || n AS label, CASE WHEN n %% 5 = 0 THEN NULL ELSE n / 3.0 END AS x"
             " FROM generate_series(1, %(n)s) n ORDER BY n")
    c = driver_conn(dbf, driver)
    try:
        with c.cursor() as cur:
            frame = shared.db.copy_frame(cur, query, {"n": 300_000}, dtype={"label": "object"})
            cur.execute(query, {"n": 300_000})
            fetched = cur.fetchall()
    finally:
        c.close()
    assert len(frame) == len(fetched) == 300_000
    assert frame["id"].tolist() == [r[0] for r in fetched]
    assert frame["k"].tolist() == [r[1] for r in fetched]
    assert frame["label"].tolist() == [r[2] for r in fetched]
    x = frame["x"].tolist()
    assert [v != v for v in x] == [r[3] is None for r in fetched]  # NaN exactly where NULL
    assert all(abs(a - float(r[3])) < 1e-12 for a, r in zip(x, fetched, strict=True) if r[3] is not None)


def test_copy_reader_raises_the_servers_error_of_a_copy_that_fails_midway(dbf):
    """A query failing after rows were sent (the end of the COPY read from libpq by the reader):
    psycopg's error class for the SQLSTATE, after the rows before it; the connection usable after
    a rollback. And the COPY's rows without an error: its row count reached, nothing left over."""
    import psycopg

    c = driver_conn(dbf, "psycopg")
    try:
        with c.cursor() as cur:
            sql = "COPY (SELECT 100 / (n - 30000) FROM generate_series(1, 40000) n) TO STDOUT"
            with pytest.raises(psycopg.errors.DivisionByZero):
                with shared.db.copy_reader(cur, sql) as stream:
                    read = stream.read()
            c.rollback()
            with shared.db.copy_reader(cur, "COPY (SELECT n FROM generate_series(1, 50000) n) TO STDOUT") as stream:
                read = stream.read()
            assert read == b"".join(b"%d\n" % n for n in range(1, 50_001))
            cur.execute("SELECT 3")
            assert cur.fetchone()[0] == 3
    finally:
        c.close()


def test_copy_reader_hands_blocks_of_the_size_asked_and_the_exact_bytes(dbf):
    """psycopg 3 gives one row per ``Copy.read()``; the reader joins them into blocks of the size
    asked (the last one shorter), splitting rows at block ends, and the bytes are COPY's own.
    Leaving early drains the COPY: the connection is usable again."""
    import psycopg

    c = driver_conn(dbf, "psycopg")
    sql = "COPY (SELECT n, repeat('x', n %% 50) FROM generate_series(1, %(n)s) n) TO STDOUT"
    try:
        with c.cursor() as cur:
            with cur.copy(sql, {"n": 20_000}) as copy:
                expected = b"".join(bytes(r) for r in copy)
            with shared.db.copy_reader(cur, sql, {"n": 20_000}, block_size=4096) as stream:
                raw = stream.raw
                sizes, parts = [], []
                while block := raw.read(10_000):
                    sizes.append(len(block))
                    parts.append(block)
            assert b"".join(parts) == expected
            assert set(sizes[:-1]) == {10_000} and 0 < sizes[-1] <= 10_000
            with shared.db.copy_reader(cur, sql, {"n": 20_000}) as stream:
                assert stream.read(5) == b"1\tx\n2"  # then left early
            cur.execute("SELECT 2")
            assert cur.fetchone()[0] == 2
            assert isinstance(cur, psycopg.Cursor)
    finally:
        c.close()
