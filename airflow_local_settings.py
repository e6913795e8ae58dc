"""Cluster policies of the platform (Airflow imports this module from the project root).

``task_policy`` runs a team task on its team's own executor (names it on a task that names
none, refuses a task that names any other) and refuses operators that name another team's
DAG (see ``platform_runtime.tenant_guard``).
"""

from platform_runtime.tenant_guard import task_policy

__all__ = ["task_policy"]
