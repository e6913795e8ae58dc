"""The api-server's auth manager: Airflow's simple auth manager with team-scoped assets.

``[core] auth_manager = platform_runtime.auth.TeamScopedAuthManager`` (``platform_runtime.AUTH_MANAGER``;
``devplatform/config.py`` and the ``Dockerfile``). Users, roles, teams, passwords and tokens are
the simple auth manager's (``[core] simple_auth_manager_users``). What it adds, for assets (see
``platform_runtime.asset_scope`` for the whole mechanism):

- ``is_authorized_asset`` / ``is_authorized_asset_alias`` refuse an asset (alias) id the
  user's teams may not use (``platform_runtime.ownership``), on top of the role check;
- ``asset_scope(user)``: the teams whose assets the user may use, None for no limit;
- ``get_fastapi_middlewares`` adds ``AssetScopeMiddleware``, which filters lists and the
  dependency graph and answers another team's asset as a missing one.
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import (
    SimpleAuthManager,
    SimpleAuthManagerRole,
)


class TeamScopedAuthManager(SimpleAuthManager):
    def asset_scope(self, user) -> frozenset[str] | None:
        """None: the user is not limited (an admin, or no multi-team mode); else the teams
        whose assets it may use (empty for a non-admin user of no team)."""
        from airflow.configuration import conf

        if not conf.getboolean("core", "multi_team"):
            return None
        if user.role and user.role.upper() == SimpleAuthManagerRole.ADMIN.name:
            return None
        return frozenset(self.get_authorized_teams(user=user))

    def _may_use(self, user, kind: str, item_id) -> bool:
        from platform_runtime.asset_scope import may_use, parse_id

        teams = self.asset_scope(user)
        if teams is None or item_id is None:
            return True
        parsed = parse_id(item_id)
        return parsed is not None and may_use(teams, kind, parsed)

    def is_authorized_asset(self, *, method, user, details=None) -> bool:
        return (super().is_authorized_asset(method=method, user=user, details=details)
                and self._may_use(user, "asset", details.id if details else None))

    def is_authorized_asset_alias(self, *, method, user, details=None) -> bool:
        return (super().is_authorized_asset_alias(method=method, user=user, details=details)
                and self._may_use(user, "alias", details.id if details else None))

    def get_fastapi_middlewares(self) -> list[tuple[Any, dict[str, Any]]]:
        from platform_runtime.asset_scope import AssetScopeMiddleware

        return [*super().get_fastapi_middlewares(), (AssetScopeMiddleware, {})]
