"""feature_engineering_pipeline end to end: generated data in PostgreSQL, the real domain Redis."""

from __future__ import annotations

from contextlib import closing

import pandas as pd
import pytest

from conftest import lineage_io, run_dag
from domains.aurora.feature_store import FEATURE_GROUPS, FEATURES, KEY_PREFIX, read_online
from domains.aurora.tests.realtime import load_dataset, query

DAG_ID = "feature_engineering_pipeline"
AS_OF = pd.Timestamp("2026-11-30T06:00:00Z")
SEED_FEATURES = {
    "activity_count_24h", "activity_count_7d", "activity_count_30d", "activity_diversity_7d", "total_minutes_7d",
    "avg_sleep_duration_7d", "sleep_consistency_7d", "sleep_debt_minutes",
    "exercise_count_7d", "exercise_consistency_score", "friend_count", "social_engagement_score",
}


@pytest.fixture
def aurora(domain_db, domain_redis):
    db = domain_db("aurora")
    load_dataset(users=60, days=40)
    return db, domain_redis


def test_groups_in_parallel_with_the_seeds_feature_names():
    from airflow.dag_processing.dagbag import BundleDagBag

    from devplatform.paths import bundle_dir

    path = bundle_dir("aurora")
    dag = BundleDagBag(dag_folder=path, bundle_path=path, bundle_name="aurora").dags[DAG_ID]
    groups = {"compute_user_activity_features", "compute_sleep_features", "compute_exercise_features",
              "compute_social_features"}
    assert set(dag.task_ids) == groups | {"update_feature_store"}
    assert all(not dag.get_task(t).upstream_task_ids for t in groups)  # parallel
    assert dag.get_task("update_feature_store").upstream_task_ids == groups
    assert set(FEATURES) == SEED_FEATURES and len(FEATURES) == 12
    assert sum(len(g) for g in FEATURE_GROUPS.values()) == 12
    assert {dag.get_task(t).pool for t in dag.task_ids} == {"aurora_default"}


def test_features_land_in_postgres_and_redis_and_a_rerun_changes_nothing(aurora, lineage_events):
    db, redis_server = aurora
    dr, states = run_dag(DAG_ID, logical_date=AS_OF)
    assert dr.state == "success", states

    # lineage: app tables -> feature groups -> feature store (PostgreSQL table and Redis key space)
    events = lineage_events()
    inputs, _ = lineage_io(events, f"{DAG_ID}.compute_sleep_features")
    assert {name.split(".", 1)[1] for _, name in inputs} == {"public.sleep_records", "public.users"}, inputs
    inputs, _ = lineage_io(events, f"{DAG_ID}.compute_social_features")  # a group reads only its tables
    assert {name.split(".", 1)[1] for _, name in inputs} == {
        "public.users", "public.life_events", "public.social_connections"}, inputs
    _, outputs = lineage_io(events, f"{DAG_ID}.update_feature_store")
    assert "public.feature_store" in {name.split(".", 1)[1] for _, name in outputs if "." in name}, outputs
    assert (f"redis://127.0.0.1:{redis_server.port}", KEY_PREFIX) in outputs, outputs
    active = {r[0] for r in query(db, "SELECT id FROM users WHERE is_active")}
    rows = query(db, f"SELECT user_id, as_of, {', '.join(FEATURES)}, computed_at FROM feature_store")
    assert {r[0] for r in rows} == active and {r[1] for r in rows} == {AS_OF.to_pydatetime()}

    # the values are the features' one definition at as_of (what the models see)
    from domains.aurora.db import DATABASE
    from domains.aurora.features import prediction_window, user_features
    from domains.aurora.history import read_history

    with closing(DATABASE.connect()) as conn:
        start, end = prediction_window(AS_OF)
        expected = user_features(read_history(conn, start, end, sorted(active)), end, sorted(active))
    stored = pd.DataFrame([r[2:-1] for r in rows], index=[r[0] for r in rows], columns=list(FEATURES)).astype(float)
    pd.testing.assert_frame_equal(stored.sort_index(), expected[list(FEATURES)].sort_index().astype(float),
                                  check_names=False, check_index_type=False)
    assert stored["activity_count_7d"].gt(0).mean() > 0.9  # real data, not zeros

    client = redis_server.client("aurora")
    keys = sorted(client.scan_iter(f"{KEY_PREFIX}*"))
    assert len(keys) == len(active)
    uid = min(active)
    online = read_online(client, uid)
    assert online.pop("as_of") == AS_OF.isoformat()
    assert set(online) <= SEED_FEATURES
    assert online == pytest.approx({k: v for k, v in stored.loc[uid].items() if pd.notna(v)})
    assert 0 < client.ttl(f"{KEY_PREFIX}{uid}") <= 7 * 24 * 3600

    # a stale field from an older write disappears: each hash is replaced whole
    client.hset(f"{KEY_PREFIX}{uid}", "obsolete_feature", 1)
    computed = {r[0]: r[-1] for r in rows}
    dr, states = run_dag(DAG_ID, logical_date=AS_OF)
    assert dr.state == "success", states
    update = next(ti for ti in dr.get_task_instances() if ti.task_id == "update_feature_store").xcom_pull(
        task_ids="update_feature_store")
    assert (update["inserted"], update["updated"]) == (0, 0)
    assert {r[0]: r[1] for r in query(db, "SELECT user_id, computed_at FROM feature_store")} == computed
    assert "obsolete_feature" not in client.hkeys(f"{KEY_PREFIX}{uid}")
    assert read_online(client, uid) == {**online, "as_of": AS_OF.isoformat()}


def test_a_run_without_a_logical_date_is_as_of_the_last_tick_like_the_scheduled_run(aurora):
    """Triggered at 10:30 without a logical date (REST ``{"logical_date": null}``): no data
    interval in the context; the features are as of 06:00, the last tick of ``0 */6 * * *``,
    the very snapshot the 06:00 scheduled run stores (it then changes nothing)."""
    db, _ = aurora
    dr, states = run_dag(DAG_ID, logical_date=None, run_after=AS_OF + pd.Timedelta(hours=4, minutes=30))
    assert dr.state == "success", states
    assert dr.logical_date is None and dr.data_interval_start is None
    assert {r[0] for r in query(db, "SELECT DISTINCT as_of FROM feature_store")} == {AS_OF.to_pydatetime()}
    stored = query(db, "SELECT user_id, computed_at FROM feature_store ORDER BY user_id")
    dr, states = run_dag(DAG_ID, logical_date=AS_OF)
    assert dr.state == "success", states
    assert query(db, "SELECT user_id, computed_at FROM feature_store ORDER BY user_id") == stored
