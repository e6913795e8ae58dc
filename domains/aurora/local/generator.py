"""A deterministic Aurora Life dataset: users, their days, nights, workouts, friends,
integrations and gamification, with structure the models can learn and, on request, the
defects that ``data_quality_pipeline`` must catch.

    python -m domains.aurora.local.generator --users 2000 --days 90          # aurora_postgres
    make aurora-data                                                   # the local platform
    generate(users=40, days=30, end=..., defects=DEFECT_KINDS)         # tests: a Dataset

The same parameters give the same rows, byte for byte (one ``numpy`` generator seeded from
``seed``); ``load`` replaces the app tables in one transaction with ``COPY`` and records
the parameters, so loading the same parameters again does nothing.

What drives what (the models must find it; nothing here is read back by them):

- energy (1-10, per life event) = the user's baseline + a circadian curve around the
  user's chronotype (morning peak, afternoon dip, evening fall) + last night's sleep
  (minutes against the user's need, and its quality) + a workout earlier that day - the
  week's sleep debt + noise;
- mood (1-10, per life event) = the user's baseline + last night's sleep + social
  engagement (social events over the last 7 days, friends) + activity diversity (kinds of
  events over the last 7 days) + a lift during social events + noise;
- sleep quality (1-10, per night) = duration against need, bedtime regularity (the week's
  spread and tonight's deviation), the week's sleep debt, a workout that day, a heavy day
  (many events) + noise.

Defect kinds (``DEFECT_KINDS``), each planted ``defect_count`` times, map one to one onto
the checks of :mod:`domains.aurora.quality`; ``Dataset.planted`` names the rows.
"""

from __future__ import annotations

import argparse
import json
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd

from domains.aurora.app import (
    ACHIEVEMENTS,
    EVENT_TYPES,
    EXERCISE_TYPES,
    PROVIDERS,
    level_for_xp,
)
from domains.aurora.features import rolling_sum

# defect kind -> the data quality check that must report it (domains/aurora/quality.py)
DEFECT_KINDS: dict[str, str] = {
    "duplicate_event": "life_events.no_duplicates",
    "future_event": "life_events.valid_timestamps",
    "invalid_duration": "life_events.valid_duration",
    "level_out_of_range": "life_events.levels_in_range",
    "missing_required_field": "life_events.required_fields",
    "invalid_email": "users.valid_email_format",
    "duplicate_email": "users.unique_email",
    "invalid_tier": "users.valid_subscription_tier",
    "inconsistent_active_status": "users.active_status_consistency",
    "stale_integration": "integrations.data_freshness",
    "invalid_provider": "integrations.valid_provider",
    "failing_syncs": "integrations.sync_success_rate",
    "incomplete_sync": "integrations.data_completeness",
    "negative_xp": "gamification.no_negative_xp",
    "level_xp_mismatch": "gamification.level_xp_consistency",
    "invalid_achievement_unlock": "gamification.valid_achievement_unlocks",
    "orphaned_record": "gamification.no_orphaned_records",
}

APP_TABLES = (
    "users", "life_events", "sleep_records", "exercise_sessions", "social_connections",
    "integrations", "integration_syncs", "user_gamification", "achievements", "user_achievements",
)
SYNC_EVERY_HOURS = 6
SYNC_HISTORY_DAYS = 7
_MIN = np.timedelta64(1, "m")


@dataclass
class Dataset:
    params: dict[str, Any]
    tables: dict[str, pd.DataFrame]
    planted: dict[str, list] = field(default_factory=dict)  # defect kind -> ids reported by its check

    def row_counts(self) -> dict[str, int]:
        return {t: len(f) for t, f in self.tables.items()}


def default_end() -> date:
    """Today (UTC): the generated days end at last midnight."""
    return datetime.now(UTC).date()


def _ts(day0: np.datetime64, day: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """datetime64[s] for (day index, fractional hour), rounded to the minute."""
    minutes = np.round(hours * 60).astype("int64")
    return (day0 + day.astype("int64") * np.timedelta64(1, "D") + minutes * _MIN).astype("datetime64[s]")


def _utc(values: np.ndarray) -> pd.Series:
    return pd.Series(pd.to_datetime(values, utc=True))


def circadian(h: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Energy's daily curve at hour ``h`` for a body clock ``shift`` hours off the average."""
    x = h - shift
    return (1.6 * np.exp(-((x - 10.5) ** 2) / 8) - 0.9 * np.exp(-((x - 15.0) ** 2) / 2.5)
            + 0.7 * np.exp(-((x - 18.5) ** 2) / 4) - 0.35 * np.maximum(x - 20.0, 0) ** 1.3)


def generate(
    users: int = 2000,
    days: int = 90,
    end: date | None = None,
    seed: int = 14,
    defects: tuple[str, ...] | list[str] = (),
    defect_count: int = 3,
) -> Dataset:
    """Build the dataset in memory (nothing written). ``end``: the day after the last day."""
    end = end or default_end()
    unknown = sorted(set(defects) - set(DEFECT_KINDS))
    if unknown:
        raise ValueError(f"unknown defect kinds {unknown}; known: {sorted(DEFECT_KINDS)}")
    if users < 10 or days < 14:
        raise ValueError("need at least 10 users and 14 days")
    params = {"users": users, "days": days, "end": end.isoformat(), "seed": seed,
              "defects": sorted(defects), "defect_count": defect_count}
    rng = np.random.default_rng(seed)
    n, nd = users, days
    end64 = np.datetime64(end.isoformat(), "s")
    day0 = end64 - np.timedelta64(nd, "D")
    uid = np.arange(1, n + 1, dtype="int64")

    # -- users and their traits -------------------------------------------------------------
    tier = rng.choice(np.array(["free", "premium", "pro"]), size=n, p=[0.6, 0.28, 0.12])
    active = rng.random(n) >= 0.05
    created = day0 - (rng.integers(1, 400, n) * np.timedelta64(1, "D")) - rng.integers(0, 1440, n) * _MIN
    deactivated = np.where(active, np.datetime64("NaT"), end64 - rng.integers(1, 20, n) * np.timedelta64(1, "D"))
    base_energy = rng.normal(6.2, 0.7, n)
    base_mood = rng.normal(4.3, 0.7, n)
    chrono = rng.normal(0.0, 1.2, n)  # hours later (+) or earlier (-) than the average body clock
    need = rng.normal(460, 25, n)  # minutes of sleep this user needs
    bed_habit = 22.8 + chrono * 0.5 + rng.normal(0, 0.4, n)  # usual bedtime, hours after midnight of the day
    bed_var = rng.uniform(0.15, 1.3, n)  # how irregular their bedtime is (hours)
    ex_prob = rng.beta(2, 3, n)
    sociability = rng.beta(2, 2, n)
    event_rate = rng.uniform(3.0, 7.0, n)

    # -- friends ------------------------------------------------------------------------------
    k = np.minimum(rng.poisson(1 + 8 * sociability), n - 1)
    src = np.repeat(uid, k)
    dst = (src - 1 + rng.integers(1, n, len(src))) % n + 1  # never oneself
    pairs = np.unique(np.concatenate([np.stack([src, dst], 1), np.stack([dst, src], 1)]), axis=0)
    friend_count = np.bincount(pairs[:, 0] - 1, minlength=n)
    social = pd.DataFrame({
        "user_id": pairs[:, 0], "friend_id": pairs[:, 1], "status": "accepted",
        "connected_at": _utc(day0 - rng.integers(1, 300, len(pairs)) * np.timedelta64(1, "D")),
        "last_interaction_at": _utc(end64 - rng.integers(60, 60 * 24 * 30, len(pairs)) * _MIN),
    })

    # -- workouts: at most one a day ------------------------------------------------------------
    ex_today = rng.random((n, nd)) < ex_prob[:, None]
    ex_minutes = np.where(ex_today, rng.integers(20, 76, (n, nd)), 0)
    ex_intensity = rng.integers(3, 10, (n, nd))

    # -- nights: the night that starts on day d -------------------------------------------------
    bed_dev = rng.normal(0, 1, (n, nd)) * bed_var[:, None]
    bedtime_h = bed_habit[:, None] + bed_dev
    dur = need[:, None] + rng.normal(0, 45, (n, nd)) + 0.35 * ex_minutes - 18 * np.abs(bed_dev)
    dur = np.clip(np.round(dur), 180, 660)
    debt = rolling_sum(480 - dur, 7)  # minutes short of 8 h over the previous 7 nights
    bed_spread = np.sqrt(np.maximum(rolling_sum(bed_dev ** 2, 7) / 7, 0))

    # -- the day's life events: slots between waking and bedtime, one event each --------------
    count = np.clip(rng.poisson(event_rate[:, None], (n, nd)), 1, 10)
    count = np.maximum(count, ex_today.astype(int))
    wake_h = np.concatenate([np.full((n, 1), 7.0), (bedtime_h + dur / 60 - 24)[:, :-1]], axis=1)
    wake_h = np.clip(wake_h, 4.5, 11.5)
    ev_u = np.repeat(np.repeat(np.arange(n), nd), count.ravel())
    ev_d = np.repeat(np.tile(np.arange(nd), n), count.ravel())
    starts = np.cumsum(count.ravel()) - count.ravel()
    slot = np.arange(len(ev_u)) - np.repeat(starts, count.ravel())
    c = count[ev_u, ev_d]
    day_start = wake_h[ev_u, ev_d] + 0.5
    span = np.maximum(bedtime_h[ev_u, ev_d] - 1.0 - day_start, 4.0)
    hour = day_start + (slot + rng.uniform(0.1, 0.9, len(ev_u))) * span / c
    hour = np.minimum(hour, 23.9)
    p_social = 0.05 + 0.3 * sociability[ev_u]
    r = rng.random(len(ev_u))
    other = np.array([t for t in EVENT_TYPES if t not in ("social", "exercise")])
    etype = np.where(r < p_social, "social", other[rng.integers(0, len(other), len(ev_u))]).astype(object)
    # exactly one exercise event on a workout day: the first slot picked for the day
    first_pick = np.zeros(len(ev_u), dtype=bool)
    ex_days = np.flatnonzero(ex_today.ravel())
    if len(ex_days):
        pick = starts[ex_days] + rng.integers(0, 10_000, len(ex_days)) % count.ravel()[ex_days]
        first_pick[pick] = True
    is_ex_event = first_pick
    etype[is_ex_event] = "exercise"
    ev_minutes = np.where(etype == "social", rng.integers(30, 181, len(ev_u)), rng.integers(10, 121, len(ev_u)))
    ev_minutes[is_ex_event] = ex_minutes[ev_u[is_ex_event], ev_d[is_ex_event]]

    # 7-day engagement per user-day (previous 7 days), and diversity of kinds of events
    type_idx = pd.Categorical(etype, categories=EVENT_TYPES).codes
    per_type = np.zeros((n, nd, len(EVENT_TYPES)))
    np.add.at(per_type, (ev_u, ev_d, type_idx), 1)
    diversity_7d = (rolling_sum(per_type, 7) > 0).sum(axis=2)
    social_7d = rolling_sum(per_type[:, :, EVENT_TYPES.index("social")], 7)
    engagement = np.minimum(social_7d / 7, 1.5) + np.minimum(friend_count, 20)[:, None] / 20

    # last night: the night that started the day before (day 0 uses the user's usual night)
    last_dur = np.concatenate([need[:, None], dur[:, :-1]], axis=1)
    u_e, d_e = ev_u, ev_d
    ex_hour = np.zeros((n, nd))
    ex_ev = np.flatnonzero(is_ex_event)
    ex_hour[u_e[ex_ev], d_e[ex_ev]] = hour[ex_ev]
    worked_out_before = ex_today[u_e, d_e] & (ex_hour[u_e, d_e] < hour) & ~is_ex_event

    # sleep quality (per night) ---------------------------------------------------------------
    q = (8.5 + 1.3 * (dur - need[:, None]) / 60 - 0.9 * np.abs(bed_dev) - 1.8 * bed_spread
         - 0.45 * np.maximum(debt, 0) / 60 + 0.012 * ex_minutes - 0.12 * np.maximum(count - 5, 0)
         + rng.normal(0, 0.6, (n, nd)))
    quality = np.clip(np.round(q), 1, 10)
    last_q = np.concatenate([np.full((n, 1), 6.0), quality[:, :-1]], axis=1)

    sleep_term = 1.1 * (last_dur - need[:, None]) / 60 + 0.35 * (last_q - 6)
    energy = (base_energy[u_e] + circadian(hour, chrono[u_e]) + sleep_term[u_e, d_e]
              + 1.1 * worked_out_before - 0.2 * np.maximum(debt[u_e, d_e], 0) / 60
              + rng.normal(0, 0.7, len(u_e)))
    mood = (base_mood[u_e] + 0.8 * sleep_term[u_e, d_e] + 1.2 * engagement[u_e, d_e]
            + 0.3 * (diversity_7d[u_e, d_e] - 5) + 0.6 * (etype == "social") + rng.normal(0, 0.7, len(u_e)))
    started = _ts(day0, ev_d, hour)
    events = pd.DataFrame({
        "id": np.arange(1, len(ev_u) + 1, dtype="int64"),
        "user_id": uid[ev_u],
        "event_type": etype.astype(str),
        "started_at": _utc(started),
        "duration_minutes": ev_minutes.astype("int64"),
        "energy_level": np.clip(np.round(energy), 1, 10).astype("int64"),
        "mood_level": np.clip(np.round(mood), 1, 10).astype("int64"),
        "created_at": _utc(started + (ev_minutes + rng.integers(1, 30, len(ev_u))) * _MIN),
    })
    # a user's rows belong to the time they were members: no events before sign-up
    exercise = pd.DataFrame({
        "id": np.arange(1, len(ex_ev) + 1, dtype="int64"),
        "user_id": uid[u_e[ex_ev]],
        "exercise_type": np.array(EXERCISE_TYPES)[rng.integers(0, len(EXERCISE_TYPES), len(ex_ev))],
        "started_at": _utc(started[ex_ev]),
        "duration_minutes": ev_minutes[ex_ev].astype("int64"),
        "intensity": ex_intensity[u_e[ex_ev], d_e[ex_ev]].astype("int64"),
        "created_at": _utc(started[ex_ev] + (ev_minutes[ex_ev] + 5) * _MIN),
    })
    su, sd = np.divmod(np.arange(n * nd), nd)
    bed_ts = _ts(day0, sd, bedtime_h.ravel())
    wake_ts = bed_ts + dur.ravel().astype("int64") * _MIN
    sleep = pd.DataFrame({
        "id": np.arange(1, n * nd + 1, dtype="int64"),
        "user_id": uid[su],
        "sleep_date": pd.Series((day0 + sd * np.timedelta64(1, "D")).astype("datetime64[D]")).dt.date,
        "bedtime": _utc(bed_ts),
        "wake_time": _utc(wake_ts),
        "duration_minutes": dur.ravel().astype("int64"),
        "quality_score": quality.ravel().astype("int64"),
        "created_at": _utc(wake_ts + 10 * _MIN),
    })
    # the last night is still going on at `end`: keep only finished nights
    sleep = sleep[sleep["wake_time"] <= pd.Timestamp(end64, tz="UTC")].reset_index(drop=True)

    last_event = events.groupby("user_id")["started_at"].max()
    users_df = pd.DataFrame({
        "id": uid,
        "email": [f"user{i}@aurora-life.example" for i in uid],
        "subscription_tier": tier,
        "is_active": active,
        "deactivated_at": _utc(deactivated),
        "timezone": "UTC",
        "created_at": _utc(created),
        "last_active_at": last_event.reindex(uid).to_numpy(),
    })

    integrations, syncs = _integrations(rng, uid, day0, end64)
    cat, user_ach, gam = _gamification(rng, uid, nd, ev_u, ex_today, created, day0, end64)

    tables = {
        "users": users_df, "life_events": events, "sleep_records": sleep, "exercise_sessions": exercise,
        "social_connections": social, "integrations": integrations, "integration_syncs": syncs,
        "user_gamification": gam, "achievements": cat, "user_achievements": user_ach,
    }
    ds = Dataset(params, tables)
    plant(ds, defects, defect_count, np.random.default_rng(seed + 1), pd.Timestamp(end64, tz="UTC"))
    return ds


# -- defects --------------------------------------------------------------------------------------
def _integrations(rng: np.random.Generator, uid: np.ndarray, day0: np.datetime64,
                  end64: np.datetime64) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each user's 0-3 integrations and their sync history (the paused ones' syncs dropped)."""
    n = len(uid)
    n_int = rng.integers(0, 4, n)
    iu = np.repeat(uid, n_int)
    prov_idx = np.concatenate([rng.permutation(len(PROVIDERS))[:m] for m in n_int]) if n_int.sum() else np.array([], int)
    integ_status = np.where(rng.random(len(iu)) < 0.9, "active", "paused")
    last_sync = end64 - rng.integers(30, 60 * 20, len(iu)) * _MIN
    integrations = pd.DataFrame({
        "id": np.arange(1, len(iu) + 1, dtype="int64"),
        "user_id": iu,
        "provider": np.array(PROVIDERS)[prov_idx],
        "status": integ_status,
        "connected_at": _utc(day0 - rng.integers(1, 200, len(iu)) * np.timedelta64(1, "D")),
        "last_sync_at": _utc(last_sync),
    })
    per = SYNC_HISTORY_DAYS * 24 // SYNC_EVERY_HOURS
    s_int = np.repeat(np.arange(len(iu)), per)
    s_k = np.tile(np.arange(per), len(iu))
    s_start = last_sync[s_int] - (s_k * SYNC_EVERY_HOURS * 60) * _MIN
    ok = rng.random(len(s_int)) >= 0.01
    expected = rng.poisson(40, len(s_int)) + 1
    syncs = pd.DataFrame({
        "id": np.arange(1, len(s_int) + 1, dtype="int64"),
        "integration_id": s_int + 1,
        "started_at": _utc(s_start),
        "finished_at": _utc(s_start + rng.integers(1, 5, len(s_int)) * _MIN),
        "status": np.where(ok, "success", "failed"),
        "records_expected": expected,
        "records_received": np.where(ok, expected, 0),
        "error": np.where(ok, None, "provider returned HTTP 503"),
    })
    syncs = syncs[integ_status[s_int] == "active"].reset_index(drop=True)
    return integrations, syncs


def _gamification(rng: np.random.Generator, uid: np.ndarray, nd: int, ev_u: np.ndarray, ex_today: np.ndarray,
                  created: np.ndarray, day0: np.datetime64,
                  end64: np.datetime64) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """XP from events and workouts, the achievements unlocked (catalogue, unlocks, totals)."""
    n = len(uid)
    ev_per_user = np.bincount(ev_u, minlength=n)
    ex_per_user = ex_today.sum(axis=1)
    base_xp = 2 * ev_per_user + 5 * ex_per_user
    level0 = np.array([level_for_xp(x) for x in base_xp])
    cat = pd.DataFrame(ACHIEVEMENTS, columns=["id", "code", "name", "xp_reward", "required_level"])
    req = cat["required_level"].to_numpy()
    unlock = (req[None, :] <= level0[:, None]) & (rng.random((n, len(cat))) < 0.7)
    au, ai = np.nonzero(unlock)
    unlocked_at = np.maximum(created[au], day0) + rng.integers(60, (nd - 1) * 1440, len(au)) * _MIN
    user_ach = pd.DataFrame({
        "id": np.arange(1, len(au) + 1, dtype="int64"),
        "user_id": uid[au],
        "achievement_id": cat["id"].to_numpy()[ai],
        "unlocked_at": _utc(unlocked_at),
    })
    total_xp = base_xp + (unlock * cat["xp_reward"].to_numpy()[None, :]).sum(axis=1)
    gam = pd.DataFrame({
        "user_id": uid,
        "total_xp": total_xp.astype("int64"),
        "level": np.array([level_for_xp(x) for x in total_xp], dtype="int64"),
        "updated_at": _utc(np.full(n, end64 - 60 * _MIN)),
    })
    return cat, user_ach, gam


def plant(ds: Dataset, kinds, count: int, rng: np.random.Generator, end: pd.Timestamp) -> None:
    """Plant ``count`` rows of each defect kind; ``ds.planted[kind]`` = the ids its check reports."""
    t = ds.tables
    ev = t["life_events"]
    recent = ev.index[ev["started_at"] >= end - pd.Timedelta(hours=30)].to_numpy()
    used: set[int] = set()

    def pick_rows(pool: np.ndarray, k: int) -> np.ndarray:
        free = np.array([i for i in pool if i not in used])
        out = rng.choice(free, size=k, replace=False)
        used.update(int(i) for i in out)
        return out

    def next_id(frame: pd.DataFrame) -> int:
        return int(frame["id"].max()) + 1

    users = t["users"]
    user_pool = np.arange(len(users))
    used_users: set[int] = set()

    def pick_users(k: int, where: np.ndarray | None = None) -> np.ndarray:
        pool = user_pool if where is None else user_pool[where]
        free = np.array([i for i in pool if i not in used_users])
        out = rng.choice(free, size=k, replace=False)
        used_users.update(int(i) for i in out)
        return out

    for kind in kinds:
        if kind == "duplicate_event":
            rows = ev.loc[pick_rows(recent, count)].copy()
            rows["id"] = np.arange(next_id(ev), next_id(ev) + count)
            ev = pd.concat([ev, rows], ignore_index=True)
            ds.planted[kind] = rows["id"].tolist()
        elif kind == "future_event":
            rows = pick_rows(recent, count)
            ev.loc[rows, "started_at"] = end + pd.to_timedelta(rng.integers(2, 5, count), unit="D")
            ev.loc[rows, "created_at"] = end - pd.Timedelta(hours=1)
            ds.planted[kind] = ev.loc[rows, "id"].tolist()
        elif kind == "invalid_duration":
            rows = pick_rows(recent, count)
            ev.loc[rows, "duration_minutes"] = np.resize(np.array([0, -15, 24 * 60 + 30]), count)
            ds.planted[kind] = ev.loc[rows, "id"].tolist()
        elif kind == "level_out_of_range":
            rows = pick_rows(recent, count)
            for j, r in enumerate(rows):
                ev.loc[r, ["energy_level", "mood_level"][j % 2]] = [0, 11, 15][j % 3]
            ds.planted[kind] = ev.loc[rows, "id"].tolist()
        elif kind == "missing_required_field":
            rows = pick_rows(recent, count)
            cols = ["user_id", "event_type", "started_at", "duration_minutes", "energy_level", "mood_level"]
            ev = ev.astype({"user_id": "Int64", "duration_minutes": "Int64", "energy_level": "Int64",
                            "mood_level": "Int64"})
            for j, r in enumerate(rows):
                ev.loc[r, cols[j % len(cols)]] = None
            ds.planted[kind] = ev.loc[rows, "id"].tolist()
        elif kind == "invalid_email":
            rows = pick_users(count)
            users.loc[rows, "email"] = np.resize(np.array(["not-an-email", "user@", "two words@aurora-life.example"]), count)
            ds.planted[kind] = users.loc[rows, "id"].tolist()
        elif kind == "duplicate_email":
            rows = np.sort(pick_users(2 * count))
            first, second = rows[:count], rows[count:]
            users.loc[second, "email"] = users.loc[first, "email"].str.upper().to_numpy()
            ds.planted[kind] = users.loc[second, "id"].tolist()
        elif kind == "invalid_tier":
            rows = pick_users(count)
            users.loc[rows, "subscription_tier"] = np.resize(np.array(["gold", "enterprise", "Premium"]), count)
            ds.planted[kind] = users.loc[rows, "id"].tolist()
        elif kind == "inconsistent_active_status":
            rows = pick_users(count)
            for j, r in enumerate(rows):
                active = j % 2 == 0  # active yet deactivated, or inactive and never deactivated
                users.loc[r, "is_active"] = active
                users.loc[r, "deactivated_at"] = end - pd.Timedelta(days=3) if active else pd.NaT
            ds.planted[kind] = users.loc[rows, "id"].tolist()
        elif kind in ("stale_integration", "invalid_provider", "failing_syncs", "incomplete_sync"):
            integ, syncs = t["integrations"], t["integration_syncs"]
            taken = set(ds.planted.get("_integrations", []))
            pool = integ.index[(integ["status"] == "active") & ~integ["id"].isin(taken)].to_numpy()
            rows = rng.choice(pool, size=count, replace=False)
            ids = integ.loc[rows, "id"].to_numpy()
            ds.planted.setdefault("_integrations", []).extend(ids.tolist())
            mine = syncs["integration_id"].isin(ids)
            if kind == "stale_integration":
                stale = end - pd.to_timedelta(rng.integers(50, 120, count), unit="h")
                integ.loc[rows, "last_sync_at"] = stale
                cutoff = syncs["integration_id"].map(dict(zip(ids, stale, strict=True)))
                syncs = syncs[~(mine & (syncs["started_at"] > cutoff))]
            elif kind == "invalid_provider":
                integ.loc[rows, "provider"] = np.resize(np.array(["myspace", "fitbitt", "Oura"]), count)
            elif kind == "failing_syncs":
                fail = mine & (rng.random(len(syncs)) < 0.7)
                syncs.loc[fail, ["status", "records_received", "error"]] = ["failed", 0, "provider returned HTTP 401"]
            else:
                one = syncs[mine & (syncs["status"] == "success")].groupby("integration_id").head(1).index
                syncs.loc[one, "records_received"] = (syncs.loc[one, "records_expected"] // 10).to_numpy()
            t["integrations"], t["integration_syncs"] = integ, syncs.reset_index(drop=True)
            ds.planted[kind] = ids.tolist()
        elif kind in ("negative_xp", "level_xp_mismatch"):
            gam = t["user_gamification"]
            rows = pick_users(count)
            if kind == "negative_xp":
                gam.loc[rows, "total_xp"] = -rng.integers(1, 500, count)  # level left as it was
            else:
                gam.loc[rows, "level"] = gam.loc[rows, "level"] + 3
            ds.planted[kind] = gam.loc[rows, "user_id"].tolist()
        elif kind == "invalid_achievement_unlock":
            ua = t["user_achievements"]
            rows = pick_users(count)
            legend = [a[0] for a in ACHIEVEMENTS if a[1] == "legend"][0]
            new = pd.DataFrame({
                "id": np.arange(next_id(ua), next_id(ua) + count),
                "user_id": users.loc[rows, "id"].to_numpy(),
                "achievement_id": legend,
                "unlocked_at": end - pd.Timedelta(days=1),
            })
            new.loc[new.index[-1], ["achievement_id", "unlocked_at"]] = [1, end + pd.Timedelta(days=2)]
            t["user_achievements"] = pd.concat([ua, new], ignore_index=True)
            ds.planted[kind] = new["id"].tolist()
        elif kind == "orphaned_record":
            ua, gam = t["user_achievements"], t["user_gamification"]
            ghost = int(users["id"].max()) + 1000
            g = pd.DataFrame({"user_id": [ghost], "total_xp": [100], "level": [2],
                              "updated_at": [end - pd.Timedelta(hours=2)]})
            new = pd.DataFrame({
                "id": np.arange(next_id(ua), next_id(ua) + max(count - 1, 1)),
                "user_id": ghost + 1 + np.arange(max(count - 1, 1)),
                "achievement_id": 1,
                "unlocked_at": end - pd.Timedelta(days=1),
            })
            t["user_gamification"] = pd.concat([gam, g], ignore_index=True)
            t["user_achievements"] = pd.concat([ua, new], ignore_index=True)
            ds.planted[kind] = [f"user_gamification:{ghost}"] + [f"user_achievements:{i}" for i in new["id"]]
    t["life_events"] = ev
    ds.planted.pop("_integrations", None)


# -- loading --------------------------------------------------------------------------------------
def loaded_params(conn) -> dict | None:
    with conn.cursor() as cur:
        cur.execute("SELECT params FROM generated_datasets WHERE id = 1")
        row = cur.fetchone()
    if row is None:
        return None
    return row[0] if isinstance(row[0], dict) else json.loads(row[0])


def load(conn, ds: Dataset) -> dict[str, int]:
    """Replace the app tables with ``ds`` in one transaction (TRUNCATE, then COPY each)."""
    from shared.db import copy_rows

    with conn.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(APP_TABLES)}")
        for table in APP_TABLES:
            frame = ds.tables[table]
            copy_rows(cur, table, list(frame.columns), frame)
        cur.execute(
            "INSERT INTO generated_datasets (id, params, row_counts, planted, loaded_at) VALUES (1, %s, %s, %s, now())"
            " ON CONFLICT (id) DO UPDATE SET params = EXCLUDED.params, row_counts = EXCLUDED.row_counts,"
            " planted = EXCLUDED.planted, loaded_at = EXCLUDED.loaded_at",
            (json.dumps(ds.params), json.dumps(ds.row_counts()), json.dumps(ds.planted)),
        )
        for table in APP_TABLES:
            cur.execute(f"ANALYZE {table}")
    conn.commit()
    return ds.row_counts()


def generate_and_load(conn, **params) -> dict[str, int] | None:
    """Generate and load unless the same parameters are already loaded (then None)."""
    wanted = {"users": 2000, "days": 90, "end": default_end(), "seed": 14, "defects": (), "defect_count": 3}
    wanted.update({k: v for k, v in params.items() if v is not None})
    key = {**wanted, "end": wanted["end"].isoformat(), "defects": sorted(wanted["defects"])}
    if loaded_params(conn) == key:
        return None
    return load(conn, generate(**wanted))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="python -m domains.aurora.local.generator")
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--end", type=date.fromisoformat, default=None, help="the day after the last day (default today, UTC)")
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--defects", default="", help=f"comma-separated kinds, or 'all': {', '.join(DEFECT_KINDS)}")
    p.add_argument("--defect-count", type=int, default=3)
    args = p.parse_args(argv)
    defects = tuple(DEFECT_KINDS) if args.defects == "all" else tuple(d for d in args.defects.split(",") if d)
    from domains.aurora.db import DATABASE

    t0 = datetime.now(UTC)
    with closing(DATABASE.connect()) as conn:
        counts = generate_and_load(conn, users=args.users, days=args.days, end=args.end, seed=args.seed,
                                   defects=defects, defect_count=args.defect_count)
    took = (datetime.now(UTC) - t0).total_seconds()
    if counts is None:
        print("[aurora-data] already loaded with these parameters: nothing to do", flush=True)
    else:
        print(f"[aurora-data] loaded in {took:.1f} s: {json.dumps(counts)}", flush=True)


if __name__ == "__main__":
    main()
