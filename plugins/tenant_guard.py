"""Api-server plugin: refuses cross-team trigger/clear calls on the Execution API.

The logic lives in ``platform_runtime.tenant_guard``; this file only registers it.
"""

from airflow.plugins_manager import AirflowPlugin

from platform_runtime.tenant_guard import TenantGuardMiddleware


class TenantGuardPlugin(AirflowPlugin):
    name = "tenant_guard"
    fastapi_root_middlewares = [{"middleware": TenantGuardMiddleware, "name": "tenant_guard"}]
