"""A team's tasks run only on its own executor (issue 21).

Parse time: the cluster policy (``platform_runtime.tenant_guard.task_policy``) names the
team's executor on a team task that names none and refuses a task that names any other.
Run time: the global executor multi-team mode requires, ``RefusingExecutor``, runs nothing
and fails whatever it is handed. The real scheduler's routing is exercised by the attack
matrix on a whole platform (tests/test_isolation.py).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from platform_runtime import GLOBAL_EXECUTOR

CELERY = "airflow.providers.celery.executors.celery_executor.CeleryExecutor"
LOCAL = "airflow.executors.local_executor.LocalExecutor"
REASON = "no team task may run on the platform's global executor"


def executor_names():
    """``LocalExecutor;guard_team=CeleryExecutor;other=other_celery:<CeleryExecutor>``: the
    old global executor, the team's own Celery and another team's under an alias."""
    from airflow.executors.executor_loader import ExecutorName

    return [
        ExecutorName(LOCAL, "LocalExecutor"),
        ExecutorName(CELERY, "CeleryExecutor", team_name="guard_team"),
        ExecutorName(CELERY, "other_celery", team_name="other"),
    ]


@pytest.fixture
def team_bundle(tmp_path, monkeypatch):
    """A bundle owned by ``guard_team``, one of ``other``, one without a team; the policy
    reads them from ``[dag_processor] dag_bundle_config_list`` as in the dag-processor."""
    from airflow.executors import executor_loader

    folders = {name: tmp_path / name for name in ("team", "other", "teamless")}
    for f in folders.values():
        f.mkdir()
    classpath = "airflow.dag_processing.bundles.local.LocalDagBundle"
    bundles = [
        {"name": "guard_team_bundle", "classpath": classpath, "kwargs": {"path": str(folders["team"])},
         "team_name": "guard_team"},
        {"name": "guard_other_bundle", "classpath": classpath, "kwargs": {"path": str(folders["other"])},
         "team_name": "other"},
        {"name": "guard_teamless_bundle", "classpath": classpath, "kwargs": {"path": str(folders["teamless"])}},
    ]
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
    names = executor_names()
    monkeypatch.setattr(executor_loader.ExecutorLoader, "get_executor_names",
                        classmethod(lambda cls, validate_teams=True: names))
    return folders


def make_tasks(folder: Path, executor: str | None):
    """A plain and a mapped task naming ``executor`` in a DAG whose file is in ``folder``."""
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    kwargs = {} if executor is None else {"executor": executor}
    with DAG("guard_exec_dag", schedule=None) as dag:
        plain = EmptyOperator(task_id="plain", **kwargs)
        mapped = EmptyOperator.partial(task_id="mapped", **kwargs).expand(doc_md=["a", "b"])
    dag.fileloc = str(folder / "guard_exec_dag.py")
    return plain, mapped


# -- parse time -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["plain", "mapped"])
@pytest.mark.parametrize("executor", [
    "LocalExecutor",  # a global executor by its alias
    LOCAL,  # ... by its module path
    "other_celery",  # another team's executor, by its alias
    "NoSuchExecutor",
])
def test_a_team_task_naming_another_executor_is_refused(team_bundle, kind, executor):
    from airflow.exceptions import AirflowClusterPolicyViolation

    from platform_runtime.tenant_guard import task_policy

    task = dict(zip(("plain", "mapped"), make_tasks(team_bundle["team"], executor), strict=True))[kind]
    with pytest.raises(AirflowClusterPolicyViolation) as refused:
        task_policy(task)
    message = str(refused.value)
    assert f"Task '{kind}' of DAG 'guard_exec_dag' (team guard_team)" in message
    assert f"names executor '{executor}'" in message
    assert "a team's tasks run only on its own executor, 'CeleryExecutor'" in message


@pytest.mark.parametrize("executor", ["CeleryExecutor", CELERY])
def test_a_team_task_naming_its_own_executor_is_kept(team_bundle, executor):
    from platform_runtime.tenant_guard import task_policy

    for task in make_tasks(team_bundle["team"], executor):
        task_policy(task)
        assert task.executor == executor


def test_a_team_task_naming_no_executor_is_pinned_to_its_teams(team_bundle):
    from platform_runtime.tenant_guard import task_policy

    for task in make_tasks(team_bundle["team"], None):
        task_policy(task)
        assert task.executor == "CeleryExecutor"


@pytest.mark.parametrize("where", ["teamless", "nowhere"])
@pytest.mark.parametrize("executor", ["LocalExecutor", None])
def test_tasks_of_no_team_are_left_alone(team_bundle, tmp_path, where, executor):
    """A bundle without a team (like the tests' own ``platform_tests``) or a file in no
    configured bundle: the policy has no team to hold the task to."""
    from platform_runtime.tenant_guard import task_policy

    folder = team_bundle["teamless"] if where == "teamless" else tmp_path
    for task in make_tasks(folder, executor):
        task_policy(task)
        assert task.executor == executor


def test_a_team_without_an_executor_of_its_own_is_left_alone(team_bundle, monkeypatch):
    """``PLATFORM_EXECUTOR=local``: every task runs on the global LocalExecutor anyway."""
    from airflow.executors import executor_loader

    from platform_runtime.tenant_guard import task_policy

    names = executor_names()[:1]
    monkeypatch.setattr(executor_loader.ExecutorLoader, "get_executor_names",
                        classmethod(lambda cls, validate_teams=True: names))
    for executor in ("LocalExecutor", None):
        for task in make_tasks(team_bundle["team"], executor):
            task_policy(task)
            assert task.executor == executor


TEAM_DAG_FILE = '''
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG("guard_exec_file_dag", schedule=None):
    EmptyOperator(task_id="fine")
    EmptyOperator.partial(task_id="in_the_scheduler", executor="LocalExecutor").expand(doc_md=["a"])
'''


def test_the_dag_processor_reports_the_file_as_an_import_error(team_bundle):
    """Through Airflow's own DAG bag, as the dag-processor parses a bundle: the whole file
    is refused, with the reason."""
    from airflow.dag_processing.dagbag import BundleDagBag

    folder = team_bundle["team"]
    (folder / "named.py").write_text(TEAM_DAG_FILE)
    bag = BundleDagBag(dag_folder=folder / "named.py", bundle_path=folder, bundle_name="guard_team_bundle")
    assert bag.dags == {}
    [error] = bag.import_errors.values()
    assert "AirflowClusterPolicyViolation: Task 'in_the_scheduler'" in error
    assert "names executor 'LocalExecutor' (a global executor)" in error


# -- run time: the global executor --------------------------------------------------------
@pytest.fixture
def no_process_may_start(monkeypatch):
    """Starting any process (fork, multiprocessing, subprocess) fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("RefusingExecutor started a process")

    before = set(multiprocessing.active_children())
    monkeypatch.setattr(os, "fork", refuse)
    monkeypatch.setattr(multiprocessing.Process, "start", refuse)
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    yield
    assert set(multiprocessing.active_children()) == before


def task_workload(executor, dag_id="aurora_dag", task_id="in_the_scheduler"):
    """An ``ExecuteTask`` built as the scheduler builds it (``ExecuteTask.make`` on a task
    instance, here one with just the attributes it reads)."""
    from airflow.executors.workloads import BundleInfo, ExecuteTask

    ti = SimpleNamespace(
        id=uuid.uuid4(), dag_version_id=uuid.uuid4(), dag_id=dag_id, task_id=task_id, run_id="manual__1",
        try_number=1, map_index=-1, hostname=None, context_carrier=None, queue="default", pool_slots=1,
        priority_weight=1, external_executor_id=None, executor_config=None,
    )
    return ExecuteTask.make(ti, dag_rel_path=Path("dag.py"), generator=executor.jwt_generator,
                            bundle_info=BundleInfo(name="aurora"))


def callback_workload():
    from airflow.executors.workloads import BundleInfo, ExecuteCallback
    from airflow.executors.workloads.callback import CallbackDTO, CallbackFetchMethod

    return ExecuteCallback(
        callback=CallbackDTO(id=str(uuid.uuid4()), fetch_method=CallbackFetchMethod.IMPORT_PATH,
                             data={"path": "domains.aurora.alerts.notify", "kwargs": {}}),
        dag_rel_path=Path("dag.py"), token="not-a-token", log_path="executor_callbacks/x",
        bundle_info=BundleInfo(name="aurora"),
    )


def test_the_global_executor_fails_every_task_and_callback_and_starts_no_process(no_process_may_start, capfd):
    from airflow.utils.state import CallbackState, TaskInstanceState

    from platform_runtime.executors import RefusingExecutor

    executor = RefusingExecutor()
    executor.start()
    task, callback = task_workload(executor), callback_workload()
    executor.queue_workload(task, session=None)  # what the scheduler calls, then heartbeat()
    executor.queue_workload(callback, session=None)
    capfd.readouterr()
    executor.heartbeat()
    logged = "".join(capfd.readouterr())  # Airflow's structlog writes to the process's stdout
    events = executor.get_event_buffer()
    assert set(events) == {task.ti.key, callback.key}
    state, info = events[task.ti.key]
    assert state == TaskInstanceState.FAILED
    assert REASON in info  # the scheduler's "state mismatch" log entry of the task carries it
    assert events[callback.key][0] == CallbackState.FAILED
    assert not executor.queued_tasks and not executor.queued_callbacks and not executor.running
    assert "[error" in logged and "Refused task aurora_dag.in_the_scheduler (run manual__1" in logged
    assert f"Refused callback {callback.key}" in logged and REASON in logged

    executor.queue_workload(task_workload(executor, task_id="late"), session=None)
    executor.end()  # the scheduler shutting down: nothing to wait for, what is queued fails
    assert [s for s, _ in executor.get_event_buffer().values()] == [TaskInstanceState.FAILED]
    executor.terminate()


def test_the_process_guard_catches_the_executor_it_replaces(no_process_may_start):
    """The guard above can fail: LocalExecutor forks its workers when it starts."""
    from airflow.executors.local_executor import LocalExecutor

    with pytest.raises(AssertionError, match="started a process"):
        LocalExecutor(parallelism=1).start()


def test_the_global_executor_takes_no_connection_test_and_is_no_teams_executor():
    from airflow.exceptions import AirflowConfigException
    from airflow.executors.executor_loader import ExecutorLoader, ExecutorName

    from platform_runtime.executors import RefusingExecutor

    assert RefusingExecutor.supports_connection_test is False  # the scheduler fails those itself
    assert RefusingExecutor.supports_multi_team is False
    with pytest.raises(AirflowConfigException, match="does not support multi-team"):
        ExecutorLoader.load_executor(ExecutorName(GLOBAL_EXECUTOR, None, team_name="aurora"))


def test_celery_mode_puts_the_refusing_executor_first():
    from devplatform.config import PlatformConfig
    from platform_runtime.executors import RefusingExecutor

    assert GLOBAL_EXECUTOR == f"{RefusingExecutor.__module__}.{RefusingExecutor.__qualname__}"
    setting = PlatformConfig(executor="celery", domains=["aurora", "referral"]).executor_setting()
    assert setting == f"{GLOBAL_EXECUTOR};aurora=CeleryExecutor;referral=CeleryExecutor"
    assert PlatformConfig(executor="local").executor_setting() == "LocalExecutor"


LOADER_CHECK = '''
import json
from airflow.executors.executor_loader import ExecutorLoader

names = ExecutorLoader.get_executor_names(validate_teams=False)
for name in names:
    ExecutorLoader.import_executor_cls(name)
default = ExecutorLoader.load_executor(names[0])
print(json.dumps({
    "names": [[n.module_path, n.alias, n.team_name] for n in names],
    "global": [type(default).__module__ + "." + type(default).__name__, default.team_name],
}))
'''


def test_airflow_accepts_the_whole_executor_setting_in_multi_team_mode():
    """Airflow's ExecutorLoader, in a process of its own (it caches what it read): the
    module path is taken as the global executor (no alias), each team gets its Celery."""
    from devplatform.config import PlatformConfig, bundle_config

    config = PlatformConfig(executor="celery")
    env = {
        **os.environ,
        "AIRFLOW__CORE__MULTI_TEAM": "True",
        "AIRFLOW__CORE__EXECUTOR": config.executor_setting(),
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundle_config(domains=config.domains)),
    }
    out = subprocess.run([sys.executable, "-c", LOADER_CHECK], env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-4000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["names"] == [[GLOBAL_EXECUTOR, None, None],
                               *([CELERY, "CeleryExecutor", d] for d in config.domains)]
    assert report["global"] == [GLOBAL_EXECUTOR, None]
