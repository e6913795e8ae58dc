"""Which team owns what, read from the metadata database (one answer for every guard).

- A DAG belongs to the team of its bundle (``dag -> dag_bundle -> dag_bundle_team -> team``);
  a task instance, a DAG run and an XCom to the team of their DAG.
- A variable belongs to the team stored on its row (``variable.team_name``; None = global).
- An asset belongs to the team whose DAG referenced it first (a schedule, inlet or outlet
  reference; ties by team name). A later reference from another team's DAG gives that team
  nothing: claiming another team's asset by naming it in a DAG file is not a way in. A team
  may also use an asset the platform declares shared with it: ``[platform] shared_assets``
  (``AIRFLOW__PLATFORM__SHARED_ASSETS``), a JSON object ``{"<asset name or URI>": ["team",
  ...]}``, set by the platform's operators, never by a team.

Airflow's own ``AssetAccessControl`` (producer/consumer teams on an ``Asset``) decides which
asset events *schedule* which DAGs; it is declared by the teams themselves in DAG files, so it
cannot be what decides who may read or write an asset. Both apply.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy import select, union_all


def _dag_team_join(stmt, dag_id_column=None):
    """``stmt`` joined through the DAG (``dag_id_column``'s, or the statement's own ``dag``) to its team."""
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel

    if dag_id_column is not None:
        stmt = stmt.join(DagModel, DagModel.dag_id == dag_id_column)
    return stmt.join(DagBundleModel, DagBundleModel.name == DagModel.bundle_name).join(DagBundleModel.teams)


def dag_team(session, dag_id: str) -> str | None:
    """The team of a DAG (None: no such DAG, or a DAG of no team)."""
    from airflow.models.dag import DagModel
    from airflow.models.team import Team

    return session.scalar(_dag_team_join(select(Team.name).select_from(DagModel)).where(
        DagModel.dag_id == dag_id).limit(1))


def dag_exists(session, dag_id: str) -> bool:
    from airflow.models.dag import DagModel

    return session.scalar(select(DagModel.dag_id).where(DagModel.dag_id == dag_id)) is not None


def ti_team(session, ti_id: str) -> str | None:
    """The team of a task instance, by its id (the subject of a task's token)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.team import Team

    return session.scalar(_dag_team_join(select(Team.name).select_from(TaskInstance), TaskInstance.dag_id).where(
        TaskInstance.id == ti_id).limit(1))


def variable_team(session, key: str) -> tuple[bool, str | None]:
    """(exists, team) of a stored variable; keys are unique across teams."""
    from airflow.models.variable import Variable

    row = session.execute(select(Variable.team_name).where(Variable.key == key)).first()
    return (row is not None, row[0] if row is not None else None)


def shared_assets() -> dict[str, set[str]]:
    """``[platform] shared_assets``: {asset name or URI: teams it is shared with}."""
    from airflow.configuration import conf

    raw = conf.get("platform", "shared_assets", fallback="") or "{}"
    data = json.loads(raw)
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise ValueError('[platform] shared_assets must be a JSON object {"<asset name or URI>": ["team", ...]}')
    return {k: set(v) for k, v in data.items()}


def asset_owners(session, asset_ids: Iterable[int] | None = None) -> dict[int, str]:
    """{asset id: owning team} for the given assets (all when None); assets no team's DAG
    references are absent."""
    from airflow.models.asset import (
        DagScheduleAssetReference,
        TaskInletAssetReference,
        TaskOutletAssetReference,
    )
    from airflow.models.team import Team

    parts = []
    for ref in (DagScheduleAssetReference, TaskInletAssetReference, TaskOutletAssetReference):
        stmt = select(ref.asset_id.label("asset_id"), ref.dag_id.label("dag_id"), ref.created_at.label("created_at"))
        if asset_ids is not None:
            stmt = stmt.where(ref.asset_id.in_(list(asset_ids)))
        parts.append(stmt)
    refs = union_all(*parts).subquery()
    rows = session.execute(_dag_team_join(select(refs.c.asset_id, refs.c.created_at, Team.name).select_from(refs),
                                          refs.c.dag_id)).all()
    first: dict[int, tuple] = {}
    for asset_id, created_at, team in rows:
        if asset_id not in first or (created_at, team) < first[asset_id]:
            first[asset_id] = (created_at, team)
    return {asset_id: team for asset_id, (_, team) in first.items()}


def asset_teams(session, asset_id: int) -> set[str]:
    """Every team that may read or write the asset: its owner and the teams it is shared with."""
    from airflow.models.asset import AssetModel

    asset = session.get(AssetModel, asset_id)
    if asset is None:
        return set()
    shared = shared_assets()
    teams = shared.get(asset.name, set()) | shared.get(asset.uri, set())
    owner = asset_owners(session, [asset_id]).get(asset_id)
    return teams | ({owner} if owner else set())


def asset_id_of(session, *, name: str | None = None, uri: str | None = None) -> int | None:
    """The id of the active asset with that name (or URI)."""
    from airflow.models.asset import AssetActive, AssetModel

    stmt = select(AssetModel.id).join(AssetActive, (AssetActive.name == AssetModel.name) & (AssetActive.uri == AssetModel.uri))
    stmt = stmt.where(AssetModel.name == name) if name is not None else stmt.where(AssetModel.uri == uri)
    return session.scalar(stmt.limit(1))


def team_asset_ids(session, team: str) -> set[int]:
    """Ids of every asset ``team`` may read or write."""
    from airflow.models.asset import AssetModel

    owned = {a for a, t in asset_owners(session).items() if t == team}
    shared = [k for k, teams in shared_assets().items() if team in teams]
    if shared:
        owned |= set(session.scalars(select(AssetModel.id).where(AssetModel.name.in_(shared) | AssetModel.uri.in_(shared))))
    return owned


def may_use_asset(session, team: str | None, asset_id: int | None) -> bool:
    """A missing asset is nobody's; a caller of no team (an admin, a global task) is not limited here."""
    if team is None:
        return True
    return asset_id is not None and team in asset_teams(session, asset_id)
