"""The generator: deterministic, loads every app table with COPY, a second load with the same
parameters does nothing, and each defect kind is planted where its check will look."""

from __future__ import annotations

from contextlib import closing
from datetime import date

import pandas as pd

from domains.aurora.db import DATABASE
from domains.aurora.local.generator import DEFECT_KINDS, generate, generate_and_load

END = date(2026, 6, 1)


def test_same_parameters_give_the_same_rows_and_another_seed_other_rows():
    a, b = generate(users=30, days=20, end=END), generate(users=30, days=20, end=END)
    for table, frame in a.tables.items():
        pd.testing.assert_frame_equal(frame, b.tables[table], obj=table)
    c = generate(users=30, days=20, end=END, seed=15)
    assert not c.tables["life_events"]["energy_level"].equals(a.tables["life_events"]["energy_level"])


def test_days_cover_the_window_and_nothing_is_in_the_future():
    ds = generate(users=30, days=20, end=END)
    ev, sleep = ds.tables["life_events"], ds.tables["sleep_records"]
    end = pd.Timestamp(END, tz="UTC")
    assert ev["started_at"].max() < end and ev["started_at"].min() >= end - pd.Timedelta(days=20)
    assert sleep["wake_time"].max() <= end
    # one sleep record per user and night, no two events of a user at the same minute
    assert not sleep.duplicated(["user_id", "sleep_date"]).any()
    assert not ev.duplicated(["user_id", "started_at"]).any()
    assert set(ev["energy_level"]) <= set(range(1, 11)) and set(ev["mood_level"]) <= set(range(1, 11))


def test_every_defect_kind_is_planted():
    ds = generate(users=40, days=20, end=END, defects=list(DEFECT_KINDS), defect_count=3)
    assert set(ds.planted) == set(DEFECT_KINDS)
    assert all(len(ids) == 3 for ids in ds.planted.values()), ds.planted


def test_load_replaces_the_tables_once_per_parameters(domain_db):
    domain_db("aurora")
    with closing(DATABASE.connect()) as conn:
        counts = generate_and_load(conn, users=25, days=15, end=END)
        assert counts is not None and counts["users"] == 25
        with conn.cursor() as cur:
            cur.execute("SELECT count(*), count(DISTINCT user_id) FROM life_events")
            assert cur.fetchone() == (counts["life_events"], 25)
            cur.execute("SELECT count(*) FROM sleep_records")
            assert cur.fetchone()[0] == counts["sleep_records"]
        assert generate_and_load(conn, users=25, days=15, end=END) is None  # same parameters: nothing to do
        assert generate_and_load(conn, users=20, days=15, end=END)["users"] == 20
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM users")
            assert cur.fetchone()[0] == 20
