"""Parse-time refusal of operators that name another team's DAG (platform_runtime.tenant_guard).

The run-time guards (the api-server middlewares) are exercised against the real Execution
API in tests/test_execution_guard.py and by the attack probe in tests/test_isolation.py on a
real platform.
"""

from __future__ import annotations

import json

import pytest

DAG_FILE = '''
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG

with DAG("{dag_id}", schedule=None):
    TriggerDagRunOperator(task_id="trigger", trigger_dag_id="{target}")
'''


@pytest.fixture
def two_bundles(tmp_path, monkeypatch):
    own, other = tmp_path / "own", tmp_path / "other"
    own.mkdir()
    other.mkdir()
    bundles = [
        {"name": "guard_own", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {"path": str(own)}},
        {"name": "guard_other", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {"path": str(other)}},
    ]
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
    (other / "other.py").write_text('from airflow.sdk import dag\n\n\n@dag(schedule=None)\ndef guard_other_dag():\n    ...\n')
    (own / "sibling.py").write_text('from airflow.sdk import DAG\n\nDAG(dag_id="guard_own_sibling", schedule=None)\n')
    return own


def parse(folder, name, dag_id, target):
    from airflow.dag_processing.dagbag import BundleDagBag

    (folder / name).write_text(DAG_FILE.format(dag_id=dag_id, target=target))
    return BundleDagBag(dag_folder=folder / name, bundle_path=folder, bundle_name="guard_own")


def test_an_operator_naming_another_teams_dag_is_an_import_error(two_bundles):
    bag = parse(two_bundles, "bad.py", "guard_own_bad", "guard_other_dag")
    assert bag.dags == {}
    [error] = bag.import_errors.values()
    assert "names another team's DAG: guard_other_dag (bundle guard_other)" in error


@pytest.mark.parametrize("target", ["guard_own_sibling", "not_parsed_yet", "{{ params.target }}"])
def test_own_unknown_and_templated_targets_parse(two_bundles, target):
    # unknown and templated ids are left to the run-time guard on the api-server
    bag = parse(two_bundles, "ok.py", "guard_own_ok", target)
    assert bag.import_errors == {}
    assert list(bag.dags) == ["guard_own_ok"]


TEAM_DAG_FILE = '''
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG("guard_team_dag", schedule=None):
    EmptyOperator(task_id="plain")
    EmptyOperator(task_id="named", executor="LocalExecutor")
    EmptyOperator.partial(task_id="mapped").expand(doc_md=["a", "b"])
'''


@pytest.mark.parametrize(("setting", "expected"), [
    ("LocalExecutor;guard_team=CeleryExecutor;other=CeleryExecutor", "CeleryExecutor"),
    ("LocalExecutor", None),  # no executor of the team's own: the global default runs it
])
def test_a_team_task_names_its_teams_executor(tmp_path, monkeypatch, setting, expected):
    """A task resumed after a deferral must get a fresh Celery task id; Airflow 3.3.2 gives
    one only to tasks that name an executor which pre-assigns ids (see pin_team_executor)."""
    from airflow.executors.executor_loader import ExecutorName

    from platform_runtime.tenant_guard import pin_team_executor, team_default_executor

    names = [ExecutorName("airflow.executors.local_executor.LocalExecutor", "LocalExecutor")]
    for part in setting.split(";")[1:]:
        team, alias = part.split("=")
        names.append(ExecutorName("airflow.providers.celery.executors.celery_executor.CeleryExecutor", alias,
                                  team_name=team))
    assert team_default_executor("guard_team", names) == expected
    assert team_default_executor(None, names) is None

    from airflow.executors import executor_loader

    monkeypatch.setattr(executor_loader.ExecutorLoader, "get_executor_names",
                        classmethod(lambda cls, validate_teams=True: names))
    folder = tmp_path / "team"
    folder.mkdir()
    (folder / "team_dag.py").write_text(TEAM_DAG_FILE)
    bundles = [{"name": "guard_team_bundle", "kwargs": {"path": str(folder)}, "team_name": "guard_team"}]
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(dag_folder=folder / "team_dag.py", bundle_path=folder, bundle_name="guard_team_bundle")
    assert bag.import_errors == {}
    dag = bag.dags["guard_team_dag"]
    for task in dag.tasks:
        pin_team_executor(task, bundles)
    assert dag.get_task("plain").executor == expected
    assert dag.get_task("mapped").executor == expected
    assert dag.get_task("named").executor == "LocalExecutor"  # an executor the author named stays
