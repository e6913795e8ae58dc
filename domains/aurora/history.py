"""aurora's history: the valid rows of a window read from its database (I/O only).

:func:`read_history` streams each table as CSV (``COPY (query) TO STDOUT``) into pandas
(``shared.db.copy_frame``, parsed block by block as the server sends it);
``domains.aurora.features`` computes the features from the :class:`History` it returns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from domains.aurora.app import LEVEL_MAX, LEVEL_MIN, MAX_EVENT_MINUTES
from domains.aurora.db import HISTORY_TABLES
from shared.db import copy_frame

# The history's tables: its name for each (a ``History`` field) -> the app's table it reads.
TABLES = HISTORY_TABLES


@dataclass
class History:
    """The valid rows of a window ``[start, end)`` (``end``: the as-of time).

    A table that was not read (``read_history(tables=...)``) is ``None``; ``event_types``: when
    set, ``events`` holds only events of these types."""

    start: pd.Timestamp
    end: pd.Timestamp
    users: pd.DataFrame | None = None  # id, subscription_tier, is_active
    events: pd.DataFrame | None = None  # user_id, event_type, started_at, duration_minutes, energy_level, mood_level
    sleep: pd.DataFrame | None = None  # user_id, sleep_date, bedtime, duration_minutes, quality_score
    exercise: pd.DataFrame | None = None  # user_id, started_at, duration_minutes, intensity
    friends: pd.DataFrame | None = None  # user_id, connected_at
    event_types: tuple[str, ...] | None = None

    def frames(self) -> dict[str, pd.DataFrame]:
        """The tables that were read, by name (``TABLES``' order)."""
        return {name: frame for name in TABLES if (frame := getattr(self, name)) is not None}


def utc_timestamp(value) -> pd.Timestamp:
    """``value`` (a datetime, string or Timestamp; naive means UTC) as a UTC ``pd.Timestamp``:
    aurora's one "as of" normaliser (features, models, predictions)."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


# Only rows the data quality checks would pass: a bad row never reaches a model.
_QUERIES = {
    "users": "SELECT id, subscription_tier, is_active FROM users {users}",
    "events": f"""
        SELECT DISTINCT ON (user_id, event_type, started_at)
               user_id, event_type, started_at, duration_minutes, energy_level, mood_level
          FROM life_events
         WHERE started_at >= %(start)s AND started_at < %(end)s {{user_filter}} {{event_filter}}
           AND user_id IS NOT NULL AND event_type IS NOT NULL
           AND duration_minutes > 0 AND duration_minutes < {MAX_EVENT_MINUTES}
           AND energy_level BETWEEN {LEVEL_MIN} AND {LEVEL_MAX} AND mood_level BETWEEN {LEVEL_MIN} AND {LEVEL_MAX}
         ORDER BY user_id, event_type, started_at, id""",
    "sleep": f"""
        SELECT user_id, sleep_date, bedtime, duration_minutes, quality_score
          FROM sleep_records
         WHERE bedtime >= %(start)s - interval '1 day' AND wake_time <= %(end)s {{user_filter}}
           AND duration_minutes > 0 AND (quality_score IS NULL OR quality_score BETWEEN {LEVEL_MIN} AND {LEVEL_MAX})""",
    "exercise": """
        SELECT user_id, started_at, duration_minutes, intensity
          FROM exercise_sessions
         WHERE started_at >= %(start)s AND started_at < %(end)s {user_filter} AND duration_minutes > 0""",
    "friends": """
        SELECT user_id, connected_at FROM social_connections
         WHERE status = 'accepted' AND connected_at < %(end)s {user_filter}""",
}
# Each query's columns as ``pd.DataFrame(cur.fetchall())`` typed them (the frames the features
# were written against): NOT NULL integers int64, text ``str`` (NULL -> NaN), booleans bool,
# ``sleep_date`` Python ``date`` objects ("date"), the time columns ("time") datetime64[us, UTC]; a nullable
# integer (``None``) is left to the CSV parser: int64, or float64 with NaN once a NULL is read.
_COLUMNS: dict[str, dict[str, str | None]] = {
    "users": {"id": "int64", "subscription_tier": "str", "is_active": "bool"},
    "events": {"user_id": "int64", "event_type": "str", "started_at": "time", "duration_minutes": "int64",
               "energy_level": "int64", "mood_level": "int64"},
    "sleep": {"user_id": "int64", "sleep_date": "date", "bedtime": "time", "duration_minutes": "int64",
              "quality_score": None},
    "exercise": {"user_id": "int64", "started_at": "time", "duration_minutes": "int64", "intensity": "int64"},
    "friends": {"user_id": "int64", "connected_at": "time"},
}
# COPY's NULL marker (``copy_frame``'s): an empty string stays "" (never NaN); a text value "\N"
# would read as NULL (no such value in these columns: tiers and event types are fixed words)
_CSV_NULL = r"\N"


def history_queries(start, end, user_ids=None, tables: Iterable[str] | None = None,
                    event_types: Iterable[str] | None = None) -> tuple[dict[str, str], dict]:
    """The queries :func:`read_history` runs (``{name: sql}``, in ``TABLES``' order of the names
    asked for) and their parameters (bound by the driver, never formatted into the SQL)."""
    start, end = utc_timestamp(start), utc_timestamp(end)
    names = list(TABLES) if tables is None else list(dict.fromkeys(tables))
    unknown = sorted(set(names) - set(TABLES))
    if unknown:
        raise ValueError(f"unknown history table(s) {unknown}; one of {list(TABLES)}")
    params: dict = {"start": start.to_pydatetime(), "end": end.to_pydatetime()}
    user_filter = users = event_filter = ""
    if user_ids is not None:
        params["ids"] = [int(u) for u in user_ids]
        user_filter, users = "AND user_id = ANY(%(ids)s)", "WHERE id = ANY(%(ids)s)"
    if event_types is not None:
        params["event_types"] = sorted(set(event_types))
        event_filter = "AND event_type = ANY(%(event_types)s)"
    sql = {name: _QUERIES[name].format(user_filter=user_filter, users=users, event_filter=event_filter)
           for name in names}
    return sql, params


def _select_sql(name: str, sql: str) -> str:
    """The table's query (``_QUERIES``) with the time columns as microseconds since the epoch and
    ``sleep_date`` as days since it (integers: parsed without strings or time zones)."""
    select = []
    for col, kind in _COLUMNS[name].items():
        if kind == "time":
            select.append(f"(extract(epoch FROM q.{col}) * 1000000)::bigint AS {col}")
        elif kind == "date":
            select.append(f"(q.{col} - DATE '1970-01-01') AS {col}")
        else:
            select.append(f"q.{col}")
    # a projection over the query: its rows in its order (events: ORDER BY of the DISTINCT ON)
    return f"SELECT {', '.join(select)} FROM ({sql}) AS q"


def _read_table(cur, name: str, sql: str, params: dict) -> pd.DataFrame:
    """One table's rows (``_select_sql``, read by ``copy_frame``) as the frame ``pd.DataFrame(rows)``
    + ``pd.to_datetime(utc=True)`` built: same columns, dtypes, values, NaN/NaT."""
    spec = _COLUMNS[name]
    frame = copy_frame(cur, _select_sql(name, sql), params, null=_CSV_NULL,
                       dtype={c: t for c, t in spec.items() if t in ("int64", "str")},
                       true_values=["t"], false_values=["f"])
    if list(frame.columns) != list(spec):
        raise RuntimeError(f"history {name}: the query's columns {list(frame.columns)} are not {list(spec)}")
    if frame.empty:  # no rows: what DataFrame([], columns=...) gave (object columns), times then parsed
        frame = pd.DataFrame([], columns=list(spec))
        for col, kind in spec.items():
            if kind == "time":
                frame[col] = pd.to_datetime(frame[col], utc=True)
        return frame
    for col, kind in spec.items():
        if kind == "time":
            frame[col] = pd.to_datetime(frame[col], unit="us", utc=True).astype("datetime64[us, UTC]")
        elif kind == "date":  # Python dates, as the driver gave them
            frame[col] = frame[col].to_numpy().astype("datetime64[D]").astype(object)
        elif kind in (None, "str") and frame[col].isna().all():  # only NULLs: a column of None
            frame[col] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    return frame


def read_history(conn, start, end, user_ids=None, tables: Iterable[str] | None = None,
                 event_types: Iterable[str] | None = None) -> History:
    """Read the valid rows of ``[start, end)`` in one repeatable-read snapshot.

    ``user_ids``: only these users (an iterable of ids), else everyone. ``tables``: only these
    (names of ``TABLES``; the others stay ``None``), else all. ``event_types``: only events of
    these types (else all). :func:`history_needs` gives both for a set of features.

    Each table streams as CSV (``COPY (query) TO STDOUT``, its parameters bound client-side by
    the driver) into ``pd.read_csv`` block by block (``shared.db.copy_frame``): the frames
    ``pd.DataFrame(cur.fetchall())`` gave, without a Python object per value and without the
    whole CSV in memory (side by side: ``python -m benchmarks.aurora_features --reader``)."""
    queries, params = history_queries(start, end, user_ids, tables, event_types)
    frames = {}
    with conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        for name, sql in queries.items():
            frames[name] = _read_table(cur, name, sql, params)
    conn.commit()
    return History(utc_timestamp(start), utc_timestamp(end), **frames,
                   event_types=tuple(params["event_types"]) if "events" in frames and event_types is not None else None)
