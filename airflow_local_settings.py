"""Cluster policies of the platform (Airflow imports this module from the project root).

``task_policy`` runs a team task on its team's own executor (names it on a task that names
none, refuses a task that names any other) and refuses operators that name another team's
DAG (see ``platform_runtime.tenant_guard``); it also puts a team task left in Airflow's global
pool into its team's pool. ``dag_policy`` caps a DAG's active runs at its team's ceiling and
``get_dagbag_import_timeout`` gives each team's files its parse-time limit
(``platform_runtime.team_limits``: one team's flood does not stall another).
"""

from platform_runtime import team_limits, tenant_guard


def task_policy(task) -> None:
    tenant_guard.task_policy(task)
    team_limits.limit_task(task)


def dag_policy(dag) -> None:
    team_limits.limit_dag(dag)


def get_dagbag_import_timeout(dag_file_path: str) -> float:
    return team_limits.parse_timeout(dag_file_path)


__all__ = ["dag_policy", "get_dagbag_import_timeout", "task_policy"]
