"""Benchmark (not a test): aurora's three models at the generator's default scale.

The generated dataset (USERS users, DAYS days; default 2000 x 90, as `make start` loads) is
built in memory and handed to the training code as ml_training_pipeline's snapshot would be
(``history.History``); then the feature sets and the three models are built as its tasks
build them: for each step the wall time and rows, for each model its hold-out metrics against
the naive baseline (each user's mean over the training days) on the last 14 days.

``python -m benchmarks.aurora_training [USERS] [DAYS]``
"""

from __future__ import annotations

import json
import resource
import sys
import time
from datetime import date

import pandas as pd

from domains.aurora.features import training_sets
from domains.aurora.history import History
from domains.aurora.local.generator import generate
from domains.aurora.models import train_and_evaluate

END = date(2026, 11, 30)


def history_of(ds, days: int) -> History:
    t = ds.tables
    end = pd.Timestamp(END, tz="UTC")
    return History(
        end - pd.Timedelta(days=days), end,
        t["users"][["id", "subscription_tier", "is_active"]],
        t["life_events"][["user_id", "event_type", "started_at", "duration_minutes", "energy_level", "mood_level"]],
        t["sleep_records"][["user_id", "sleep_date", "bedtime", "duration_minutes", "quality_score"]],
        t["exercise_sessions"][["user_id", "started_at", "duration_minutes", "intensity"]],
        t["social_connections"][["user_id", "connected_at"]],
    )


def main(users: int = 2000, days: int = 90) -> dict:
    out: dict = {"users": users, "days": days}
    t0 = time.perf_counter()
    ds = generate(users=users, days=days, end=END)
    out["generate_s"] = round(time.perf_counter() - t0, 1)
    out["life_events"] = len(ds.tables["life_events"])
    t0 = time.perf_counter()
    sets = training_sets(history_of(ds, days))
    out["features_s"] = round(time.perf_counter() - t0, 1)
    out["rows"] = {k: len(v) for k, v in sets.items()}
    for target in ("energy", "mood", "sleep_quality"):
        t0 = time.perf_counter()
        r = train_and_evaluate(target, sets[target])
        out[target] = {"train_s": round(time.perf_counter() - t0, 1), "train_rows": r.training_rows,
                       "model": r.metrics, "naive_baseline": r.baseline_metrics}
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
