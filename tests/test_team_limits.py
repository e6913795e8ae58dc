"""Per-team limits (issue 26, noisy neighbours; ``platform_runtime.team_limits``): the settings,
the image in step with the local platform, and the cluster policies on real DAG objects.
The limits in force on a running platform: ``tests/test_noisy_neighbours.py``."""

from __future__ import annotations

import json

import pytest

from devplatform.config import PlatformConfig, bundle_config, dockerfile_env
from devplatform.paths import domain_names
from platform_runtime import team_limits
from platform_runtime.team_limits import (
    DEFAULT_MAX_ACTIVE_RUNS_PER_DAG,
    PLATFORM_DEFAULTS,
    platform_parallelism,
    team_pool_slots,
)
from shared.dag_defaults import team_pool


def test_the_image_sets_the_limits_the_local_platform_sets(tmp_path):
    image = dockerfile_env()
    local = PlatformConfig(state=tmp_path, executor="celery", domains=domain_names(), team_limits=True).airflow_env()
    for key in ("AIRFLOW__CORE__PARALLELISM", "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG", "AIRFLOW__PLATFORM__TEAM_LIMITS"):
        assert image[key] == local[key], key
    assert int(image["AIRFLOW__CORE__PARALLELISM"]) == platform_parallelism(domain_names())
    assert int(image["AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG"]) == DEFAULT_MAX_ACTIVE_RUNS_PER_DAG


def test_the_schedulers_parallelism_leaves_every_team_its_slots(tmp_path):
    """One team at its pools' limit leaves every other team all of its slots."""
    teams = domain_names()
    env = PlatformConfig(state=tmp_path, executor="celery", domains=teams, team_limits=True).airflow_env()
    assert int(env["AIRFLOW__CORE__PARALLELISM"]) == sum(sum(team_pool_slots(t).values()) for t in teams)
    for t in teams:  # every team declares its default pool (shared.dag_defaults.team_pool), with slots
        assert team_pool_slots(t).get(team_pool(t), 0) > 0, t
    off = PlatformConfig(state=tmp_path, executor="celery", domains=teams, team_limits=False).airflow_env()
    assert off["AIRFLOW__PLATFORM__TEAM_LIMITS"] == "False" and "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG" not in off


def test_a_misspelt_limit_is_refused(monkeypatch):
    monkeypatch.setattr(team_limits, "team_settings", lambda team: {"limits": {"max_active_run_per_dag": 3}})
    with pytest.raises(ValueError, match="max_active_run_per_dag"):
        team_limits.team_limits("aurora")


def test_every_team_has_limits_within_what_the_platform_allows():
    for t in domain_names():
        limits = team_limits.team_limits(t)
        assert set(limits) == set(PLATFORM_DEFAULTS), t
        assert 0 < DEFAULT_MAX_ACTIVE_RUNS_PER_DAG <= limits["max_active_runs_per_dag"], t
        assert 0 < limits["parse_timeout_seconds"] <= 30, t  # never more than Airflow's own default
        assert 0 < limits["cpu_cores"] <= 64, t


@pytest.fixture
def bundles(tmp_path, monkeypatch):
    """Two teams' bundles configured as the platform configures them."""
    paths = {t: tmp_path / t for t in ("aurora", "hss_workflow")}
    for p in paths.values():
        p.mkdir()
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
                       json.dumps(bundle_config(domains=list(paths), paths=paths)))
    monkeypatch.setenv("AIRFLOW__PLATFORM__TEAM_LIMITS", "True")
    return paths


def a_dag(path, **kw):
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG, task

    with DAG("noisy", schedule=None, **kw) as dag:
        EmptyOperator(task_id="plain")
        EmptyOperator(task_id="own_pool", pool="aurora_heavy")

        @task
        def mapped(i):
            return i

        mapped.expand(i=[1, 2])
    dag.fileloc = str(path)
    return dag


def apply_policies(dag):
    import airflow_local_settings

    airflow_local_settings.dag_policy(dag)
    for t in dag.tasks:
        team_limits.limit_task(t)


def test_a_team_dag_gets_its_team_pool_and_ceiling(bundles):
    dag = a_dag(bundles["aurora"] / "noisy.py", max_active_runs=500)
    apply_policies(dag)
    assert dag.max_active_runs == team_limits.team_limits("aurora")["max_active_runs_per_dag"]
    pools = {t.task_id: t.pool for t in dag.tasks}
    assert pools == {"plain": "aurora_default", "own_pool": "aurora_heavy", "mapped": "aurora_default"}


def test_a_dag_within_its_ceiling_and_a_file_in_no_bundle_are_left_alone(bundles, tmp_path):
    dag = a_dag(bundles["hss_workflow"] / "noisy.py", max_active_runs=2)
    apply_policies(dag)
    assert dag.max_active_runs == 2
    outside = a_dag(tmp_path / "elsewhere.py", max_active_runs=500)
    apply_policies(outside)
    assert outside.max_active_runs == 500 and {t.pool for t in outside.tasks} == {"default_pool", "aurora_heavy"}


def test_the_limits_switched_off_change_nothing(bundles, monkeypatch):
    monkeypatch.setenv("AIRFLOW__PLATFORM__TEAM_LIMITS", "False")
    dag = a_dag(bundles["aurora"] / "noisy.py", max_active_runs=500)
    apply_policies(dag)
    assert dag.max_active_runs == 500 and {t.pool for t in dag.tasks} == {"default_pool", "aurora_heavy"}
    assert team_limits.parse_timeout(str(bundles["aurora"] / "noisy.py")) == 30.0  # Airflow's default


def test_a_team_file_parses_within_its_team_limit(bundles, tmp_path):
    import airflow_local_settings

    assert airflow_local_settings.get_dagbag_import_timeout(str(bundles["aurora"] / "noisy.py")) == \
        team_limits.team_limits("aurora")["parse_timeout_seconds"]
    assert airflow_local_settings.get_dagbag_import_timeout(str(tmp_path / "elsewhere.py")) == 30.0
