"""``read_history`` (COPY ... CSV into ``pd.read_csv``) gives exactly the frames the old
construction gave (``pd.DataFrame(cur.fetchall())`` + ``pd.to_datetime(utc=True)``): every table,
values, NaN/NaT, dtypes, column order; NULLs, empty strings, users without rows, a chunk with
no rows at all, a session in another time zone (generated data in the real embedded PostgreSQL)."""

from __future__ import annotations

from contextlib import closing
from datetime import UTC, datetime

import pandas as pd
import pytest

from domains.aurora.features import prediction_window
from domains.aurora.history import TABLES, History, history_queries, read_history
from domains.aurora.tests.realtime import load_dataset, query

AS_OF = pd.Timestamp("2026-11-30T06:00:00Z")
NO_ROWS, NULL_TIER, EMPTY_TIER, NULL_QUALITY = 999_991, 999_992, 999_993, 999_994
TIME_COLUMNS = {"events": "started_at", "sleep": "bedtime", "exercise": "started_at", "friends": "connected_at"}


def old_read_history(conn, start, end, user_ids=None, tables=None, event_types=None) -> History:
    """The reader as it was: rows fetched as Python objects, then framed and the times parsed."""
    queries, params = history_queries(start, end, user_ids, tables, event_types)
    frames = {}
    with conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        for name, sql in queries.items():
            cur.execute(sql, params)
            frames[name] = pd.DataFrame(cur.fetchall(), columns=[d[0] for d in cur.description])
    conn.commit()
    for name, col in TIME_COLUMNS.items():
        if name in frames:
            frames[name][col] = pd.to_datetime(frames[name][col], utc=True)
    return History(pd.Timestamp(start), pd.Timestamp(end), **frames,
                   event_types=tuple(sorted(set(event_types))) if event_types and "events" in frames else None)


def assert_same_history(new: History, old: History) -> None:
    assert list(new.frames()) == list(old.frames())
    assert new.event_types == old.event_types
    for name, frame in old.frames().items():
        # exactly: values, NaN/NaT, dtypes (str, bool, int64/float64, datetime64[us, UTC], date objects), columns
        pd.testing.assert_frame_equal(new.frames()[name], frame, check_exact=True, obj=f"history {name}")
        for col in frame.columns:  # each value's type and repr: None stays None, NaN NaN, "" "", date a date
            got = [(type(v), repr(v)) for v in new.frames()[name][col].tolist()]
            assert got == [(type(v), repr(v)) for v in frame[col].tolist()], (name, col)


@pytest.fixture
def db(domain_db) -> dict:
    return domain_db("aurora")


@pytest.fixture
def users(db) -> list[int]:
    load_dataset(users=60, days=40)
    now = AS_OF.to_pydatetime()
    for uid, tier in ((NO_ROWS, "free"), (NULL_TIER, None), (EMPTY_TIER, ""), (NULL_QUALITY, "pro")):
        query(db, "INSERT INTO users (id, email, subscription_tier, is_active, created_at) "
                  "VALUES (%s, 'x@example.com', %s, true, %s)", (uid, tier, now))
    for i, day in enumerate((25, 26, 27)):  # only NULL quality scores for this user
        bed = datetime(2026, 11, day, 22, 30, 15, 123456 if i else 0, tzinfo=UTC)
        query(db, "INSERT INTO sleep_records (id, user_id, sleep_date, bedtime, wake_time, duration_minutes, "
                  "quality_score, created_at) VALUES (%s, %s, %s, %s, %s + interval '7 hours', 420, NULL, %s)",
              (9_000_000 + i, NULL_QUALITY, bed.date(), bed, bed, now))
    query(db, "INSERT INTO sleep_records (id, user_id, sleep_date, bedtime, wake_time, duration_minutes, "
              "quality_score, created_at) VALUES (9000010, %s, '2026-11-28', '2026-11-28 23:00+00', "
              "'2026-11-29 06:00+00', 420, 7, %s)", (NULL_TIER, now))
    return sorted(r[0] for r in query(db, "SELECT id FROM users"))


def connect(driver: str, db: dict):
    """The provider's default driver (psycopg 3, ``DATABASE.connect()``) or psycopg2."""
    from domains.aurora.db import DATABASE

    if driver == "psycopg":
        return DATABASE.connect()
    import psycopg2

    return psycopg2.connect(host=db["host"], port=db["port"], dbname=db["schema"], user=db["login"],
                            password=db["password"])


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_the_copy_reader_gives_the_old_frames_exactly(users, db, driver):
    start, end = prediction_window(AS_OF)
    cases = [
        (None, None, None),  # everyone, every table
        (users, None, None),
        (users[:20] + [NO_ROWS, NULL_TIER, EMPTY_TIER, NULL_QUALITY], None, None),
        ([NULL_QUALITY, NULL_TIER], ["users", "sleep"], None),  # a column of NULLs only / with a NULL
        ([NULL_QUALITY], ["users", "sleep"], None),  # only NULL quality scores
        ([NO_ROWS], None, None),  # a user without rows: empty tables
        *([([], None, None)] if driver == "psycopg" else []),  # no users (psycopg2: ARRAY[] has no type)
        (users, ["events", "friends"], ["social"]),
    ]
    with closing(connect(driver, db)) as conn:
        for ids, tables, event_types in cases:
            new = read_history(conn, start, end, ids, tables, event_types)
            assert_same_history(new, old_read_history(conn, start, end, ids, tables, event_types))
        full = old_read_history(conn, AS_OF - pd.Timedelta(days=60), AS_OF)  # training's whole history
        assert_same_history(read_history(conn, AS_OF - pd.Timedelta(days=60), AS_OF), full)
        with conn.cursor() as cur:  # another session time zone: the same instants, in UTC
            cur.execute("SET TimeZone = 'America/New_York'")
        conn.commit()
        assert_same_history(read_history(conn, start, end, users), old_read_history(conn, start, end, users))
        with conn.cursor() as cur:
            cur.execute("SHOW TimeZone")  # read_history left the session as it was
            assert cur.fetchone()[0] == "America/New_York"
        conn.rollback()

    # the data exercises the comparison
    assert set(TABLES) == set(full.frames()) and all(len(f) > 100 for n, f in full.frames().items() if n != "users")
    tiers = full.users.set_index("id")["subscription_tier"]
    assert pd.isna(tiers[NULL_TIER]) and tiers[EMPTY_TIER] == ""
    assert str(full.events["started_at"].dtype) == "datetime64[us, UTC]"
    assert (full.sleep["bedtime"].dt.microsecond > 0).any()  # fractional seconds survive
    nulls = full.sleep[full.sleep["user_id"] == NULL_QUALITY]
    assert len(nulls) == 3 and nulls["quality_score"].isna().all() and full.sleep["quality_score"].dtype == "float64"
    assert NO_ROWS not in set(full.events["user_id"]) | set(full.sleep["user_id"])
