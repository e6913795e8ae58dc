"""Assets are team-scoped on the api-server (platform_runtime.asset_scope, platform_runtime.auth).

The real core API app (``airflow.api_fastapi.app.create_app("core")``) on the session's real
metadata database, multi-team, simple auth manager users of two teams. Two bundles of real DAG
files are parsed and synced as the dag-processor does, team B's first: its assets are B's;
team A's DAG ``ascope_a_consumer`` names B's asset later (which gives A nothing) and B shares
``ascope_shared`` with A (``[platform] shared_assets``). Every avenue is run as A's op twice:
with Airflow's stock simple auth manager (it must leak: the attack is real) and with the
platform's auth manager (refused or filtered); own-team use, a user of both teams, a user of
no team and the admin are checked with the platform's.
"""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path

import pytest

from platform_runtime import AUTH_MANAGER
from platform_runtime.asset_scope import ROUTES, Decision

STOCK = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
A, B = "ascope_a", "ascope_b"
USERS = {"admin": ("admin", None), "a_op": ("op", [A]), "b_op": ("op", [B]), "ab_op": ("op", [A, B]),
         "none_op": ("op", None)}
SHARED = {"ascope_shared": [A]}

B_DAGS = '''
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset, AssetAlias

B1 = Asset("ascope_b1", uri="file:///ascope/b1")
with DAG("ascope_b_producer", schedule=None):
    EmptyOperator(task_id="produce", outlets=[B1, Asset("ascope_shared")])
with DAG("ascope_b_consumer", schedule=[B1]):
    EmptyOperator(task_id="consume")
with DAG("ascope_b_alias_consumer", schedule=[AssetAlias("ascope_b_alias")]):
    EmptyOperator(task_id="consume")
'''
A_DAGS = '''
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset

A1 = Asset("ascope_a1", uri="file:///ascope/a1")
with DAG("ascope_a_producer", schedule=None):
    EmptyOperator(task_id="produce", outlets=[A1])
# names B's asset after B did: a later reference gives team A nothing
with DAG("ascope_a_consumer", schedule=[A1, Asset("ascope_b1", uri="file:///ascope/b1")]):
    EmptyOperator(task_id="consume")
'''
# B names A's asset after A did: B gets nothing, and A's users do not learn B's DAG from it
B_LATE = '''
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset

with DAG("ascope_b_late", schedule=[Asset("ascope_a1", uri="file:///ascope/a1")]):
    EmptyOperator(task_id="consume")
'''


def sync_bundle(folder: Path, bundle: str, team: str, source: str, name: str | None = None) -> None:
    """Add a DAG file to a bundle, parse the bundle and write it to the metadata DB as the
    dag-processor does."""
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.team import Team
    from airflow.utils.session import create_session

    folder.mkdir(exist_ok=True)
    (folder / f"{name or bundle}.py").write_text(source)
    with create_session() as session:
        t = session.get(Team, team) or Team(name=team)
        session.add(t)
        b = session.get(DagBundleModel, bundle) or DagBundleModel(name=bundle)
        if t not in b.teams:
            b.teams.append(t)
        session.add(b)
    bag = BundleDagBag(dag_folder=folder, bundle_path=folder, bundle_name=bundle)
    assert bag.import_errors == {}, bag.import_errors
    sync_bag_to_db(bag, bundle, None)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The two teams' DAGs and assets, active, with an event on A1 and B1 (both triggered a run
    of A's consumer), B1 queued for a DAG of each team, an orphan asset nobody's DAG references."""
    from airflow._shared.timezones import timezone
    from airflow.models.asset import (
        AssetActive,
        AssetAliasModel,
        AssetDagRunQueue,
        AssetEvent,
        AssetModel,
        AssetPartitionDagRun,
    )
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import select

    root = tmp_path_factory.mktemp("ascope")
    sync_bundle(root / "b", "ascope_b", B, B_DAGS)
    sync_bundle(root / "a", "ascope_a", A, A_DAGS)
    sync_bundle(root / "b", "ascope_b", B, B_LATE, name="ascope_b_late")
    with create_session() as session:
        session.add(AssetModel(name="ascope_orphan", uri="file:///ascope/orphan"))
        session.flush()
        ids = {a.name: a.id for a in session.scalars(select(AssetModel).where(AssetModel.name.like("ascope_%")))}
        active = set(session.scalars(select(AssetActive.name)))
        for asset in session.scalars(select(AssetModel).where(AssetModel.id.in_(ids.values()))):
            if asset.name not in active:
                session.add(AssetActive.for_asset(asset))
        events = [AssetEvent(asset_id=ids["ascope_a1"]), AssetEvent(asset_id=ids["ascope_b1"])]
        session.add_all(events)
        # a run of A's DAG triggered by both events (B1's through A's later reference)
        run = DagRun(dag_id="ascope_a_consumer", run_id="ascope_asset_triggered", run_type=DagRunType.ASSET_TRIGGERED,
                     run_after=timezone.utcnow(), start_date=timezone.utcnow(), state=DagRunState.SUCCESS,
                     triggered_by=DagRunTriggeredByType.ASSET)
        run.end_date = timezone.utcnow()
        run.consumed_asset_events.extend(events)
        session.add(run)
        # a pending partitioned run of A's consumer: the UI lists the assets it waits on
        session.add(AssetPartitionDagRun(target_dag_id="ascope_a_consumer", partition_key="ascope-p1"))
        session.add_all([AssetDagRunQueue(asset_id=ids["ascope_b1"], target_dag_id="ascope_b_consumer"),
                         AssetDagRunQueue(asset_id=ids["ascope_b1"], target_dag_id="ascope_a_consumer")])
        alias = session.scalar(select(AssetAliasModel).where(AssetAliasModel.name == "ascope_b_alias"))
        ids["alias:ascope_b_alias"] = alias.id
    assert set(ids) == {"ascope_a1", "ascope_b1", "ascope_shared", "ascope_orphan", "alias:ascope_b_alias"}
    return ids


class Api:
    def __init__(self, client, tokens):
        self.client, self.tokens = client, tokens

    def __call__(self, method: str, path: str, user: str, **kwargs):
        return self.client.request(method, path, headers={"Authorization": f"Bearer {self.tokens[user]}"}, **kwargs)


@pytest.fixture
def server(world, monkeypatch):
    """``server(auth_manager)``: the real core API app with that ``[core] auth_manager``."""
    from airflow.api_fastapi.app import create_app, get_auth_manager, purge_cached_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    monkeypatch.setenv("AIRFLOW__CORE__MULTI_TEAM", "True")
    monkeypatch.setenv("AIRFLOW__PLATFORM__SHARED_ASSETS", json.dumps(SHARED))
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", ",".join(
        f"{u}:{role}" + (f":{'|'.join(teams)}" if teams else "") for u, (role, teams) in USERS.items()))

    def build(auth_manager: str) -> Api:
        monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", auth_manager)
        purge_cached_app()
        app = create_app("core")
        am = get_auth_manager()
        assert type(am).__module__ + "." + type(am).__name__ == auth_manager
        tokens = {u: am.generate_jwt(SimpleAuthManagerUser(username=u, role=role, teams=teams))
                  for u, (role, teams) in USERS.items()}
        api = Api(TestClient(app), tokens)
        api.app = app
        return api

    yield build
    purge_cached_app()


def expected_scope(world) -> dict[str, set[int]]:
    """The assets of the world each user may use, by the ownership rule (not by the code under test)."""
    own = {A: {world["ascope_a1"], world["ascope_shared"]}, B: {world["ascope_b1"], world["ascope_shared"]}}
    return {"a_op": own[A], "b_op": own[B], "ab_op": own[A] | own[B], "none_op": set()}


def test_ownership_rule_on_the_world(world):
    from airflow.utils.session import create_session

    from platform_runtime.ownership import asset_owners, team_asset_ids

    ours = {v for k, v in world.items() if not k.startswith("alias:")}
    with create_session() as session:
        owners = {k: v for k, v in asset_owners(session, ours).items()}
        assert owners == {world["ascope_a1"]: A, world["ascope_b1"]: B, world["ascope_shared"]: B}
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AIRFLOW__PLATFORM__SHARED_ASSETS", json.dumps(SHARED))
            assert team_asset_ids(session, A) & ours == expected_scope(world)["a_op"]


# -- every avenue, as team A's op ---------------------------------------------------------
def avenues(api: Api, world) -> dict[str, tuple[int, int]]:
    """{avenue: (status, how many of team B's / nobody's assets it revealed or changed)} as a_op.
    A by-id avenue reveals (1) when its answer differs from the one for a missing asset."""
    b1, missing = world["ascope_b1"], 987654321
    foreign = {world["ascope_b1"], world["ascope_orphan"]}
    out: dict[str, tuple[int, int]] = {}

    def by_id(name, method, template, item=b1, **kwargs):
        if "queuedEvents" in template:
            queue_b1()
        r = api(method, template.format(id=item), "a_op", **kwargs)
        gone = api(method, template.format(id=missing), "a_op", **kwargs)
        out[name] = (r.status_code, int(r.status_code != gone.status_code or _listing(r) != _listing(gone)))
        return r

    def queue_b1():
        """B1 queued for a DAG of each team (again: a DELETE avenue empties A's entry)."""
        from airflow.models.asset import AssetDagRunQueue
        from airflow.utils.session import create_session

        with create_session() as session:
            for dag_id in ("ascope_b_consumer", "ascope_a_consumer"):
                session.merge(AssetDagRunQueue(asset_id=b1, target_dag_id=dag_id))

    queue_b1()
    r = api("GET", "/api/v2/assets", "a_op", params={"limit": 100, "name_pattern": "ascope_"})
    out["list assets"] = (r.status_code, len({a["id"] for a in r.json()["assets"]} & foreign))
    b_dags = {"ascope_b_producer", "ascope_b_consumer", "ascope_b_alias_consumer", "ascope_b_late"}

    def dags_named(asset: dict) -> set[str]:
        return {r["dag_id"] for k in ("scheduled_dags", "producing_tasks", "consuming_tasks") for r in asset[k]}

    r = api("GET", f"/api/v2/assets/{world['ascope_a1']}", "a_op")
    out["own asset names B's DAG (get)"] = (r.status_code, len(dags_named(r.json()) & b_dags))
    r = api("GET", "/api/v2/assets", "a_op", params={"name_pattern": "ascope_a1"})
    out["own asset names B's DAG (list)"] = (r.status_code, sum(len(dags_named(a) & b_dags) for a in r.json()["assets"]))
    r = api("GET", "/api/v2/assets/aliases", "a_op", params={"name_pattern": "ascope_"})
    out["list aliases"] = (r.status_code, len({a["id"] for a in r.json()["asset_aliases"]} & {world["alias:ascope_b_alias"]}))
    r = api("GET", "/api/v2/assets/events", "a_op", params={"limit": 100})
    out["list events"] = (r.status_code, len([e for e in r.json()["asset_events"] if e["asset_id"] in foreign]))
    r = api("GET", "/api/v2/dags/ascope_a_consumer/assets/queuedEvents", "a_op")
    out["own DAG's queued events"] = (r.status_code, len([e for e in r.json().get("queued_events", [])
                                                          if e["asset_id"] in foreign]))
    r = api("GET", "/api/v2/dags/ascope_a_consumer/dagRuns/ascope_asset_triggered/upstreamAssetEvents", "a_op")
    out["own run's upstream events"] = (r.status_code, len([e for e in r.json()["asset_events"] if e["asset_id"] in foreign]))
    assert r.json()["total_entries"] == len(r.json()["asset_events"])
    r = api("GET", "/ui/next_run_assets/ascope_a_consumer", "a_op")
    out["ui next_run_assets"] = (r.status_code, len([e for e in r.json()["events"] if e["id"] in foreign]))
    r = api("GET", "/ui/pending_partitioned_dag_run/ascope_a_consumer", "a_op", params={"partition_key": "ascope-p1"})
    out["ui pending partitioned run"] = (r.status_code, len([e for e in r.json()["assets"] if e["asset_id"] in foreign]))
    r = api("GET", "/ui/dependencies", "a_op")
    out["ui dependencies graph"] = (r.status_code, len({n["id"] for n in r.json()["nodes"]} & {f"asset:{i}" for i in foreign}))
    by_id("ui data graph of B1", "GET", "/ui/dependencies?dependency_type=data&node_id=asset:{id}")
    by_id("get asset", "GET", "/api/v2/assets/{id}")
    by_id("get alias", "GET", "/api/v2/assets/aliases/{id}", item=world["alias:ascope_b_alias"])
    by_id("asset queued events", "GET", "/api/v2/assets/{id}/queuedEvents")
    by_id("own DAG's queued event of B1", "GET", "/api/v2/dags/ascope_a_consumer/assets/{id}/queuedEvents")
    by_id("state-store list", "GET", "/api/v2/assets/{id}/state-store")
    by_id("state-store get", "GET", "/api/v2/assets/{id}/state-store/owner")
    by_id("state-store put", "PUT", "/api/v2/assets/{id}/state-store/planted", json={"value": "from team A"})
    by_id("state-store delete key", "DELETE", "/api/v2/assets/{id}/state-store/planted")
    by_id("materialize", "POST", "/api/v2/assets/{id}/materialize", json={})
    by_id("delete own DAG's queued event of B1", "DELETE", "/api/v2/dags/ascope_a_consumer/assets/{id}/queuedEvents")
    by_id("delete asset queued events", "DELETE", "/api/v2/assets/{id}/queuedEvents")
    by_id("state-store clear", "DELETE", "/api/v2/assets/{id}/state-store")
    r = api("POST", "/api/v2/assets/events", "a_op", json={"asset_id": b1, "extra": {"from": "team A"}})
    gone = api("POST", "/api/v2/assets/events", "a_op", json={"asset_id": missing})
    out["create event"] = (r.status_code, int(r.status_code != gone.status_code))
    return out


def _listing(r):
    try:
        return r.json() if r.status_code == 200 else None
    except ValueError:
        return r.text


def seed_b_state(api: Api, world) -> None:
    r = api("PUT", f"/api/v2/assets/{world['ascope_b1']}/state-store/owner", "b_op", json={"value": "team B"})
    assert r.status_code == 204, r.text


def b1_events(world) -> int:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return session.scalar(select(func.count()).select_from(AssetEvent).where(AssetEvent.asset_id == world["ascope_b1"]))


def test_every_avenue_leaks_with_the_stock_auth_manager_and_not_with_the_platforms(server, world, capsys):
    stock = server(STOCK)
    seed_b_state(stock, world)
    events_before = b1_events(world)
    before = avenues(stock, world)
    stock_events = b1_events(world) - events_before

    scoped = server(AUTH_MANAGER)
    seed_b_state(scoped, world)
    events_before = b1_events(world)
    after = avenues(scoped, world)
    scoped_events = b1_events(world) - events_before

    with capsys.disabled():
        print("\nteam A's op on team B's (and nobody's) assets: status, leaked/changed — stock -> platform")
        for name in before:
            print(f"  {name:40} {before[name][0]} {before[name][1]}  ->  {after[name][0]} {after[name][1]}")
        print(f"  events created on B1: stock {stock_events} -> platform {scoped_events}")
        print(f"  avenues leaking: stock {sum(1 for v in before.values() if v[1])}/{len(before)}"
              f" -> platform {sum(1 for v in after.values() if v[1])}/{len(after)}")
    assert stock_events == 1  # the attack is real: A's op made an event on B's asset
    assert scoped_events == 0
    assert not [k for k, v in after.items() if v[1]], after
    # every avenue but the graph of B1's data (Airflow hides it when no readable DAG touches
    # it; A's DAG does) leaks with the stock auth manager
    assert not [k for k, v in before.items() if not v[1]], before
    for name in ("get asset", "state-store put", "materialize", "create event"):
        assert after[name][0] == 404, (name, after[name])


def test_own_team_shared_union_no_team_and_admin(server, world):
    api = server(AUTH_MANAGER)
    ours = {v for k, v in world.items() if not k.startswith("alias:")}
    for user, expected in expected_scope(world).items():
        r = api("GET", "/api/v2/assets", user, params={"limit": 100, "name_pattern": "ascope_"})
        assert r.status_code == 200, r.text
        listed = {a["id"] for a in r.json()["assets"]}
        assert listed == expected, (user, listed)
        assert r.json()["total_entries"] == len(expected)
        for asset_id in ours:
            got = api("GET", f"/api/v2/assets/{asset_id}", user).status_code
            assert got == (200 if asset_id in expected else 404), (user, asset_id, got)
    admin = api("GET", "/api/v2/assets", "admin", params={"limit": 100, "name_pattern": "ascope_"}).json()
    assert {a["id"] for a in admin["assets"]} == ours and admin["total_entries"] == len(ours)
    assert api("GET", f"/api/v2/assets/{world['ascope_orphan']}", "admin").status_code == 200
    a1_refs = {r["dag_id"] for r in api("GET", f"/api/v2/assets/{world['ascope_a1']}", "admin").json()["scheduled_dags"]}
    assert "ascope_b_late" in a1_refs  # the admin sees every DAG naming an asset
    a1_refs = {r["dag_id"] for r in api("GET", f"/api/v2/assets/{world['ascope_a1']}", "a_op").json()["scheduled_dags"]}
    assert a1_refs == {"ascope_a_consumer"}
    # an alias is B's: B's DAG is scheduled on it
    assert [a["name"] for a in api("GET", "/api/v2/assets/aliases", "b_op").json()["asset_aliases"]
            if a["name"].startswith("ascope_")] == ["ascope_b_alias"]

    a1, shared = world["ascope_a1"], world["ascope_shared"]
    for asset_id in (a1, shared):
        assert api("PUT", f"/api/v2/assets/{asset_id}/state-store/k", "a_op", json={"value": 1}).status_code == 204
        assert api("GET", f"/api/v2/assets/{asset_id}/state-store/k", "a_op").json()["value"] == 1
        assert api("DELETE", f"/api/v2/assets/{asset_id}/state-store/k", "a_op").status_code == 204
    r = api("POST", "/api/v2/assets/events", "a_op", json={"asset_id": a1, "extra": {"own": True}})
    assert r.status_code == 200, r.text
    events = api("GET", "/api/v2/assets/events", "a_op", params={"asset_id": a1}).json()
    assert events["total_entries"] == len(events["asset_events"]) >= 2
    r = api("POST", f"/api/v2/assets/{a1}/materialize", "a_op", json={})
    assert r.status_code == 200 and r.json()["dag_id"] == "ascope_a_producer", r.text
    upstream = api("GET", "/api/v2/dags/ascope_a_consumer/dagRuns/ascope_asset_triggered/upstreamAssetEvents", "a_op")
    assert [e["asset_id"] for e in upstream.json()["asset_events"]] == [a1] and upstream.json()["total_entries"] == 1
    upstream = api("GET", "/api/v2/dags/ascope_a_consumer/dagRuns/ascope_asset_triggered/upstreamAssetEvents", "admin")
    assert sorted(e["asset_id"] for e in upstream.json()["asset_events"]) == sorted([a1, world["ascope_b1"]])
    pending = api("GET", "/ui/pending_partitioned_dag_run/ascope_a_consumer", "a_op", params={"partition_key": "ascope-p1"})
    assert [e["asset_id"] for e in pending.json()["assets"]] == [a1], pending.text
    graph = api("GET", "/ui/dependencies", "a_op").json()
    assert f"asset:{a1}" in {n["id"] for n in graph["nodes"]}
    assert all(e["source_id"] in {n["id"] for n in graph["nodes"]} for e in graph["edges"])
    # the admin sees B1 in the graph, as the stock auth manager shows it
    assert f"asset:{world['ascope_b1']}" in {n["id"] for n in api("GET", "/ui/dependencies", "admin").json()["nodes"]}


def test_pages_and_totals_are_exact(server, world):
    api = server(AUTH_MANAGER)
    full = api("GET", "/api/v2/assets", "a_op", params={"limit": 100}).json()
    assert full["total_entries"] == len(full["assets"])
    pages = [api("GET", "/api/v2/assets", "a_op", params={"limit": 1, "offset": i}).json()
             for i in range(full["total_entries"] + 1)]
    assert [p["total_entries"] for p in pages] == [full["total_entries"]] * len(pages)
    assert [a["id"] for p in pages for a in p["assets"]] == [a["id"] for a in full["assets"]]
    with pytest.MonkeyPatch.context() as mp:  # more assets than one inner page
        mp.setenv("AIRFLOW__API__MAXIMUM_PAGE_LIMIT", "1")
        paged = api("GET", "/api/v2/assets", "a_op", params={"limit": 1, "offset": 1}).json()
    assert paged["total_entries"] == full["total_entries"]
    assert [a["id"] for a in paged["assets"]] == [a["id"] for a in full["assets"][1:2]]
    assert api("GET", "/api/v2/assets", "a_op", params={"limit": -1}).status_code == 422


def test_the_auth_manager_refuses_other_teams_asset_ids(server, world):
    """The first layer alone: Airflow's by-id routes ask the auth manager with the path's id."""
    from airflow.api_fastapi.auth.managers.models.resource_details import AssetAliasDetails, AssetDetails
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    server(AUTH_MANAGER)
    from airflow.api_fastapi.app import get_auth_manager

    am = get_auth_manager()
    a_op = SimpleAuthManagerUser(username="a_op", role="op", teams=[A])
    admin = SimpleAuthManagerUser(username="admin", role="admin")
    nobody = SimpleAuthManagerUser(username="none_op", role="op")
    b1, a1 = str(world["ascope_b1"]), str(world["ascope_a1"])
    for method in ("GET", "PUT", "POST", "DELETE"):
        assert am.is_authorized_asset(method=method, user=a_op, details=AssetDetails(id=a1))
        assert not am.is_authorized_asset(method=method, user=a_op, details=AssetDetails(id=b1))
        assert am.is_authorized_asset(method=method, user=admin, details=AssetDetails(id=b1))
        assert not am.is_authorized_asset(method=method, user=nobody, details=AssetDetails(id=a1))
    assert am.is_authorized_asset(method="GET", user=a_op, details=AssetDetails(id=None))  # lists: filtered
    alias = str(world["alias:ascope_b_alias"])
    assert not am.is_authorized_asset_alias(method="GET", user=a_op, details=AssetAliasDetails(id=alias))
    assert am.is_authorized_asset_alias(
        method="GET", user=SimpleAuthManagerUser(username="b_op", role="op", teams=[B]), details=AssetAliasDetails(id=alias))
    viewer = SimpleAuthManagerUser(username="v", role="viewer", teams=[A])
    assert not am.is_authorized_asset(method="POST", user=viewer, details=AssetDetails(id=a1))  # roles still apply


# -- the census of asset routes ------------------------------------------------------------
def _mentions_assets(tp, seen: set) -> bool:
    from pydantic import BaseModel

    for t in (tp, *typing.get_args(tp)):
        if isinstance(t, type) and issubclass(t, BaseModel) and t not in seen:
            seen.add(t)
            if re.search("asset", t.__name__, re.I) or any(
                    re.search("asset", n, re.I) or _mentions_assets(f.annotation, seen) for n, f in t.model_fields.items()):
                return True
        elif t is not tp and typing.get_args(t) and _mentions_assets(t, seen):
            return True
    return False


def asset_routes(app) -> set[tuple[str, str]]:
    """Every route of the app that names assets (or dependencies) in its path, or whose
    response or request body model has an asset-named model or field."""
    from fastapi.routing import APIRoute

    found = set()
    for r in app.routes:
        if not isinstance(r, APIRoute) or not r.path.startswith(("/api/v2", "/ui")):
            continue
        body = r.body_field.field_info.annotation if r.body_field is not None else None
        if (re.search("asset|dependenc", r.path, re.I) or _mentions_assets(r.response_model, set())
                or _mentions_assets(body, set())):
            found |= {(m, r.path) for m in r.methods}
    return found


def test_every_asset_route_of_the_installed_airflow_has_a_decision(server):
    api = server(AUTH_MANAGER)
    listed = {(r.method, r.path) for r in ROUTES}
    assert len(listed) == len(ROUTES)
    found = asset_routes(api.app)
    assert found - listed == set(), "asset routes without a decision in platform_runtime.asset_scope.ROUTES"
    assert listed - found == set(), "ROUTES lists routes the installed Airflow does not have"
    for r in ROUTES:
        assert r.why
        if r.decision == Decision.LIST:
            assert r.items
        if r.decision == Decision.BY_ID:
            assert f"{{{r.id_field}}}" in r.path


def test_the_middleware_comes_with_the_auth_manager_and_stock_has_none(server):
    from platform_runtime.asset_scope import AssetScopeMiddleware

    assert any(m.cls is AssetScopeMiddleware for m in server(AUTH_MANAGER).app.user_middleware)
    assert not any(m.cls is AssetScopeMiddleware for m in server(STOCK).app.user_middleware)


def test_the_uis_cookie_is_scoped_too_and_no_token_is_401(server, world):
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

    api = server(AUTH_MANAGER)
    api.client.cookies.set(COOKIE_NAME_JWT_TOKEN, api.tokens["a_op"])
    r = api.client.get("/api/v2/assets", params={"name_pattern": "ascope_"})
    assert r.status_code == 200 and {a["id"] for a in r.json()["assets"]} == expected_scope(world)["a_op"]
    assert api.client.get(f"/api/v2/assets/{world['ascope_b1']}").status_code == 404
    api.client.cookies.clear()
    assert api.client.get("/api/v2/assets").status_code == 401
    assert api.client.post("/api/v2/assets/events", json={"asset_id": world["ascope_b1"]}).status_code == 401
