"""Aurora's features: one definition for training, predictions and the feature store.

    history = read_history(conn, start, as_of)              # valid rows only, [start, as_of)
    frame = user_features(history, as_of)                    # one row per user, at as_of
    sets = training_sets(history, as_of)                     # {"energy"|"mood"|"sleep_quality": rows}

Every feature of a day ``d`` is known at the START of ``d``: it reads days before ``d``
(and last night, the night that started on ``d - 1``), never ``d`` itself, so a model
trained on these rows sees at prediction time exactly what it saw in training.

Feature columns (``USER_FEATURES``; the seed's twelve names first):

- activity: ``activity_count_24h`` (yesterday), ``activity_count_7d``, ``activity_count_30d``,
  ``activity_diversity_7d`` (kinds of events), ``total_minutes_7d``, ``social_count_7d``;
- sleep: ``avg_sleep_duration_7d`` (minutes), ``sleep_consistency_7d`` (standard deviation of
  bedtime, minutes; lower is steadier), ``sleep_debt_minutes`` (the last 7 nights' minutes
  short of 8 hours), ``last_sleep_duration``, ``last_sleep_quality``, ``last_bedtime_deviation``
  (minutes from the week's mean bedtime);
- exercise: ``exercise_count_7d``, ``exercise_minutes_7d``, ``exercise_consistency_score``
  (share of the last 28 days with a workout);
- social: ``friend_count`` (accepted ties), ``social_engagement_score`` (social events a day
  over 7 days + friends / 10);
- the user's own level: ``user_energy_mean_30d``, ``user_mood_mean_30d``,
  ``user_sleep_quality_mean_30d``;
- temporal: ``day_of_week``, ``is_weekend``; energy rows add ``hour``, ``hour_sin``,
  ``hour_cos`` and ``exercised_before`` (a workout earlier that day).

A missing value (no sleep record last night, a new user) stays NaN: the three model
libraries split on missing values natively.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from domains.aurora.app import EVENT_TYPES, LEVEL_MAX, LEVEL_MIN, MAX_EVENT_MINUTES, SLEEP_NEED_MINUTES

SEED_FEATURES = (
    "activity_count_24h", "activity_count_7d", "activity_count_30d", "activity_diversity_7d", "total_minutes_7d",
    "avg_sleep_duration_7d", "sleep_consistency_7d", "sleep_debt_minutes",
    "exercise_count_7d", "exercise_consistency_score",
    "friend_count", "social_engagement_score",
)
USER_FEATURES = SEED_FEATURES + (
    "social_count_7d", "last_sleep_duration", "last_sleep_quality", "last_bedtime_deviation", "exercise_minutes_7d",
    "user_energy_mean_30d", "user_mood_mean_30d", "user_sleep_quality_mean_30d", "day_of_week", "is_weekend",
)
ENERGY_EXTRA = ("hour", "hour_sin", "hour_cos", "exercised_before")
TARGET_FEATURES = {
    "energy": USER_FEATURES + ENERGY_EXTRA,
    "mood": USER_FEATURES,
    "sleep_quality": USER_FEATURES,
}
TARGETS = tuple(TARGET_FEATURES)
HISTORY_DAYS = 31  # the longest look-back of a feature (30 days) + the day itself
WARM_UP_DAYS = 7  # training rows need a week of history


@dataclass
class History:
    """The valid rows of a window ``[start, end)`` (``end``: the as-of time)."""

    start: pd.Timestamp
    end: pd.Timestamp
    users: pd.DataFrame  # id, subscription_tier, is_active
    events: pd.DataFrame  # user_id, event_type, started_at, duration_minutes, energy_level, mood_level
    sleep: pd.DataFrame  # user_id, sleep_date, bedtime, duration_minutes, quality_score
    exercise: pd.DataFrame  # user_id, started_at, duration_minutes, intensity
    friends: pd.DataFrame  # user_id, connected_at

    def frames(self) -> dict[str, pd.DataFrame]:
        return {"users": self.users, "events": self.events, "sleep": self.sleep,
                "exercise": self.exercise, "friends": self.friends}


def _ts(value) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


# Only rows the data quality checks would pass: a bad row never reaches a model.
_QUERIES = {
    "users": "SELECT id, subscription_tier, is_active FROM users {users}",
    "events": f"""
        SELECT DISTINCT ON (user_id, event_type, started_at)
               user_id, event_type, started_at, duration_minutes, energy_level, mood_level
          FROM life_events
         WHERE started_at >= %(start)s AND started_at < %(end)s {{user_filter}}
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


def read_history(conn, start, end, user_ids=None) -> History:
    """Read the valid rows of ``[start, end)`` in one repeatable-read snapshot.

    ``user_ids``: only these users (an iterable of ids), else everyone."""
    start, end = _ts(start), _ts(end)
    params = {"start": start.to_pydatetime(), "end": end.to_pydatetime()}
    user_filter = users = ""
    if user_ids is not None:
        params["ids"] = [int(u) for u in user_ids]
        user_filter, users = "AND user_id = ANY(%(ids)s)", "WHERE id = ANY(%(ids)s)"
    frames = {}
    with conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        for name, sql in _QUERIES.items():
            cur.execute(sql.format(user_filter=user_filter, users=users), params)
            cols = [d[0] for d in cur.description]
            frames[name] = pd.DataFrame(cur.fetchall(), columns=cols)
    conn.commit()
    for name, col in (("events", "started_at"), ("sleep", "bedtime"), ("exercise", "started_at"),
                      ("friends", "connected_at")):
        frames[name][col] = pd.to_datetime(frames[name][col], utc=True)
    return History(start, end, **frames)


# -- the day grid ----------------------------------------------------------------------------
def _rsum(a: np.ndarray, window: int) -> np.ndarray:
    """out[:, d] = a[:, d-window:d].sum(axis=1): the previous ``window`` days, ``d`` excluded."""
    zero = np.zeros(a.shape[:1] + (1,) + a.shape[2:], dtype=np.float64)
    c = np.concatenate([zero, np.cumsum(a, axis=1, dtype=np.float64)], axis=1)
    d = np.arange(a.shape[1])
    return c[:, d] - c[:, np.maximum(d - window, 0)]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


@dataclass
class Grid:
    """Per user (rows) and day (columns) of a history: the daily sums the features read."""

    user_ids: np.ndarray
    day0: pd.Timestamp
    days: int
    features: dict[str, np.ndarray]  # name -> (users, days): the feature at the start of each day
    daily: dict[str, np.ndarray]  # name -> (users, days): that day's own values (training targets)


def build_grid(h: History, user_ids=None) -> Grid:
    """Every feature, for every user and every day from ``h.start``'s day to ``h.end``'s day."""
    uids = np.asarray(sorted(set(h.users["id"])) if user_ids is None else list(user_ids), dtype="int64")
    day0 = h.start.normalize()
    nd = int((h.end.normalize() - day0).days) + 1
    n = len(uids)
    index = pd.Index(uids)

    def cells(frame: pd.DataFrame, ts_col: str):
        u = index.get_indexer(frame["user_id"].to_numpy())
        d = ((frame[ts_col].dt.normalize() - day0).dt.days).to_numpy()
        ok = (u >= 0) & (d >= 0) & (d < nd)
        return u[ok], d[ok], ok

    def acc(u, d, values=None) -> np.ndarray:
        out = np.zeros((n, nd), dtype=np.float64)
        np.add.at(out, (u, d), 1.0 if values is None else values)
        return out

    ev = h.events
    u, d, ok = cells(ev, "started_at")
    ev_count = acc(u, d)
    ev_minutes = acc(u, d, ev["duration_minutes"].to_numpy(float)[ok])
    energy_sum = acc(u, d, ev["energy_level"].to_numpy(float)[ok])
    mood_sum = acc(u, d, ev["mood_level"].to_numpy(float)[ok])
    types = pd.Categorical(ev["event_type"].to_numpy()[ok], categories=EVENT_TYPES).codes
    known = types >= 0
    per_type = np.zeros((n, nd, len(EVENT_TYPES)), dtype=np.int16)
    np.add.at(per_type, (u[known], d[known], types[known]), 1)
    social = per_type[:, :, EVENT_TYPES.index("social")].astype(np.float64)

    ex = h.exercise
    u, d, ok = cells(ex, "started_at")
    ex_count = acc(u, d)
    ex_minutes = acc(u, d, ex["duration_minutes"].to_numpy(float)[ok])

    sl = h.sleep
    sl_day = pd.to_datetime(sl["sleep_date"]).dt.tz_localize("UTC")
    su = index.get_indexer(sl["user_id"].to_numpy())
    sd = ((sl_day - day0).dt.days).to_numpy()
    ok = (su >= 0) & (sd >= 0) & (sd < nd)
    su, sd = su[ok], sd[ok]
    sl_dur = np.full((n, nd), np.nan)
    sl_q = np.full((n, nd), np.nan)
    sl_bed = np.full((n, nd), np.nan)
    sl_dur[su, sd] = sl["duration_minutes"].to_numpy(float)[ok]
    sl_q[su, sd] = pd.to_numeric(sl["quality_score"]).to_numpy(float)[ok]
    sl_bed[su, sd] = ((sl["bedtime"] - sl_day).dt.total_seconds() / 60).to_numpy(float)[ok]  # minutes after midnight

    # nights d-7..d-1 (last night is the night that started on d-1)
    has_sleep = (~np.isnan(sl_dur)).astype(float)
    nights_7 = _rsum(has_sleep, 7)
    dur_7 = _rsum(np.nan_to_num(sl_dur), 7)
    bed_7 = _rsum(np.nan_to_num(sl_bed), 7)
    bed2_7 = _rsum(np.nan_to_num(sl_bed) ** 2, 7)
    bed_mean = _ratio(bed_7, nights_7)
    bed_var = np.maximum(_ratio(bed2_7, nights_7) - bed_mean ** 2, 0)
    prev = lambda a: np.concatenate([np.full((n, 1), np.nan), a[:, :-1]], axis=1)  # noqa: E731
    q_count_30 = _rsum((~np.isnan(sl_q)).astype(float), 30)

    f_day = np.zeros((n, nd), dtype=np.int64) + np.arange(nd)
    dow = ((day0.dayofweek + f_day) % 7).astype(float)
    fr = h.friends
    fu = index.get_indexer(fr["user_id"].to_numpy())
    fd = np.clip(((fr["connected_at"].dt.normalize() - day0).dt.days).to_numpy() + 1, 0, nd)  # counts from the next day
    fok = fu >= 0
    fr_new = np.zeros((n, nd + 1))
    np.add.at(fr_new, (fu[fok], fd[fok]), 1.0)
    friends = np.cumsum(fr_new, axis=1)[:, :nd]
    # friends made before the window: all counted from day 0 (connected_at < start)

    social_7 = _rsum(social, 7)
    ev_30 = _rsum(ev_count, 30)
    features = {
        "activity_count_24h": _rsum(ev_count, 1),
        "activity_count_7d": _rsum(ev_count, 7),
        "activity_count_30d": ev_30,
        "activity_diversity_7d": (_rsum(per_type, 7) > 0).sum(axis=2).astype(float),
        "total_minutes_7d": _rsum(ev_minutes, 7),
        "avg_sleep_duration_7d": _ratio(dur_7, nights_7),
        "sleep_consistency_7d": np.where(nights_7 >= 2, np.sqrt(bed_var), np.nan),
        "sleep_debt_minutes": _rsum(np.where(np.isnan(sl_dur), 0, SLEEP_NEED_MINUTES - sl_dur), 7),
        "exercise_count_7d": _rsum(ex_count, 7),
        "exercise_consistency_score": _rsum((ex_count > 0).astype(float), 28) / 28,
        "friend_count": friends,
        "social_engagement_score": social_7 / 7 + friends / 10,
        "social_count_7d": social_7,
        "last_sleep_duration": prev(sl_dur),
        "last_sleep_quality": prev(sl_q),
        "last_bedtime_deviation": np.abs(prev(sl_bed) - bed_mean),
        "exercise_minutes_7d": _rsum(ex_minutes, 7),
        "user_energy_mean_30d": _ratio(_rsum(energy_sum, 30), ev_30),
        "user_mood_mean_30d": _ratio(_rsum(mood_sum, 30), ev_30),
        "user_sleep_quality_mean_30d": _ratio(_rsum(np.nan_to_num(sl_q), 30), q_count_30),
        "day_of_week": dow,
        "is_weekend": (dow >= 5).astype(float),
    }
    daily = {"mood": _ratio(mood_sum, ev_count), "sleep_quality": sl_q, "events": ev_count}
    return Grid(uids, day0, nd, features, daily)


def _frame_at(grid: Grid, rows_u: np.ndarray, rows_d: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({name: grid.features[name][rows_u, rows_d] for name in USER_FEATURES})


def user_features(h: History, as_of=None, user_ids=None) -> pd.DataFrame:
    """One row per user (index ``user_id``): the features at the start of ``as_of``'s day,
    plus ``as_of``. ``h`` must cover the ``HISTORY_DAYS`` days before ``as_of``."""
    as_of = _ts(as_of if as_of is not None else h.end)
    grid = build_grid(h, user_ids)
    d = np.full(len(grid.user_ids), int((as_of.normalize() - grid.day0).days))
    frame = _frame_at(grid, np.arange(len(grid.user_ids)), d)
    frame.index = pd.Index(grid.user_ids, name="user_id")
    return frame


def exercised_before(h: History, user_ids: np.ndarray, times: pd.Series) -> np.ndarray:
    """Per (user, time): was there a workout earlier on that time's day (known in ``h``)?"""
    ex = h.exercise[["user_id", "started_at"]].copy()
    ex["day"] = ex["started_at"].dt.normalize()
    first = ex.groupby(["user_id", "day"])["started_at"].min()
    key = pd.MultiIndex.from_arrays([np.asarray(user_ids), times.dt.normalize().to_numpy()])
    first_at = first.reindex(key).to_numpy()
    out = np.zeros(len(times), dtype=float)
    has = ~pd.isna(first_at)
    out[has] = (pd.DatetimeIndex(first_at[has]) < pd.DatetimeIndex(times.to_numpy()[has])).astype(float)
    return out


def add_hour_features(frame: pd.DataFrame, times: pd.Series) -> pd.DataFrame:
    hour = (times.dt.hour + times.dt.minute / 60).to_numpy(float)
    frame["hour"] = hour
    frame["hour_sin"] = np.sin(2 * np.pi * hour / 24)
    frame["hour_cos"] = np.cos(2 * np.pi * hour / 24)
    frame["day_of_week"] = times.dt.dayofweek.to_numpy(float)
    frame["is_weekend"] = (frame["day_of_week"] >= 5).astype(float)
    return frame


def training_sets(h: History, max_energy_rows: int | None = 250_000, seed: int = 0) -> dict[str, pd.DataFrame]:
    """The rows each model trains and is evaluated on, with ``user_id``, ``day`` (the day's
    midnight, for the time-based split) and the target ``y``.

    - energy: one row per life event (the energy the user reported at that hour); at most
      ``max_energy_rows``, sampled reproducibly;
    - mood: one row per user and day with events (the day's mean mood);
    - sleep_quality: one row per night (the night starting that day).
    Rows of the first ``WARM_UP_DAYS`` days (too little history) are left out."""
    grid = build_grid(h)
    out: dict[str, pd.DataFrame] = {}
    for target in ("mood", "sleep_quality"):
        y = grid.daily[target]
        u, d = np.nonzero(~np.isnan(y))
        keep = d >= WARM_UP_DAYS
        u, d = u[keep], d[keep]
        frame = _frame_at(grid, u, d)
        frame.insert(0, "day", grid.day0 + pd.to_timedelta(d, unit="D"))
        frame.insert(0, "user_id", grid.user_ids[u])
        frame["y"] = y[u, d]
        out[target] = frame
    ev = h.events
    if max_energy_rows is not None and len(ev) > max_energy_rows:
        ev = ev.sample(n=max_energy_rows, random_state=seed)
    ev = ev.sort_values(["started_at", "user_id"], kind="stable").reset_index(drop=True)
    index = pd.Index(grid.user_ids)
    u = index.get_indexer(ev["user_id"].to_numpy())
    d = ((ev["started_at"].dt.normalize() - grid.day0).dt.days).to_numpy()
    keep = (u >= 0) & (d >= WARM_UP_DAYS) & (d < grid.days)
    ev, u, d = ev[keep].reset_index(drop=True), u[keep], d[keep]
    frame = _frame_at(grid, u, d)
    frame = add_hour_features(frame, ev["started_at"])
    frame["exercised_before"] = exercised_before(h, ev["user_id"].to_numpy(), ev["started_at"])
    frame.insert(0, "day", ev["started_at"].dt.normalize().to_numpy())
    frame.insert(0, "user_id", ev["user_id"].to_numpy())
    frame["y"] = ev["energy_level"].to_numpy(float)
    out["energy"] = frame
    return out


def prediction_window(as_of: datetime) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The history ``user_features``/predictions need at ``as_of``: [start, as_of)."""
    as_of = _ts(as_of)
    return as_of.normalize() - timedelta(days=HISTORY_DAYS), as_of
