"""Team isolation in the running platform: a cluster policy at parse time, a guard at run time.

Airflow 3.3's Execution API scopes connections and variables by the task's team, but not
``POST /execution/dag-runs/{dag_id}/{run_id}`` (trigger) or ``.../clear``: a
``TriggerDagRunOperator`` in one team could start or clear another team's DAG runs. And a
task may name any executor (``@task(executor="LocalExecutor")``): Airflow 3.3.2's scheduler
hands a team's task to a *global* executor it names (``SchedulerJobRunner`` executor lookup,
the ``team_name is None`` branch), i.e. into the scheduler's process.

- Parse time (``task_policy``, loaded by ``airflow_local_settings.py``): a team task runs only
  on its team's own executor (``enforce_team_executor``: one that names none gets the team's
  default, one that names any other is a policy violation); an operator that names a DAG id
  literally (``TriggerDagRunOperator.trigger_dag_id``, ``ExternalTaskMarker.external_dag_id``)
  must name a DAG of its own bundle. A policy violation is an import error of the file.
- Run time (``TenantGuardMiddleware``, an api-server plugin): every trigger or clear call
  on the Execution API is refused (403) unless the calling task's DAG and the target DAG
  are in the same bundle. This holds for ids built at run time and for task code that
  talks to the API directly, because it is enforced by the server, not in the task. The
  global executor itself runs nothing (``platform_runtime.executors.RefusingExecutor``).

One bundle per team, so "same bundle" is "same team".
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

TRIGGER_PATH = re.compile(r"^/execution/dag-runs/(?P<dag_id>[^/]+)/(?P<run_id>[^/]+)(?:/clear)?/?$")


# -- parse time -------------------------------------------------------------------------
def named_dag_ids(task) -> list[str]:
    """DAG ids an operator would trigger or clear, when given literally (not templated)."""
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
    from airflow.providers.standard.sensors.external_task import ExternalTaskMarker

    ids = []
    if isinstance(task, TriggerDagRunOperator):
        ids.append(task.trigger_dag_id)
    if isinstance(task, ExternalTaskMarker):
        ids.append(task.external_dag_id)
    return [i for i in ids if isinstance(i, str) and "{{" not in i]


def configured_bundles() -> list[dict]:
    """``[dag_processor] dag_bundle_config_list``, parsed once per distinct value (the cluster
    policies ask for it once per task while a file parses)."""
    from airflow.configuration import conf

    return _parsed_bundles(conf.get("dag_processor", "dag_bundle_config_list", fallback="[]") or "[]")


@lru_cache(maxsize=4)
def _parsed_bundles(raw: str) -> list[dict]:
    return json.loads(raw)


def team_of_file(fileloc: str | None) -> str | None:
    """The team owning the bundle that ``fileloc`` lies in, if any."""
    if not fileloc:
        return None
    bundles = configured_bundles()
    return team_of_bundle(bundle_of_file(fileloc, bundles), bundles)


def bundle_of_file(fileloc: str, bundles: list[dict]) -> str | None:
    path = Path(fileloc).resolve()
    for b in bundles:
        root = Path(b.get("kwargs", {}).get("path", "/nonexistent")).resolve()
        if path.is_relative_to(root):
            return b["name"]
    return None


def foreign_targets(task, own_bundle: str | None, bundle_of_dag: Callable[[str], str | None]) -> list[str]:
    """Literal DAG ids the task names that belong to another bundle (team)."""
    if own_bundle is None:
        return []
    out = []
    for dag_id in named_dag_ids(task):
        owner = bundle_of_dag(dag_id)
        if owner is not None and owner != own_bundle:
            out.append(f"{dag_id} (bundle {owner})")
    return out


def defining_bundle(dag_id: str, bundles: list[dict]) -> str | None:
    """The bundle whose files define ``dag_id`` (``dag_id="..."``, ``DAG("...")`` or an
    ``@dag``-decorated ``def <dag_id>(``), read from the files: DAG parsing in Airflow 3 has
    no metadata database (the ORM is refused there), and dag ids are unique per deployment."""
    quoted = re.escape(dag_id)
    pattern = re.compile(rf"""(\bdag_id\s*=\s*|DAG\(\s*)["']{quoted}["']|^\s*def\s+{quoted}\s*\(""", re.M)
    for b in bundles:
        root = Path(b.get("kwargs", {}).get("path", "/nonexistent"))
        for f in sorted(root.rglob("*.py")) if root.is_dir() else []:
            try:
                if pattern.search(f.read_text(errors="replace")):
                    return b["name"]
            except OSError:
                continue
    return None


def team_of_bundle(bundle: str | None, bundles: list[dict]) -> str | None:
    return next((b.get("team_name") for b in bundles if b["name"] == bundle), None) if bundle else None


def team_default_executor(team: str | None, executor_names: list) -> str | None:
    """The name of a team's own default executor (the first configured for it), if it has one."""
    own = [n for n in executor_names if team is not None and n.team_name == team]
    return (own[0].alias or own[0].module_path) if own else None


def executor_names_of(name) -> set[str]:
    """Every string a task may name an executor by: alias, module path, class name (the
    three ``SchedulerJobRunner`` compares ``task.executor`` with)."""
    return {n for n in (name.alias, name.module_path, name.module_path.rsplit(".", 1)[-1]) if n}


def resolved_executor(executor: str, team: str | None, executor_names: list):
    """The configured executor the scheduler runs a task of ``team`` naming ``executor`` on:
    the first, in configuration order, that answers to the name and is the team's or global
    (Airflow 3.3.2 ``SchedulerJobRunner`` executor lookup); None if there is none."""
    for name in executor_names:
        if executor in executor_names_of(name) and (name.team_name is None or name.team_name == team):
            return name
    return None


def pin_team_executor(task, bundles: list[dict]) -> None:
    """Name the team's default executor on a team task that names none.

    Airflow 3.3.2 with a global executor and a CeleryExecutor per team gives a task
    queued with ``executor`` unset a fresh Celery task id only when the *global* default
    executor is one that pre-assigns ids (``SchedulerJobRunner`` builds a CASE on
    ``task_instance.executor``). Otherwise a task resumed after a deferral is sent again
    under its first Celery task id, whose result (the deferring exit's SUCCESS) is already
    in the backend: the executor reports the resumed try finished at once, the scheduler
    sees a queued task "finished externally" and marks it up_for_retry. Named, the team's
    CeleryExecutor is in the CASE and every queueing gets a new id. Routing is unchanged:
    the scheduler picks the executor of that name configured for the task's team.
    """
    enforce_team_executor(task, bundles, refuse=False)


def enforce_team_executor(task, bundles: list[dict], refuse: bool = True) -> None:
    """A team's task runs only on its team's own executor.

    A task that names no executor gets the team's default (see ``pin_team_executor``); one
    that names an executor the scheduler would not resolve to one of the team's own (a global
    one such as ``LocalExecutor`` by any of its names, another team's alias, an unknown name)
    is a policy violation. Left alone: tasks of a file in no configured bundle or of a bundle
    without a team, and teams with no executor of their own (``PLATFORM_EXECUTOR=local``: then
    every task runs on the global executor anyway).
    """
    if task.dag is None:
        return
    from airflow.executors.executor_loader import ExecutorLoader

    team = team_of_bundle(bundle_of_file(task.dag.fileloc, bundles), bundles)
    if team is None:
        return
    names = ExecutorLoader.get_executor_names(validate_teams=False)
    own = team_default_executor(team, names)
    if own is None:
        return
    if task.executor is None:
        if isinstance(getattr(task, "partial_kwargs", None), dict):  # a mapped task: its executor is read-only
            task.partial_kwargs["executor"] = own
        else:
            task.executor = own
        return
    resolved = resolved_executor(task.executor, team, names)
    if refuse and (resolved is None or resolved.team_name != team):
        from airflow.exceptions import AirflowClusterPolicyViolation

        where = "a global executor" if resolved is not None else "not an executor of this team"
        raise AirflowClusterPolicyViolation(
            f"Task {task.task_id!r} of DAG {task.dag.dag_id!r} (team {team}) names executor "
            f"{task.executor!r} ({where}); a team's tasks run only on its own executor, {own!r}: "
            f"name {own!r} or no executor at all."
        )


def task_policy(task) -> None:
    """Cluster policy: a team task runs on its team's executor (named if it names none, refused
    if it names another); refuse an operator that names another team's DAG."""
    bundles = configured_bundles()
    enforce_team_executor(task, bundles)
    if not named_dag_ids(task):
        return
    from airflow.exceptions import AirflowClusterPolicyViolation

    own = bundle_of_file(task.dag.fileloc, bundles) if task.dag else None
    foreign = foreign_targets(task, own, lambda dag_id: defining_bundle(dag_id, bundles))
    if foreign:
        raise AirflowClusterPolicyViolation(
            f"Task {task.task_id!r} of DAG {task.dag.dag_id!r} (bundle {own}) names another team's DAG: "
            f"{', '.join(foreign)}. A team may trigger, clear or mark only its own DAGs."
        )


# -- run time (api-server) --------------------------------------------------------------
def _bundles_of(ti_id: str, target_dag_id: str) -> tuple[str | None, str | None]:
    from airflow.models.dag import DagModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.get(TaskInstance, ti_id)
        own = session.get(DagModel, ti.dag_id) if ti is not None else None
        target = session.get(DagModel, target_dag_id)
        return (own.bundle_name if own else None), (target.bundle_name if target else None)


class TenantGuardMiddleware:
    """ASGI middleware on the api-server: refuse cross-team trigger/clear on the Execution API."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            m = TRIGGER_PATH.match(scope["path"])
            if m:
                refusal = await self._refusal(scope, m.group("dag_id"))
                if refusal:
                    from platform_runtime.asgi import send_json

                    body = json.dumps({"detail": {"reason": "cross_team", "message": refusal}}).encode()
                    await send_json(send, 403, body)
                    return
        await self.app(scope, receive, send)

    async def _refusal(self, scope, target_dag_id: str) -> str | None:
        from urllib.parse import unquote

        from starlette.concurrency import run_in_threadpool

        from platform_runtime.execution_guard import verified_task_id

        ti_id = await verified_task_id(dict(scope.get("headers", [])))
        if ti_id is None:
            return None  # no valid task token: the route refuses the request itself (401/403)
        own, target = await run_in_threadpool(_bundles_of, ti_id, unquote(target_dag_id))
        if target is not None and own != target:
            return f"a task of bundle {own!r} may not trigger or clear DAG {unquote(target_dag_id)!r} of another team"
        return None
