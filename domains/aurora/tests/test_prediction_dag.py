"""prediction_pipeline end to end: generated data and trained models in PostgreSQL, the real
domain Redis, the Kafka stand-in; outages of both during a run."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pandas as pd
import pytest

from conftest import lineage_io, run_dag
from domains.aurora.predictions import KEY_PREFIX, TOPIC, publish_events, read_cached
from domains.aurora.tests.realtime import load_dataset, query, train_current_models
from tests.event_consumer import DedupConsumer

DAG_ID = "prediction_pipeline"
AS_OF = pd.Timestamp("2026-11-30T06:00:00Z")
HORIZONS = list(range(2, 25, 2))


@pytest.fixture
def aurora(domain_db, domain_redis, kafka_broker):
    db = domain_db("aurora")
    load_dataset(users=60, days=40)
    train_current_models()
    assert publish_events()["waiting"] == 0  # the training's own events (topic aurora.training) out of the way
    cohort = {r[0] for r in query(db, "SELECT id FROM users WHERE is_active AND subscription_tier IN ('premium', 'pro')")}
    assert 5 < len(cohort) < 60
    return db, domain_redis, kafka_broker, cohort


def xcom(dr, task_id):
    return next(ti for ti in dr.get_task_instances() if ti.task_id == task_id).xcom_pull(task_ids=task_id)


def load_dag():
    from airflow.dag_processing.dagbag import BundleDagBag

    from devplatform.paths import bundle_dir

    path = bundle_dir("aurora")
    return BundleDagBag(dag_folder=path, bundle_path=path, bundle_name="aurora").dags[DAG_ID]


def read_events(expected: int | None):
    with DedupConsumer("aurora_kafka_monitor", [TOPIC]) as consumer:
        events = consumer.read(expected=expected, timeout=40) if expected else []
        events += consumer.read(timeout=4, idle=2)  # nothing more may come
    return events, consumer.duplicates


def test_structure():
    dag = load_dag()
    predicts = {"predict_energy", "predict_mood", "predict_sleep_quality"}
    for t in predicts:
        assert dag.get_task(t).upstream_task_ids == {"get_active_users"}
        assert dag.get_task(t).pool == "aurora_default"
    assert dag.get_task("save_predictions").upstream_task_ids == predicts
    assert dag.get_task("cache_predictions").upstream_task_ids == {"save_predictions"}
    assert dag.get_task("publish_prediction_events").upstream_task_ids == {"cache_predictions"}
    assert dag.get_task("cache_predictions").retries >= 2


def test_predictions_saved_cached_published_once_and_a_rerun_changes_nothing(aurora, lineage_events):
    db, redis_server, _, cohort = aurora
    dr, states = run_dag(DAG_ID, logical_date=AS_OF)
    assert dr.state == "success", states

    # lineage: the Redis key space and the Kafka topic the run wrote (OpenLineage naming)
    events = lineage_events()
    assert (f"redis://127.0.0.1:{redis_server.port}", KEY_PREFIX) in lineage_io(events, f"{DAG_ID}.cache_predictions")[1]
    published = lineage_io(events, f"{DAG_ID}.publish_prediction_events")[1]
    assert any(ns.startswith("kafka://127.0.0.1:") and name == TOPIC for ns, name in published), published

    rows = query(db, "SELECT user_id, target, target_date, horizon_hours, target_time, predicted_value, as_of,"
                     " predicted_at FROM predictions")
    by = {t: [r for r in rows if r[1] == t] for t in ("energy", "mood", "sleep_quality")}
    assert {r[0] for r in rows} == cohort  # premium and pro, active: nobody else
    assert len(by["energy"]) == 12 * len(cohort) and len(by["mood"]) == len(by["sleep_quality"]) == len(cohort)
    for uid in cohort:
        energy = sorted((r[3], r[4]) for r in by["energy"] if r[0] == uid)
        assert [h for h, _ in energy] == HORIZONS
        assert [t for _, t in energy] == [(AS_OF + pd.Timedelta(hours=h)).to_pydatetime() for h in HORIZONS]
    assert {r[2] for r in rows} == {AS_OF.date()} and {r[6] for r in rows} == {AS_OF.to_pydatetime()}
    assert all(1 <= r[5] <= 10 for r in rows)
    assert len({round(r[5], 3) for r in by["energy"]}) > 12  # varies by user and hour, not a constant
    assert {r[3] for r in by["mood"] + by["sleep_quality"]} == {0}

    client = redis_server.client("aurora")
    uid = min(cohort)
    cached = read_cached(client, uid)
    assert [v for _, v in cached["energy"]] == pytest.approx(
        [r[5] for r in sorted(by["energy"], key=lambda r: r[3]) if r[0] == uid])
    assert cached["mood"] == pytest.approx(next(r[5] for r in by["mood"] if r[0] == uid))
    assert cached["sleep_quality_date"] == str(AS_OF.date()) and set(cached["models"]) == {"energy", "mood", "sleep_quality"}
    assert 0 < client.ttl(f"{KEY_PREFIX}{uid}") <= 36 * 3600
    assert len(list(client.scan_iter(f"{KEY_PREFIX}*"))) == len(cohort)

    assert xcom(dr, "publish_prediction_events") == {"published": 3 * len(cohort), "waiting": 0, "broker_reachable": True}
    events, duplicates = read_events(3 * len(cohort))
    assert len(events) == 3 * len(cohort) and duplicates == 0
    assert {(e["data"]["user_id"], e["data"]["target"]) for e in events} == {
        (u, t) for u in cohort for t in ("energy", "mood", "sleep_quality")}
    e = next(e for e in events if e["data"]["target"] == "energy")
    assert e["event_type"] == "aurora.prediction.created" and e["schema_version"] == 1
    assert [p["horizon_hours"] for p in e["data"]["predictions"]] == HORIZONS

    # the same day again: no row rewritten, no new event, nothing published
    dr, states = run_dag(DAG_ID, logical_date=AS_OF)
    assert dr.state == "success", states
    assert xcom(dr, "save_predictions") == {"rows": 14 * len(cohort), "inserted": 0, "updated": 0, "events": 0}
    assert query(db, "SELECT user_id, target, target_date, horizon_hours, target_time, predicted_value, as_of,"
                     " predicted_at FROM predictions") == rows or sorted(rows) == sorted(
        query(db, "SELECT user_id, target, target_date, horizon_hours, target_time, predicted_value, as_of,"
                  " predicted_at FROM predictions"))
    assert query(db, "SELECT count(*) FROM event_outbox WHERE topic = %s", (TOPIC,)) == [(3 * len(cohort),)]
    assert xcom(dr, "publish_prediction_events")["published"] == 0


def test_broker_and_redis_down_during_a_run(aurora, capfd):
    """Kafka down: the run succeeds, the events wait in the outbox and go out when it is back.
    Redis down: cache_predictions fails with a clear message and its retry succeeds."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    db, redis_server, broker, cohort = aurora
    broker.stop()
    redis_server.stop()
    dag = load_dag()
    dag.get_task("cache_predictions").retry_delay = timedelta(seconds=1)  # the test's only change: no minute's wait
    dag.get_task("cache_predictions").retry_exponential_backoff = 0
    restarted = threading.Event()

    def bring_redis_back() -> None:  # once the first try has failed and waits for its retry
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not restarted.is_set():
            with create_session() as session:
                states = [ti.state for ti in session.query(TaskInstance).filter(
                    TaskInstance.dag_id == DAG_ID, TaskInstance.task_id == "cache_predictions")]
            if "up_for_retry" in states:
                redis_server.start()
                restarted.set()
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=bring_redis_back, daemon=True)
    watcher.start()
    dr = dag.test(logical_date=AS_OF)
    watcher.join(timeout=5)
    tis = {ti.task_id: ti for ti in dr.get_task_instances()}
    assert dr.state == "success", {t: ti.state for t, ti in tis.items()}
    assert restarted.is_set() and tis["cache_predictions"].try_number == 2
    out = "".join(capfd.readouterr())  # the task's log (dag.test prints it)
    assert "RedisUnavailable: Redis of connection 'aurora_redis' at 127.0.0.1:" in out and "is unreachable" in out
    assert len(list(redis_server.client("aurora").scan_iter(f"{KEY_PREFIX}*"))) == len(cohort)

    waiting = 3 * len(cohort)
    assert tis["publish_prediction_events"].xcom_pull(task_ids="publish_prediction_events") == {
        "published": 0, "waiting": waiting, "broker_reachable": False}
    assert query(db, "SELECT count(*) FROM event_outbox_waiting") == [(waiting,)]

    broker.start()  # back (a new, empty stand-in cluster): the next publish sends what waited
    assert publish_events() == {"published": waiting, "waiting": 0, "broker_reachable": True}
    events, duplicates = read_events(waiting)
    assert len(events) == waiting and duplicates == 0
    assert query(db, "SELECT count(*) FROM event_outbox_waiting") == [(0,)]
