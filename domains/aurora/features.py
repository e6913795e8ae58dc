"""Aurora's features: one definition for training, predictions and the feature store.

    history = read_history(conn, start, as_of)              # valid rows only, [start, as_of)
    frame = user_features(history, as_of)                    # one row per user, at as_of
    sets = training_sets(history, as_of)                     # {"energy"|"mood"|"sleep_quality": rows}

    needs = history_needs(names)                             # a few features: read only what they need
    h = read_history(conn, start, as_of, ids, needs.tables, needs.event_types)
    frame = user_features(h, as_of, ids, names)              # == user_features(read_history(...), ...)[names]

Each feature has one definition (``FEATURE_DEFINITIONS``: its value from the per-user daily
arrays, and the history tables it reads); a subset computes only the daily arrays it uses.

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

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import NamedTuple

import numpy as np
import pandas as pd

from domains.aurora.app import EVENT_TYPES, SLEEP_NEED_MINUTES
from domains.aurora.history import TABLES, History, utc_timestamp

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


# -- the day grid ----------------------------------------------------------------------------
def rolling_sum(a: np.ndarray, window: int) -> np.ndarray:
    """out[:, d] = a[:, d-window:d].sum(axis=1): the previous ``window`` days, ``d`` excluded."""
    zero = np.zeros(a.shape[:1] + (1,) + a.shape[2:], dtype=np.float64)
    c = np.concatenate([zero, np.cumsum(a, axis=1, dtype=np.float64)], axis=1)
    d = np.arange(a.shape[1])
    return c[:, d] - c[:, np.maximum(d - window, 0)]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


class DailyArrays:
    """Per user (rows) and day (columns) of a history: the daily arrays the features read,
    each computed on first use from the table it needs (a feature group reads only its own)."""

    def __init__(self, h: History, user_ids: np.ndarray, day0: pd.Timestamp, days: int) -> None:
        self.h, self.day0, self.days = h, day0, days
        self.index = pd.Index(user_ids)
        self.n = len(user_ids)

    def _cells(self, frame: pd.DataFrame, ts_col: str):
        u = self.index.get_indexer(frame["user_id"].to_numpy())
        d = ((frame[ts_col].dt.normalize() - self.day0).dt.days).to_numpy()
        ok = (u >= 0) & (d >= 0) & (d < self.days)
        return u[ok], d[ok], ok

    def _acc(self, u, d, values=None) -> np.ndarray:
        out = np.zeros((self.n, self.days), dtype=np.float64)
        np.add.at(out, (u, d), 1.0 if values is None else values)
        return out

    def prev(self, a: np.ndarray) -> np.ndarray:
        """The day before's value (last night's, for a night array)."""
        return np.concatenate([np.full((self.n, 1), np.nan), a[:, :-1]], axis=1)

    # events
    @cached_property
    def _events(self):
        return self._cells(self.h.events, "started_at")

    def _event_values(self, col: str) -> np.ndarray:
        u, d, ok = self._events
        return self._acc(u, d, self.h.events[col].to_numpy(float)[ok])

    @cached_property
    def ev_count(self) -> np.ndarray:
        u, d, _ = self._events
        return self._acc(u, d)

    @cached_property
    def ev_30(self) -> np.ndarray:
        return rolling_sum(self.ev_count, 30)

    @cached_property
    def ev_minutes(self) -> np.ndarray:
        return self._event_values("duration_minutes")

    @cached_property
    def energy_sum(self) -> np.ndarray:
        return self._event_values("energy_level")

    @cached_property
    def mood_sum(self) -> np.ndarray:
        return self._event_values("mood_level")

    @cached_property
    def per_type(self) -> np.ndarray:
        """(users, days, EVENT_TYPES): events of each kind."""
        u, d, ok = self._events
        types = pd.Categorical(self.h.events["event_type"].to_numpy()[ok], categories=EVENT_TYPES).codes
        known = types >= 0
        out = np.zeros((self.n, self.days, len(EVENT_TYPES)), dtype=np.int16)
        np.add.at(out, (u[known], d[known], types[known]), 1)
        return out

    @cached_property
    def social_7(self) -> np.ndarray:
        """Social events over the previous 7 days (reads only the social events)."""
        u, d, ok = self._events
        social = self.h.events["event_type"].to_numpy()[ok] == "social"
        return rolling_sum(self._acc(u[social], d[social]), 7)

    # sleep: one night per row, the night that starts on sleep_date
    @cached_property
    def _nights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sl = self.h.sleep
        sl_day = pd.to_datetime(sl["sleep_date"]).dt.tz_localize("UTC")
        su = self.index.get_indexer(sl["user_id"].to_numpy())
        sd = ((sl_day - self.day0).dt.days).to_numpy()
        ok = (su >= 0) & (sd >= 0) & (sd < self.days)
        su, sd = su[ok], sd[ok]
        dur, quality, bed = (np.full((self.n, self.days), np.nan) for _ in range(3))
        dur[su, sd] = sl["duration_minutes"].to_numpy(float)[ok]
        quality[su, sd] = pd.to_numeric(sl["quality_score"]).to_numpy(float)[ok]
        bed[su, sd] = ((sl["bedtime"] - sl_day).dt.total_seconds() / 60).to_numpy(float)[ok]  # minutes after midnight
        return dur, quality, bed

    @property
    def sl_dur(self) -> np.ndarray:
        return self._nights[0]

    @property
    def sl_q(self) -> np.ndarray:
        return self._nights[1]

    @property
    def sl_bed(self) -> np.ndarray:
        return self._nights[2]

    # nights d-7..d-1 (last night is the night that started on d-1)
    @cached_property
    def nights_7(self) -> np.ndarray:
        return rolling_sum((~np.isnan(self.sl_dur)).astype(float), 7)

    @cached_property
    def bed_mean(self) -> np.ndarray:
        return _ratio(rolling_sum(np.nan_to_num(self.sl_bed), 7), self.nights_7)

    @cached_property
    def bed_var(self) -> np.ndarray:
        return np.maximum(_ratio(rolling_sum(np.nan_to_num(self.sl_bed) ** 2, 7), self.nights_7) - self.bed_mean ** 2, 0)

    # exercise
    @cached_property
    def _workouts(self):
        return self._cells(self.h.exercise, "started_at")

    @cached_property
    def ex_count(self) -> np.ndarray:
        u, d, _ = self._workouts
        return self._acc(u, d)

    @cached_property
    def ex_minutes(self) -> np.ndarray:
        u, d, ok = self._workouts
        return self._acc(u, d, self.h.exercise["duration_minutes"].to_numpy(float)[ok])

    # friends: counted from the day after connected_at; friends made before the window from day 0
    @cached_property
    def friends(self) -> np.ndarray:
        fr = self.h.friends
        fu = self.index.get_indexer(fr["user_id"].to_numpy())
        fd = np.clip(((fr["connected_at"].dt.normalize() - self.day0).dt.days).to_numpy() + 1, 0, self.days)
        fok = fu >= 0
        fr_new = np.zeros((self.n, self.days + 1))
        np.add.at(fr_new, (fu[fok], fd[fok]), 1.0)
        return np.cumsum(fr_new, axis=1)[:, :self.days]

    # the calendar
    @cached_property
    def dow(self) -> np.ndarray:
        f_day = np.zeros((self.n, self.days), dtype=np.int64) + np.arange(self.days)
        return ((self.day0.day_of_week + f_day) % 7).astype(float)


@dataclass(frozen=True)
class Feature:
    """A feature's one definition: its value at the start of each day, from the daily arrays,
    and what it reads (``tables`` of the history; of ``events`` only ``event_types``, if set;
    ``days``: how many days before the day, at most)."""

    compute: Callable[[DailyArrays], np.ndarray]
    tables: tuple[str, ...] = ()
    event_types: tuple[str, ...] | None = None
    days: int = 0  # its look-back: the days before the day it reads (its value on a day needs no older rows)


_EV, _SL, _EX = ("events",), ("sleep",), ("exercise",)
FEATURE_DEFINITIONS: dict[str, Feature] = {
    "activity_count_24h": Feature(lambda a: rolling_sum(a.ev_count, 1), _EV, days=1),
    "activity_count_7d": Feature(lambda a: rolling_sum(a.ev_count, 7), _EV, days=7),
    "activity_count_30d": Feature(lambda a: a.ev_30, _EV, days=30),
    "activity_diversity_7d": Feature(lambda a: (rolling_sum(a.per_type, 7) > 0).sum(axis=2).astype(float), _EV, days=7),
    "total_minutes_7d": Feature(lambda a: rolling_sum(a.ev_minutes, 7), _EV, days=7),
    "avg_sleep_duration_7d": Feature(lambda a: _ratio(rolling_sum(np.nan_to_num(a.sl_dur), 7), a.nights_7), _SL,
                                     days=7),
    "sleep_consistency_7d": Feature(lambda a: np.where(a.nights_7 >= 2, np.sqrt(a.bed_var), np.nan), _SL, days=7),
    "sleep_debt_minutes": Feature(
        lambda a: rolling_sum(np.where(np.isnan(a.sl_dur), 0, SLEEP_NEED_MINUTES - a.sl_dur), 7), _SL, days=7),
    "exercise_count_7d": Feature(lambda a: rolling_sum(a.ex_count, 7), _EX, days=7),
    "exercise_consistency_score": Feature(lambda a: rolling_sum((a.ex_count > 0).astype(float), 28) / 28, _EX,
                                          days=28),
    # every accepted tie made before the day (friends are read without a start: no look-back)
    "friend_count": Feature(lambda a: a.friends, ("friends",)),
    "social_engagement_score": Feature(lambda a: a.social_7 / 7 + a.friends / 10, ("events", "friends"), ("social",),
                                       days=7),
    "social_count_7d": Feature(lambda a: a.social_7, _EV, ("social",), days=7),
    "last_sleep_duration": Feature(lambda a: a.prev(a.sl_dur), _SL, days=1),
    "last_sleep_quality": Feature(lambda a: a.prev(a.sl_q), _SL, days=1),
    "last_bedtime_deviation": Feature(lambda a: np.abs(a.prev(a.sl_bed) - a.bed_mean), _SL, days=7),
    "exercise_minutes_7d": Feature(lambda a: rolling_sum(a.ex_minutes, 7), _EX, days=7),
    "user_energy_mean_30d": Feature(lambda a: _ratio(rolling_sum(a.energy_sum, 30), a.ev_30), _EV, days=30),
    "user_mood_mean_30d": Feature(lambda a: _ratio(rolling_sum(a.mood_sum, 30), a.ev_30), _EV, days=30),
    "user_sleep_quality_mean_30d": Feature(
        lambda a: _ratio(rolling_sum(np.nan_to_num(a.sl_q), 30), rolling_sum((~np.isnan(a.sl_q)).astype(float), 30)), _SL,
        days=30),
    "day_of_week": Feature(lambda a: a.dow),
    "is_weekend": Feature(lambda a: (a.dow >= 5).astype(float)),
}


def _definitions(features: Iterable[str]) -> dict[str, Feature]:
    names = list(dict.fromkeys(features))
    unknown = [f for f in names if f not in FEATURE_DEFINITIONS]
    if unknown:
        raise ValueError(f"unknown feature(s) {unknown}; one of {list(USER_FEATURES)}")
    return {f: FEATURE_DEFINITIONS[f] for f in names}


class HistoryNeeds(NamedTuple):
    tables: tuple[str, ...]  # read_history(tables=...)
    event_types: tuple[str, ...] | None  # read_history(event_types=...)


def history_needs(features: Iterable[str] = USER_FEATURES) -> HistoryNeeds:
    """What ``read_history`` must read for ``user_features(..., user_ids, features)``."""
    defs = _definitions(features).values()
    tables = tuple(t for t in TABLES if any(t in f.tables for f in defs))
    readers = [f for f in defs if "events" in f.tables]
    if not readers or any(f.event_types is None for f in readers):
        return HistoryNeeds(tables, None)
    return HistoryNeeds(tables, tuple(sorted({t for f in readers for t in f.event_types})))


@dataclass
class Grid:
    """Per user (rows) and day (columns) of a history: the features at the start of each day."""

    user_ids: np.ndarray
    day0: pd.Timestamp
    days: int
    features: dict[str, np.ndarray]  # name -> (users, days): the feature at the start of each day
    arrays: DailyArrays

    @property
    def daily(self) -> dict[str, np.ndarray]:
        """name -> (users, days): that day's own values (training targets)."""
        a = self.arrays
        return {"mood": _ratio(a.mood_sum, a.ev_count), "sleep_quality": a.sl_q, "events": a.ev_count}


def build_grid(h: History, user_ids=None, features: Iterable[str] = USER_FEATURES) -> Grid:
    """``features`` (default: all), for every user and every day from ``h.start``'s day to
    ``h.end``'s day. Only what they need is read from ``h`` (see :func:`history_needs`)."""
    defs = _definitions(features)
    for name, f in defs.items():
        missing = [t for t in f.tables if getattr(h, t) is None]
        if missing:
            raise ValueError(f"feature {name} needs the history's {missing}: read_history(tables=...) left them out")
        if "events" in f.tables and h.event_types is not None and (
                f.event_types is None or not set(f.event_types) <= set(h.event_types)):
            raise ValueError(f"feature {name} needs events of types {f.event_types or 'all'}; the history has only "
                             f"{list(h.event_types)}")
    if user_ids is None and h.users is None:
        raise ValueError("build_grid without user_ids needs the history's users")
    uids = np.asarray(sorted(set(h.users["id"])) if user_ids is None else list(user_ids), dtype="int64")
    day0 = h.start.normalize()
    nd = int((h.end.normalize() - day0).days) + 1
    arrays = DailyArrays(h, uids, day0, nd)
    return Grid(uids, day0, nd, {name: f.compute(arrays) for name, f in defs.items()}, arrays)


def _frame_at(grid: Grid, rows_u: np.ndarray, rows_d: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({name: values[rows_u, rows_d] for name, values in grid.features.items()})


def user_features(h: History, as_of=None, user_ids=None, features: Iterable[str] = USER_FEATURES) -> pd.DataFrame:
    """One row per user (index ``user_id``): ``features`` (default: all ``USER_FEATURES``) at the
    start of ``as_of``'s day. ``h`` must cover the ``HISTORY_DAYS`` days before ``as_of`` and
    hold what the features need (:func:`history_needs`; all of it from a default ``read_history``)."""
    as_of = utc_timestamp(as_of if as_of is not None else h.end)
    grid = build_grid(h, user_ids, features)
    d = np.full(len(grid.user_ids), int((as_of.normalize() - grid.day0).days))
    frame = _frame_at(grid, np.arange(len(grid.user_ids)), d)
    frame.index = pd.Index(grid.user_ids, name="user_id")
    return frame


def exercised_before(h: History, user_ids: np.ndarray, times: pd.Series) -> np.ndarray:
    """Per (user, time): was there a workout earlier on that time's day (known in ``h``)?

    Times stay datetime arrays throughout (``Series.array``): ``to_numpy()`` of a time-zone-aware
    column makes one ``Timestamp`` object per row."""
    ex = h.exercise[["user_id", "started_at"]].copy()
    if ex.empty:
        return np.zeros(len(times), dtype=float)
    ex["day"] = ex["started_at"].dt.normalize()
    first = ex.groupby(["user_id", "day"])["started_at"].min()
    key = pd.MultiIndex.from_arrays([np.asarray(user_ids), times.dt.normalize().array])
    first_at = first.reindex(key).array  # NaT where no workout that day: never earlier than a time
    return np.asarray(first_at < times.array, dtype=float)


def add_hour_features(frame: pd.DataFrame, times: pd.Series) -> pd.DataFrame:
    hour = (times.dt.hour + times.dt.minute / 60).to_numpy(float)
    frame["hour"] = hour
    frame["hour_sin"] = np.sin(2 * np.pi * hour / 24)
    frame["hour_cos"] = np.cos(2 * np.pi * hour / 24)
    frame["day_of_week"] = times.dt.day_of_week.to_numpy(float)
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


def feature_window(as_of: datetime, features: Iterable[str] = USER_FEATURES) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The history ``user_features(..., features)`` needs at ``as_of``: [start, as_of), ``start``
    the midnight of the longest look-back of ``features`` (``Feature.days``) before as_of's day
    (a sleep group reads 7 nights, not :data:`HISTORY_DAYS`); the features' values are those
    of any longer window (:func:`rolling_sum` reads only the window's days): exactly, for the
    app's whole minutes and levels (a running sum of fractions may differ in its last bits)."""
    as_of = utc_timestamp(as_of)
    days = max((f.days for f in _definitions(features).values()), default=0)
    return as_of.normalize() - timedelta(days=days), as_of


def prediction_window(as_of: datetime) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The history ``user_features``/predictions need at ``as_of``: [start, as_of)."""
    as_of = utc_timestamp(as_of)
    return as_of.normalize() - timedelta(days=HISTORY_DAYS), as_of
