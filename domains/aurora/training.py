"""ml_training_pipeline's steps (the DAG file only wires them).

    extract_training_data(run_key, as_of)      -> the window's valid rows, one snapshot
    engineer_features(run_key, as_of)          -> the three models' feature sets
    train_model(run_key, as_of, target)        -> train, evaluate, register, promote or not
    publish_training_results(run_key, results) -> current versions to Redis, events to Kafka

Data goes from task to task through ``training_datasets`` (PostgreSQL, keyed by the run
key), so each task can run on any worker and a retry overwrites only its own rows. Every
step is idempotent for a run key: a rerun of the same logical date trains nothing new
(``registry.train_target``), writes the same Redis values and adds no event.
"""

from __future__ import annotations

import logging
from contextlib import closing
from datetime import datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

TRAINING_DAYS = 90
KAFKA_CONN_ID = "aurora_kafka"
MODEL_KEY = "aurora:models:{target}"  # hash: the current version's metadata
ARTIFACT_KEY = "aurora:models:{target}:v{version}"  # the version's artifact (native format), immutable
SNAPSHOT_TABLES = ("users", "events", "sleep", "exercise", "friends")


def extract_training_data(run_key: str, as_of: datetime, days: int = TRAINING_DAYS) -> dict[str, Any]:
    """The last ``days`` days of valid rows before ``as_of``, read in one snapshot and stored."""
    from domains.aurora.datasets import prune, save_frame
    from domains.aurora.db import DATABASE, HISTORY_TABLES, record_tables
    from domains.aurora.history import read_history

    with closing(DATABASE.connect()) as conn:
        history = read_history(conn, as_of - timedelta(days=days), as_of)
        counts = {name: save_frame(conn, run_key, f"snapshot:{name}", as_of, frame, commit=False)
                  for name, frame in history.frames().items()}
        pruned = prune(conn, run_key, commit=False)
        conn.commit()
    record_tables(inputs=list(HISTORY_TABLES.values()), outputs=["training_datasets"])
    if counts["events"] == 0:
        raise ValueError(f"no life events in the {days} days before {as_of}: nothing to train on")
    log.info("training snapshot %s: %s (old datasets pruned: %d)", run_key, counts, pruned)
    return {"run_key": run_key, "as_of": as_of.isoformat(), "days": days, "rows": counts}


def _history(conn, run_key: str, as_of: datetime, days: int):
    import pandas as pd

    from domains.aurora.datasets import load_frame
    from domains.aurora.history import History

    frames = {name: load_frame(conn, run_key, f"snapshot:{name}") for name in SNAPSHOT_TABLES}
    end = pd.Timestamp(as_of)
    return History(end - pd.Timedelta(days=days), end, **frames)


def engineer_features(run_key: str, as_of: datetime, days: int = TRAINING_DAYS) -> dict[str, int]:
    """Temporal, aggregate and derived features for the three models (``features.training_sets``)."""
    from domains.aurora.datasets import save_frame
    from domains.aurora.db import DATABASE, record_tables
    from domains.aurora.features import training_sets

    with closing(DATABASE.connect()) as conn:
        sets = training_sets(_history(conn, run_key, as_of, days))
        rows = {target: save_frame(conn, run_key, f"features:{target}", as_of, frame, commit=False)
                for target, frame in sets.items()}
        conn.commit()
    record_tables(inputs=["training_datasets"], outputs=["training_datasets"])
    log.info("feature sets %s: %s rows", run_key, rows)
    return rows


def train_model(run_key: str, as_of: datetime, target: str) -> dict[str, Any]:
    """Train ``target`` on its feature set; evaluate on the hold-out; register; promote if better."""
    from domains.aurora import registry
    from domains.aurora.datasets import load_frame
    from domains.aurora.db import DATABASE, record_tables

    with closing(DATABASE.connect()) as conn:
        entry = registry.train_target(conn, target, load_frame(conn, run_key, f"features:{target}"), run_key, as_of)
    record_tables(inputs=["training_datasets", "model_registry"], outputs=["model_registry", "event_outbox"])
    log.info("%s v%d: %s; hold-out %s; naive baseline %s", entry.model_name, entry.version, entry.decision,
             entry.metrics, entry.baseline_metrics)
    return entry.summary()


def publish_current_models(client, conn) -> dict[str, int]:
    """Each current model into Redis: its artifact under an immutable versioned key, then the
    hash that names it (so a reader never finds a hash pointing at a missing artifact)."""
    import json

    from domains.aurora import registry
    from shared.redis_store import replace_hashes

    current = registry.current_versions(conn)
    for target, meta in current.items():
        with conn.cursor() as cur:
            cur.execute("SELECT artifact FROM model_registry WHERE model_name = %s AND version = %s",
                        (meta["model_name"], meta["version"]))
            artifact = bytes(cur.fetchone()[0])
        conn.commit()
        client.set(ARTIFACT_KEY.format(target=target, version=meta["version"]), artifact)
    replace_hashes(client, {
        MODEL_KEY.format(target=target): {
            **{k: v for k, v in meta.items() if k not in ("metrics", "baseline_metrics")},
            "metrics": json.dumps(meta["metrics"]), "baseline_metrics": json.dumps(meta["baseline_metrics"]),
            "artifact_key": ARTIFACT_KEY.format(target=target, version=meta["version"]),
        } for target, meta in current.items()
    })
    return {target: meta["version"] for target, meta in current.items()}


def publish_training_results(run_key: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The current versions to Redis; the registry's ``aurora.model.trained`` events (written
    with each version) from the outbox to Kafka. Redis down: fails (retried); broker down:
    the events wait in the outbox for the next publish."""
    from domains.aurora.db import DATABASE, REDIS_CONN_ID
    from shared.outbox import publish_outbox
    from shared.redis_store import connect

    client = connect(REDIS_CONN_ID)
    with closing(DATABASE.connect()) as conn:
        published = publish_current_models(client, conn)
        sent = publish_outbox(conn, KAFKA_CONN_ID)
    summary = {
        "run_key": run_key,
        "current_versions": published,
        "trained": {r["model_name"]: {"version": r["version"], "promoted": r["promoted"], "decision": r["decision"]}
                    for r in results},
        "events_published": sent.published,
        "events_waiting": sent.waiting,
    }
    log.info("training results: %s", summary)
    return summary
