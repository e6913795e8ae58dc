"""Helpers of aurora's feature and prediction tests: a generated dataset in a fresh aurora
database (real PostgreSQL), the domain Redis and the Kafka stand-in come from the root conftest."""

from __future__ import annotations

from contextlib import closing
from datetime import date

from conftest import db_query

END = date(2026, 11, 30)  # the generated days end the day before: as_of 2026-11-30T06:00Z


def load_dataset(users: int = 60, days: int = 40, end: date = END) -> dict:
    from domains.aurora.db import DATABASE
    from domains.aurora.local.generator import generate, load

    with closing(DATABASE.connect()) as conn:
        return load(conn, generate(users=users, days=days, end=end))


def query(db: dict, sql: str, params=()) -> list[tuple]:
    return db_query(db, sql, params)


# small models: the tests check the pipelines, not the models' quality (aurora-data's tests do)
FAST_PARAMS = {"energy": {"n_estimators": 40}, "mood": {"n_estimators": 40}, "sleep_quality": {"max_iter": 40}}


def train_current_models(end: date = END, params: dict | None = FAST_PARAMS) -> dict:
    """Train and register (promote) the three models on the loaded data, as ml_training_pipeline does."""
    import pandas as pd

    from domains.aurora import models, registry
    from domains.aurora.db import DATABASE
    from domains.aurora.features import training_sets
    from domains.aurora.history import read_history

    as_of = pd.Timestamp(end, tz="UTC")
    with closing(DATABASE.connect()) as conn:
        history = read_history(conn, as_of - pd.Timedelta(days=60), as_of)
        sets = training_sets(history)
        return {t: registry.train_target(conn, t, sets[t], f"test-{end}", as_of, (params or {}).get(t))
                for t in models.MODEL_NAMES}
