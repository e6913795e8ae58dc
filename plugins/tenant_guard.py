"""Api-server plugin: the platform's team checks on the Execution API.

- ``TenantGuardMiddleware`` refuses cross-team trigger/clear calls;
- ``ExecutionGuardMiddleware`` answers a task asking about another team's DAG, run, asset,
  asset state or variable as if it did not exist, and strips another team's assets from a
  task's outlets (see its module for the route table).

The logic lives in ``platform_runtime``; this file only registers it.
"""

from airflow.plugins_manager import AirflowPlugin

from platform_runtime.execution_guard import ExecutionGuardMiddleware
from platform_runtime.tenant_guard import TenantGuardMiddleware


class TenantGuardPlugin(AirflowPlugin):
    name = "tenant_guard"
    fastapi_root_middlewares = [
        {"middleware": TenantGuardMiddleware, "name": "tenant_guard"},
        {"middleware": ExecutionGuardMiddleware, "name": "execution_guard"},
    ]
