"""Cluster policies of the platform (Airflow imports this module from the project root).

``task_policy`` names a team task's executor (the team's own) and refuses operators that
name another team's DAG (see ``devplatform.tenant_guard``).
"""

from devplatform.tenant_guard import task_policy

__all__ = ["task_policy"]
