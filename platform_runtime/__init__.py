"""What enforces team isolation inside the running platform; ships in the image.

- ``platform_runtime.tenant_guard``: the cluster policy (``airflow_local_settings.py``) that
  pins each team task to its team's own executor and refuses any other, and refuses operators
  naming another team's DAG; the api-server middleware (``plugins/tenant_guard.py``) that
  refuses cross-team trigger/clear calls on the Execution API.
- ``platform_runtime.auth`` and ``platform_runtime.asset_scope``: the api-server's auth manager
  (``[core] auth_manager``), the simple auth manager with team-scoped assets, and the
  middleware it registers (lists filtered, another team's asset answered as a missing one).
- ``platform_runtime.execution_guard``: the api-server middleware (same plugin) that adds the
  team checks the rest of the Execution API lacks, and the table of every route and who
  checks it; ``platform_runtime.ownership``: which team owns a DAG, task, variable or asset.
- ``platform_runtime.executors``: ``RefusingExecutor``, the global executor that multi-team
  mode requires, which runs nothing and fails every workload it is handed.

Product code: it imports nothing from ``devplatform`` (local tooling) or ``domains``
(tests/test_import_layers.py).
"""

# ``[core] executor``'s global entry (a module path; importing it here would import Airflow).
GLOBAL_EXECUTOR = "platform_runtime.executors.RefusingExecutor"
# ``[core] auth_manager``: the simple auth manager with team-scoped assets.
AUTH_MANAGER = "platform_runtime.auth.TeamScopedAuthManager"
