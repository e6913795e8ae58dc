"""The feature store's groups read and compute only what they need, with the values of the
features' one definition: each group's frame equals, exactly, its columns of the full
``user_features`` (generated data in the real embedded PostgreSQL)."""

from __future__ import annotations

import re
from contextlib import closing

import numpy as np
import pandas as pd
import pytest

from domains.aurora.feature_store import FEATURE_GROUPS, group_features
from domains.aurora.features import (
    FEATURE_DEFINITIONS,
    USER_FEATURES,
    history_needs,
    prediction_window,
    user_features,
)
from domains.aurora.history import TABLES, read_history
from domains.aurora.tests.realtime import load_dataset, query

AS_OF = pd.Timestamp("2026-11-30T06:00:00Z")
# What each group may read, written out here (not derived from the code under test).
GROUP_TABLES = {
    "activity": {"life_events"},
    "sleep": {"sleep_records"},
    "exercise": {"exercise_sessions"},
    "social": {"life_events", "social_connections"},
}
# The days before as_of's day each group's features look back on (their longest window), written out.
GROUP_LOOKBACK_DAYS = {"activity": 30, "sleep": 7, "exercise": 28, "social": 7}
NEW_USER = 999_999  # active, no history at all: NaN and zero features


class RecordingConnection:
    """The real connection, keeping the SQL (and parameters) its cursors execute."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.executed: list[tuple[str, object]] = []

    def cursor(self):
        return RecordingCursor(self.conn.cursor(), self.executed)

    def commit(self) -> None:
        self.conn.commit()


class RecordingCursor:
    def __init__(self, cur, executed: list) -> None:
        self.cur, self.executed = cur, executed

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.cur.close()

    def execute(self, sql, params=None):
        self.executed.append((sql, params))
        return self.cur.execute(sql, params)

    def copy(self, sql, params=None):  # read_history's COPY (psycopg 3)
        self.executed.append((sql, params))
        return self.cur.copy(sql, params)

    @property
    def description(self):
        return self.cur.description

    def fetchall(self):
        return self.cur.fetchall()


def tables_read(executed) -> set[str]:
    # a table after FROM; not a column (``extract(epoch FROM q.started_at)``)
    return {t for sql, _ in executed for t in re.findall(r"\bFROM\s+(\w+)\b(?!\.)", sql, flags=re.IGNORECASE)}


@pytest.fixture
def users(domain_db) -> list[int]:
    db = domain_db("aurora")
    load_dataset(users=60, days=40)
    query(db, "INSERT INTO users (id, email, subscription_tier, is_active, created_at) "
              "VALUES (%s, 'new@example.com', 'free', true, %s)", (NEW_USER, AS_OF.to_pydatetime()))
    return sorted(r[0] for r in query(db, "SELECT id FROM users WHERE is_active"))


def test_each_group_equals_its_columns_of_the_full_features_and_reads_only_its_tables(users):
    from domains.aurora.db import DATABASE

    assert tuple(FEATURE_DEFINITIONS) == USER_FEATURES
    start, end = prediction_window(AS_OF)
    with closing(DATABASE.connect()) as conn:
        full = user_features(read_history(conn, start, end, users), end, users)  # everything, as before
        for group, columns in FEATURE_GROUPS.items():
            rec = RecordingConnection(conn)
            frame = group_features(rec, group, AS_OF, users, chunk=25)  # 3 chunks of users
            expected = full[list(columns)]
            # exactly: same values and NaNs, dtypes, index (user_id, int64, same order), columns
            pd.testing.assert_frame_equal(frame, expected, check_exact=True)
            assert frame.index.name == "user_id" and (frame.dtypes == np.float64).all()
            reads = [(sql, p) for sql, p in rec.executed if "FROM" in sql]
            assert tables_read(reads) == GROUP_TABLES[group], (group, tables_read(reads))
            assert len(reads) == 3 * len(GROUP_TABLES[group])  # per chunk, one query per table
            # only the days the group looks back on (sleep: 7 nights, not the 31 days of predictions)
            first_day = AS_OF.normalize() - pd.Timedelta(days=GROUP_LOOKBACK_DAYS[group])
            assert {pd.Timestamp(p["start"]) for _, p in reads} == {first_day}, group
            event_params = [p for sql, p in reads if "life_events" in sql]
            if group == "social":  # only the social events: the rows the social features count
                assert all(p["event_types"] == ["social"] for p in event_params)
            else:
                assert all("event_types" not in p for p in event_params)

        # the data exercises the comparison: real values, and NaNs where there is no history
        assert full.loc[NEW_USER, ["avg_sleep_duration_7d", "sleep_consistency_7d"]].isna().all()
        assert full.loc[NEW_USER, ["activity_count_7d", "exercise_count_7d", "friend_count"]].eq(0).all()
        assert full["sleep_consistency_7d"].notna().sum() > 40
        for columns in FEATURE_GROUPS.values():
            assert full[list(columns)].drop(index=NEW_USER).gt(0).any().all(), columns


def test_a_partial_history_holds_only_what_was_read_and_refuses_other_features(users):
    from domains.aurora.db import DATABASE

    start, end = prediction_window(AS_OF)
    assert history_needs(FEATURE_GROUPS["sleep"]) == (("sleep",), None)
    assert history_needs(FEATURE_GROUPS["social"]) == (("events", "friends"), ("social",))
    assert history_needs() == (("events", "sleep", "exercise", "friends"), None)
    with closing(DATABASE.connect()) as conn:
        full = read_history(conn, start, end, users)
        assert set(full.frames()) == set(TABLES) and full.event_types is None
        needs = history_needs(FEATURE_GROUPS["social"])
        social = read_history(conn, start, end, users, tables=needs.tables, event_types=needs.event_types)
        with pytest.raises(ValueError, match="unknown history table"):
            read_history(conn, start, end, users, tables=["life_events"])
    assert set(social.frames()) == {"events", "friends"} and social.sleep is None and social.users is None
    assert set(social.events["event_type"]) == {"social"}
    pd.testing.assert_frame_equal(social.events.reset_index(drop=True),
                                  full.events[full.events["event_type"] == "social"].reset_index(drop=True))
    with pytest.raises(ValueError, match=r"needs the history's \['sleep'\]"):
        user_features(social, end, users, ["avg_sleep_duration_7d"])
    with pytest.raises(ValueError, match="needs events of types all"):
        user_features(social, end, users, ["activity_count_7d"])  # would count only social events
    with pytest.raises(ValueError, match="unknown feature"):
        user_features(social, end, users, ["no_such_feature"])
