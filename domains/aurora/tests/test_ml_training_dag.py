"""ml_training_pipeline end to end with dag.test(): generated data in the embedded PostgreSQL,
the real domain Redis and the Kafka stand-in. The models must beat the naive baseline on the
hold-out by a margin, a rerun changes nothing, and a worse model is not promoted."""

from __future__ import annotations

from contextlib import closing

import pandas as pd
import pytest

from conftest import run_dag
from domains.aurora import registry
from domains.aurora.db import DATABASE
from domains.aurora.tests.realtime import load_dataset, query
from tests.event_consumer import DedupConsumer

DAG_ID = "ml_training_pipeline"
AS_OF = pd.Timestamp("2026-11-30T02:00:00Z")
# the share of the naive baseline's hold-out MAE each model must remove (measured: README)
MIN_MARGIN = {"energy": 0.30, "mood": 0.30, "sleep_quality": 0.04}


def the_dag():
    from airflow.dag_processing.dagbag import BundleDagBag

    from devplatform.paths import bundle_dir

    path = bundle_dir("aurora")
    return BundleDagBag(dag_folder=path, bundle_path=path, bundle_name="aurora").dags[DAG_ID]


def test_the_seeds_six_tasks_with_training_in_parallel():
    dag = the_dag()
    assert len(dag.tasks) == 6 and "extract_training_data" in dag.task_ids
    trains = {"train_energy_model", "train_mood_model", "train_sleep_model"}
    assert set(dag.task_ids) == {"extract_training_data", "engineer_features", "publish_training_results"} | trains
    for t in trains:
        assert "engineer_features" in dag.get_task(t).upstream_task_ids
        assert not dag.get_task(t).upstream_task_ids & trains  # parallel
    assert dag.get_task("publish_training_results").upstream_task_ids >= trains
    assert dag.max_active_runs == 1 and dag.timetable.expression == "0 2 * * *"
    assert {dag.get_task(t).pool for t in trains | {"extract_training_data", "engineer_features"}} == {"aurora_default"}


@pytest.fixture
def aurora(domain_db, domain_redis, kafka_broker):
    db = domain_db("aurora")
    load_dataset(users=60, days=60)
    return db, domain_redis


def registry_rows(db) -> list[tuple]:
    return query(db, "SELECT model_name, version, promoted, is_current, artifact_sha256 FROM model_registry"
                     " ORDER BY model_name, version")


def test_models_beat_the_baseline_are_published_and_a_rerun_changes_nothing(aurora):
    db, redis_server = aurora
    dr, states = run_dag(DAG_ID, logical_date=AS_OF)
    assert dr.state == "success", states
    rows = registry_rows(db)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("aurora_energy", 1, True, True), ("aurora_mood", 1, True, True), ("aurora_sleep_quality", 1, True, True)]

    with closing(DATABASE.connect()) as conn:
        current = registry.current_versions(conn)
    for target, meta in current.items():
        m, b = meta["metrics"], meta["baseline_metrics"]
        margin = 1 - m["mae"] / b["mae"]
        print(f"{target:14s} hold-out MAE {m['mae']:.3f} RMSE {m['rmse']:.3f} R2 {m['r2']:.3f} ({m['rows']} rows)"
              f" | naive baseline MAE {b['mae']:.3f} RMSE {b['rmse']:.3f} | margin {margin:.1%}")
        assert margin >= MIN_MARGIN[target], (target, m, b)
        assert m["mae_vs_baseline"] == pytest.approx(margin, abs=1e-5)

    # Redis: each current version's hash names its artifact, which loads and predicts like the registry's
    client = redis_server.client("aurora")
    for target, meta in current.items():
        h = client.hgetall(f"aurora:models:{target}")
        assert h["version"] == "1" and h["artifact_sha256"] == meta["artifact_sha256"], h
        raw = redis_server.config.admin_client().get(h["artifact_key"])
        import hashlib

        assert hashlib.sha256(raw).hexdigest() == meta["artifact_sha256"]

    # Kafka: one aurora.model.trained event per version, read once
    with DedupConsumer("aurora_kafka_monitor", ["aurora.training"]) as consumer:
        events = consumer.read(expected=3, timeout=30)
        assert sorted((e["data"]["model_name"], e["data"]["version"], e["data"]["promoted"]) for e in events) == [
            ("aurora_energy", 1, True), ("aurora_mood", 1, True), ("aurora_sleep_quality", 1, True)]
        assert {e["event_type"] for e in events} == {"aurora.model.trained"}

        # the rerun of the same logical date: same registry, same Redis, no new event
        dr, states = run_dag(DAG_ID, logical_date=AS_OF)
        assert dr.state == "success", states
        assert registry_rows(db) == rows
        assert query(db, "SELECT count(*), (SELECT count(*) FROM event_outbox_waiting w WHERE w.topic = o.topic)"
                         " FROM event_outbox o WHERE topic = 'aurora.training' GROUP BY topic") == [(3, 0)]
        assert consumer.read(timeout=8, idle=4) == []
    assert client.hget("aurora:models:energy", "version") == "1"

    # promotion: a model worse than the current one on the same hold-out is stored, not promoted
    from domains.aurora.datasets import load_frame

    with closing(DATABASE.connect()) as conn:
        frame = load_frame(conn, f"{DAG_ID}@{AS_OF.isoformat()}", "features:mood")
        worse = registry.train_target(conn, "mood", frame, "manual-worse", AS_OF, params={"n_estimators": 30})
        print(f"worse mood model v{worse.version}: {worse.decision}")
        assert (worse.version, worse.promoted, worse.is_current) == (2, False, False)
        assert worse.metrics["mae"] >= worse.current_metrics["mae"] and "current v1" in worse.decision
        assert registry.load_current(conn, "mood").version == 1
        better = registry.train_target(conn, "mood", frame, "manual-better", AS_OF,
                                     params={"n_estimators": 500, "learning_rate": 0.04})
        print(f"next mood model v{better.version}: {better.decision}")
        assert better.promoted == (better.metrics["mae"] < better.current_metrics["mae"])
        assert registry.load_current(conn, "mood").version == (3 if better.promoted else 1)
    stored = query(db, "SELECT version, promoted, is_current, metrics ? 'mae', current_metrics->>'version'"
                       " FROM model_registry WHERE model_name = 'aurora_mood' ORDER BY version")
    assert stored[:2] == [(1, True, not better.promoted, True, None), (2, False, False, True, "1")]


def test_redis_down_fails_the_publish_clearly_for_a_retry(domain_db, domain_redis):
    from domains.aurora.training import publish_training_results
    from shared.redis_store import RedisUnavailable

    domain_db("aurora")
    domain_redis.stop()
    with pytest.raises(RedisUnavailable, match="unreachable.*retries"):
        publish_training_results("a-run", [])
