"""The Execution API guard (platform_runtime.execution_guard) against the real Execution API.

Two teams, each with a bundle, a DAG, a run, task instances, a variable and assets, are made
in the session's real metadata database; the api-server's own app (``create_app(apps=
"execution")``) is served once as Airflow ships it and once with the platform's api-server
plugin's middlewares (``plugins/tenant_guard.py``). Every avenue is a request a task of team
``b`` makes with its own token, signed by Airflow's JWT generator, naming something of team
``a``: it must succeed on the stock app (the leak is real) and get, through the guard, what
the route answers for a missing object; the same requests naming team ``b``'s own objects
must still succeed through the guard. ``pytest -s`` prints the counts.

Also: the route table covers exactly the installed Airflow's routes (and reports a planted
extra one), the README shows that table, and ``platform_runtime.ownership``'s answers.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DAG_FILE = '''
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset

with DAG("{dag_id}", schedule=None):
    EmptyOperator(task_id="work", outlets=[{outlets}])
    EmptyOperator(task_id="next", inlets=[{inlets}])
'''


def asset(name: str) -> str:
    return f'Asset(name="{name}", uri="s3://{name}/data")'


@dataclass(eq=False)
class Team:
    name: str
    dag_id: str
    run_id: str
    asset: str
    variable: str
    ti_ids: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"s3://{self.asset}/data"


@dataclass
class World:
    a: Team
    b: Team
    shared: str
    global_variable: str
    alias: str
    tag: str
    folders: dict = field(default_factory=dict)
    baseline: dict = field(default_factory=dict)


def _session():
    from airflow.utils.session import create_session

    return create_session()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    """Teams ``a`` and ``b`` (each a bundle, a DAG, a run with conf, task instances, a variable,
    an asset with an event); team ``b``'s DAG also names ``a``'s asset (a later reference:
    still ``a``'s); ``a`` has a second asset shared with ``b``; an alias resolves to one
    asset of each team; one global variable."""
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.asset import AssetAliasModel, AssetEvent, AssetModel
    from airflow.models.dagbag import DBDagBag
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.team import Team as TeamModel
    from airflow.models.variable import Variable
    from airflow.utils.state import DagRunState, TaskInstanceState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    tag = secrets.token_hex(3)
    mp = pytest.MonkeyPatch()
    shared = f"g{tag}_a_shared"
    mp.setenv("AIRFLOW__CORE__MULTI_TEAM", "True")
    mp.setenv("AIRFLOW__PLATFORM__SHARED_ASSETS", json.dumps({shared: [f"g{tag}b"]}))
    a = Team(f"g{tag}a", f"g{tag}_a_dag", "a_run", f"g{tag}_a_asset", f"g{tag}_a_var")
    b = Team(f"g{tag}b", f"g{tag}_b_dag", "b_run", f"g{tag}_b_asset", f"g{tag}_b_var")
    folders = {t: tmp_path_factory.mktemp(t.name) for t in (a, b)}
    w = World(a, b, shared, f"g{tag}_global_var", f"g{tag}_alias", tag, {t.name: f for t, f in folders.items()})
    from airflow.configuration import conf

    bundles = json.loads(conf.get("dag_processor", "dag_bundle_config_list"))
    mp.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles + [
        {"name": f"{t.name}_bundle", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
         "kwargs": {"path": str(folders[t])}, "team_name": t.name} for t in (a, b)]))
    files = {a: DAG_FILE.format(dag_id=a.dag_id, outlets=f"{asset(a.asset)}, {asset(shared)}", inlets=""),
             b: DAG_FILE.format(dag_id=b.dag_id, outlets=asset(b.asset), inlets=asset(a.asset))}
    logical = datetime(2026, 1, 1, tzinfo=UTC)
    for team in (a, b):  # a first: its references are the first
        folder = folders[team]
        (folder / "dag.py").write_text(files[team])
        with _session() as session:
            bundle = DagBundleModel(name=f"{team.name}_bundle")
            bundle.teams.append(TeamModel(name=team.name))
            session.add(bundle)
        bag = BundleDagBag(dag_folder=folder, bundle_path=folder, bundle_name=f"{team.name}_bundle")
        assert bag.import_errors == {}, bag.import_errors
        with _session() as session:
            sync_bag_to_db(bag, f"{team.name}_bundle", None, session=session)
        with _session() as session:
            dag = DBDagBag().get_latest_version_of_dag(team.dag_id, session=session)
            run = dag.create_dagrun(run_id=team.run_id, logical_date=logical, data_interval=(logical, logical),
                                    run_after=logical, conf={"private": f"{team.name} conf"},
                                    run_type=DagRunType.MANUAL, triggered_by=DagRunTriggeredByType.TEST,
                                    state=DagRunState.RUNNING, session=session)
            for ti in run.get_task_instances(session=session):
                team.ti_ids[ti.task_id] = str(ti.id)
                ti.state = TaskInstanceState.SUCCESS if ti.task_id == "next" else TaskInstanceState.RUNNING
            session.flush()
    with _session() as session:
        Variable.set(a.variable, "a's value", team_name=a.name, session=session)
        Variable.set(b.variable, "b's value", team_name=b.name, session=session)
        Variable.set(w.global_variable, "global value", session=session)
        assets = {m.name: m for m in session.query(AssetModel).filter(AssetModel.name.in_([a.asset, b.asset, shared]))}
        assert set(assets) == {a.asset, b.asset, shared}, "the DAGs' assets were not stored"
        alias = AssetAliasModel(name=w.alias)
        alias.assets.extend([assets[a.asset], assets[b.asset]])
        session.add(alias)
        for name in (a.asset, b.asset, shared):
            session.add(AssetEvent(asset_id=assets[name].id, extra={"from": name}, source_aliases=[alias]))
    yield w
    mp.undo()
    _drop(w)


def _drop(w: World) -> None:
    """Remove what the fixture made (the metadata database serves the whole session)."""
    from airflow.models.asset import AssetAliasModel, AssetEvent, AssetModel
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.dagrun import DagRun
    from airflow.models.team import Team as TeamModel
    from airflow.models.variable import Variable
    from sqlalchemy import delete, select

    prefix = f"g{w.tag}"
    with _session() as session:
        ids = list(session.scalars(select(AssetModel.id).where(AssetModel.name.startswith(prefix))))
        session.execute(delete(AssetEvent).where(AssetEvent.asset_id.in_(ids)))
        session.execute(delete(Variable).where(Variable.key.startswith(prefix)))
        for alias in session.scalars(select(AssetAliasModel).where(AssetAliasModel.name.startswith(prefix))):
            session.delete(alias)
        for run in session.scalars(select(DagRun).where(DagRun.dag_id.startswith(prefix))):
            session.delete(run)
        for dag in session.scalars(select(DagModel).where(DagModel.dag_id.startswith(prefix))):
            session.delete(dag)
        for asset_model in session.scalars(select(AssetModel).where(AssetModel.name.startswith(prefix))):
            session.delete(asset_model)
        session.flush()
        for bundle in session.scalars(select(DagBundleModel).where(DagBundleModel.name.startswith(prefix))):
            session.delete(bundle)
        session.execute(delete(TeamModel).where(TeamModel.name.startswith(prefix)))


def token(ti_id: str, scope: str | None = None, **signing) -> str:
    """A task's token as Airflow's executors mint it (JWTGenerator with the configured key)."""
    from airflow.api_fastapi.auth.tokens import JWTGenerator, get_signing_args
    from airflow.configuration import conf

    args = signing or get_signing_args(make_secret_key_if_needed=False)
    generator = JWTGenerator(valid_for=600, audience=conf.get_mandatory_list_value("execution_api", "jwt_audience")[0],
                             issuer=conf.get("api_auth", "jwt_issuer", fallback=None), **args)
    return generator.generate({"sub": ti_id, **({"scope": scope} if scope else {})})


class _Both:
    """One ASGI app serving the stock app and the guarded one (header ``x-test-app``), so both
    run on one event loop: Airflow's async DB engine is bound to the loop that first used it."""

    def __init__(self, stock, guarded) -> None:
        self.stock, self.guarded = stock, guarded

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            from contextlib import AsyncExitStack

            await receive()
            async with AsyncExitStack() as stack:
                for app in (self.stock, self.guarded):
                    await stack.enter_async_context(app.router.lifespan_context(app))
                await send({"type": "lifespan.startup.complete"})
                await receive()
                from airflow import settings

                if settings.async_engine is not None:  # its connections belong to this loop
                    await settings.async_engine.dispose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        headers = dict(scope["headers"])
        app = self.guarded if headers.get(b"x-test-app") == b"guarded" else self.stock
        await app(scope, receive, send)


class _Client:
    def __init__(self, client, which: str) -> None:
        self.client, self.which = client, which

    def request(self, method, url, headers=None, **kw):
        return self.client.request(method, url, headers={**(headers or {}), "x-test-app": self.which}, **kw)

    def get(self, url, **kw):
        return self.request("GET", url, **kw)

    def put(self, url, **kw):
        return self.request("PUT", url, **kw)

    def delete(self, url, **kw):
        return self.request("DELETE", url, **kw)

    def post(self, url, **kw):
        return self.request("POST", url, **kw)


@pytest.fixture(scope="module")
def apps(world) -> Iterator[tuple]:
    """(stock client, guarded client): the api-server's app with the Execution API mounted at
    /execution; the guarded one with the platform plugin's root middlewares, as the api-server
    adds them (``init_plugins``: ``app.add_middleware`` per entry)."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    from plugins.tenant_guard import TenantGuardPlugin

    stock = create_app(apps="execution")
    guarded = create_app(apps="execution")
    for entry in TenantGuardPlugin.fastapi_root_middlewares:
        guarded.add_middleware(entry["middleware"], *entry.get("args", []), **entry.get("kwargs", {}))
    with TestClient(_Both(stock, guarded)) as client:
        yield _Client(client, "stock"), _Client(client, "guarded")


@dataclass
class Avenue:
    name: str
    method: str
    url: str  # relative to /execution; {dag}, {run}, {asset}, {uri}, {var}, {ti} filled per team
    body: dict | None = None
    reset: Callable[[World], None] | None = None  # state the request needs (before each send)
    leaked: Callable[[World, object], bool] | None = None  # the stock answer/effect shows the attack worked
    missing: bool = True  # the guarded answer must equal the route's answer for a missing target
    headers: dict = field(default_factory=dict)


def _fill(url: str, target: Team, **extra) -> str:
    from urllib.parse import quote

    values = dict(dag=target.dag_id, run=target.run_id, asset=quote(target.asset, safe=""),
                  uri=quote(target.uri, safe=""), var=target.variable) | extra
    return url.format(**values)


def _variable(key: str) -> tuple[bool, str | None, str | None]:
    from airflow.models.variable import Variable
    from sqlalchemy import select

    with _session() as session:
        row = session.execute(select(Variable).where(Variable.key == key)).scalar_one_or_none()
        return (row is not None, row.val if row else None, row.team_name if row else None)


def _reset_variable(key: str, value: str, team: str | None) -> None:
    from airflow.models.variable import Variable

    with _session() as session:
        Variable.set(key, value, team_name=team, session=session)


def _store(name: str) -> str | None:
    """The asset state value ``k`` of asset ``name``."""
    from airflow._shared.state import AssetScope
    from airflow.state import get_state_backend

    from platform_runtime.ownership import asset_id_of

    with _session() as session:
        return get_state_backend().get(AssetScope(asset_id=asset_id_of(session, name=name)), "k", session=session)


def _set_store(name: str) -> None:
    from airflow._shared.state import AssetScope
    from airflow.state import get_state_backend

    from platform_runtime.ownership import asset_id_of

    with _session() as session:
        get_state_backend().set(AssetScope(asset_id=asset_id_of(session, name=name)), "k", json.dumps("a's state"),
                                session=session)


def _events_on(name: str) -> int:
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import func, select

    with _session() as session:
        return session.scalar(select(func.count()).select_from(AssetEvent).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                              .where(AssetModel.name == name))


def _running(ti_id: str) -> None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.state import TaskInstanceState

    with _session() as session:
        session.get(TaskInstance, ti_id).state = TaskInstanceState.RUNNING


def _before_success(w: World) -> None:
    _running(w.b.ti_ids["work"])
    w.baseline["events"] = _events_on(w.a.asset)


def _ok(status: int) -> Callable:
    return lambda w, r: r.status_code == status


def _json_ok(check: Callable) -> Callable:
    def leaked(w, r) -> bool:
        try:
            return r.status_code == 200 and bool(check(w, r.json()))
        except (KeyError, TypeError, IndexError):
            return False
    return leaked


def _success_body(w: World) -> dict:
    return {"state": "success", "end_date": datetime.now(UTC).isoformat(),
            "task_outlets": [{"name": w.a.asset, "uri": w.a.uri, "type": "Asset"},
                             {"name": w.b.asset, "uri": w.b.uri, "type": "Asset"}],
            "outlet_events": [{"dest_asset_key": {"name": w.a.asset, "uri": w.a.uri}, "extra": {"by": "b"}}]}


STORE = "/store/asset/by-{field}/{leaf}?{field}={value}"


def _store_avenues() -> list[Avenue]:
    out = []
    for field_, value in (("name", "{asset}"), ("uri", "{uri}")):
        url = STORE.format(field=field_, value=value, leaf="{leaf}")
        out += [
            Avenue(f"PUT store/asset by-{field_}", "PUT", url.replace("{leaf}", "value") + "&key=k",
                   body={"value": "b was here"}, reset=lambda w: _set_store(w.a.asset),
                   leaked=lambda w, r: r.status_code == 204 and _store(w.a.asset) == json.dumps("b was here")),
            Avenue(f"GET store/asset by-{field_}", "GET", url.replace("{leaf}", "value") + "&key=k",
                   reset=lambda w: _set_store(w.a.asset),
                   leaked=_json_ok(lambda w, j: j == {"value": "a's state"})),
            Avenue(f"DELETE store/asset by-{field_} value", "DELETE", url.replace("{leaf}", "value") + "&key=k",
                   reset=lambda w: _set_store(w.a.asset),
                   leaked=lambda w, r: r.status_code == 204 and _store(w.a.asset) is None),
            Avenue(f"DELETE store/asset by-{field_} clear", "DELETE", url.replace("{leaf}", "clear"),
                   reset=lambda w: _set_store(w.a.asset),
                   leaked=lambda w, r: r.status_code == 204 and _store(w.a.asset) is None),
        ]
    return out


LATER = "2026-06-01T00:00:00Z"
AVENUES: list[Avenue] = [
    Avenue("GET dag run (with conf)", "GET", "/dag-runs/{dag}/{run}",
           leaked=_json_ok(lambda w, j: j["conf"] == {"private": f"{w.a.name} conf"})),
    Avenue("GET dag run state", "GET", "/dag-runs/{dag}/{run}/state", leaked=_json_ok(lambda w, j: j["state"])),
    Avenue("GET dag run count", "GET", "/dag-runs/count?dag_id={dag}", leaked=_json_ok(lambda w, j: j == 1)),
    Avenue("GET previous dag run", "GET", f"/dag-runs/previous?dag_id={{dag}}&logical_date={LATER}",
           leaked=_json_ok(lambda w, j: j and j["run_id"] == w.a.run_id)),
    Avenue("GET previous dag run (API 2025-11-05)", "GET", f"/dag-runs/{{dag}}/previous?logical_date={LATER}",
           headers={"Airflow-API-Version": "2025-11-05"},
           leaked=_json_ok(lambda w, j: j and j["run_id"] == w.a.run_id)),
    Avenue("GET dag", "GET", "/dags/{dag}", leaked=_json_ok(lambda w, j: j["bundle_name"] == f"{w.a.name}_bundle")),
    Avenue("GET task instance count", "GET", "/task-instances/count?dag_id={dag}",
           leaked=_json_ok(lambda w, j: j == 2)),
    Avenue("GET task instance states", "GET", "/task-instances/states?dag_id={dag}",
           leaked=_json_ok(lambda w, j: j["task_states"][w.a.run_id]["work"] == "running")),
    Avenue("GET previous task instance", "GET", f"/task-instances/previous/{{dag}}/work?logical_date={LATER}",
           leaked=_json_ok(lambda w, j: j and j["run_id"] == w.a.run_id)),
    Avenue("GET task instance breadcrumbs", "GET", "/task-instances/breadcrumbs?dag_id={dag}&run_id={run}",
           leaked=_json_ok(lambda w, j: [c["task_id"] for c in j["breadcrumbs"]] == ["next"])),
    Avenue("PUT another team's variable", "PUT", "/variables/{var}", body={"value": "b was here"},
           reset=lambda w: _reset_variable(w.a.variable, "a's value", w.a.name), missing=False,
           leaked=lambda w, r: r.status_code == 201 and _variable(w.a.variable)[1] == "b was here"),
    Avenue("PUT a global variable", "PUT", "/variables/{var}", body={"value": "b was here"},
           reset=lambda w: _reset_variable(w.global_variable, "global value", None), missing=False,
           leaked=lambda w, r: r.status_code == 201 and _variable(w.global_variable)[1] == "b was here"),
    Avenue("DELETE a global variable", "DELETE", "/variables/{var}",
           reset=lambda w: _reset_variable(w.global_variable, "global value", None),
           leaked=lambda w, r: r.status_code == 204 and not _variable(w.global_variable)[0]),
    Avenue("GET asset by name", "GET", "/assets/by-name?name={asset}",
           leaked=_json_ok(lambda w, j: j["name"] == w.a.asset)),
    Avenue("GET asset by uri", "GET", "/assets/by-uri?uri={uri}", leaked=_json_ok(lambda w, j: j["uri"] == w.a.uri)),
    Avenue("GET assets by alias", "GET", "/assets/by-alias?alias_name={alias}", missing=False,
           leaked=_json_ok(lambda w, j: w.a.asset in {x["name"] for x in j})),
    Avenue("GET asset events by asset name", "GET", "/asset-events/by-asset?name={asset}&uri=",  # as the SDK sends it
           leaked=_json_ok(lambda w, j: len(j["asset_events"]) >= 1)),
    Avenue("GET asset events by name and uri", "GET", "/asset-events/by-asset?name={asset}&uri={uri}",
           leaked=_json_ok(lambda w, j: len(j["asset_events"]) >= 1)),
    Avenue("GET asset events by alias", "GET", "/asset-events/by-asset-alias?name={alias}", missing=False,
           leaked=_json_ok(lambda w, j: w.a.asset in {e["asset"]["name"] for e in j["asset_events"]})),
    *_store_avenues(),
    Avenue("PATCH success naming another team's asset as outlet", "PATCH", "/task-instances/{ti}/state",
           body=None, reset=lambda w: _before_success(w), missing=False,
           leaked=lambda w, r: r.status_code == 204 and _events_on(w.a.asset) > w.baseline["events"]),
    Avenue("POST trigger another team's DAG", "POST", "/dag-runs/{dag}/{newrun}", body={"logical_date": None},
           missing=False, leaked=_ok(204)),
    Avenue("POST clear another team's run", "POST", "/dag-runs/{dag}/{run}/clear", missing=False,
           leaked=_ok(204)),
]


def send(client, avenue: Avenue, w: World, target: Team, caller: Team, **extra):
    """Send the avenue's request as ``caller``'s running task, naming ``target``'s objects."""
    if avenue.reset:
        avenue.reset(w)
    var = w.global_variable if "global" in avenue.name else target.variable
    url = _fill(avenue.url, target, alias=w.alias, var=var, ti=caller.ti_ids["work"],
                newrun=f"{caller.name}_{secrets.token_hex(3)}", **extra)
    body = _success_body(w) if avenue.body is None and avenue.method == "PATCH" else avenue.body
    headers = {"Authorization": f"Bearer {token(caller.ti_ids['work'])}", **avenue.headers}
    return client.request(avenue.method, "/execution" + url, json=body, headers=headers)


def _missing_target(w: World) -> Team:
    return Team("nobody", f"g{w.tag}_missing_dag", w.a.run_id, f"g{w.tag}_missing_asset", f"g{w.tag}_missing_var")


def _normalised(response, w: World) -> tuple[int, str]:
    """Status and body of an answer about the missing target, its names put back to team a's."""
    m = _missing_target(w)
    text = response.text
    for missing, real in ((m.dag_id, w.a.dag_id), (m.uri, w.a.uri), (m.asset, w.a.asset)):
        text = text.replace(missing, real)
    return response.status_code, text


def test_every_avenue_leaks_on_stock_airflow_and_not_through_the_guard(world, apps, caplog):
    stock, guarded = apps
    leaks_before = leaks_after = 0
    rows = []
    for avenue in AVENUES:
        before = send(stock, avenue, world, world.a, world.b)
        leaked_before = bool(avenue.leaked(world, before))
        leaks_before += leaked_before
        with caplog.at_level(logging.WARNING, logger="platform_runtime.execution_guard"):
            caplog.clear()
            after = send(guarded, avenue, world, world.a, world.b)
        leaked_after = bool(avenue.leaked(world, after))
        leaks_after += leaked_after
        rows.append((avenue.name, before.status_code, leaked_before, after.status_code, leaked_after))
        assert leaked_before, f"{avenue.name}: stock Airflow refused it ({before.status_code} {before.text[:300]})"
        assert not leaked_after, f"{avenue.name}: the guard let it through ({after.status_code} {after.text[:300]})"
        if avenue.missing:
            missing = send(stock, avenue, world, _missing_target(world), world.b)
            assert (after.status_code, after.text) == _normalised(missing, world), avenue.name
        if avenue.method == "PATCH":
            assert after.status_code == 204, after.text  # the task still succeeds
            lines = [r.getMessage() for r in caplog.records if "Stripped asset outlets" in r.getMessage()]
            assert len(lines) == 1 and world.a.asset in lines[0] and world.b.ti_ids["work"] in lines[0], lines
            assert world.b.asset not in lines[0]
    print(f"\nExecution API avenues, a task of team b naming team a's objects ({len(AVENUES)} avenues):")
    for name, s_before, l_before, s_after, l_after in rows:
        print(f"  {name:55} stock {s_before} {'LEAK' if l_before else 'ok  '}  guarded {s_after} "
              f"{'LEAK' if l_after else 'ok'}")
    print(f"successful attacks: stock Airflow {leaks_before}/{len(AVENUES)}, through the guard {leaks_after}/{len(AVENUES)}")
    assert (leaks_before, leaks_after) == (len(AVENUES), 0)


def test_writes_refused_by_the_guard_leave_the_rows_alone(world, apps):
    _, guarded = apps
    by_name = {a.name: a for a in AVENUES}
    _reset_variable(world.a.variable, "a's value", world.a.name)
    r = send(guarded, by_name["PUT another team's variable"], world, world.a, world.b)
    assert r.status_code == 403 and r.json()["detail"]["reason"] == "access_denied"
    assert _variable(world.a.variable) == (True, "a's value", world.a.name)
    r = send(guarded, by_name["DELETE a global variable"], world, world.a, world.b)
    assert r.status_code == 204 and _variable(world.global_variable) == (True, "global value", None)
    events = _events_on(world.a.asset)
    own = _events_on(world.b.asset)
    r = send(guarded, by_name["PATCH success naming another team's asset as outlet"], world, world.a, world.b)
    assert r.status_code == 204 and _events_on(world.a.asset) == events and _events_on(world.b.asset) == own + 1


def test_own_team_requests_pass_the_guard(world, apps):
    """The same avenues naming the caller's own objects are answered by Airflow as usual."""
    _, guarded = apps
    b = world.b
    base = f"Bearer {token(b.ti_ids['work'])}"

    def get(url, **kw):
        r = guarded.get("/execution" + _fill(url, b, alias=world.alias), headers={"Authorization": base, **kw})
        assert r.status_code == 200, (url, r.status_code, r.text)
        return r.json()

    assert get("/dag-runs/{dag}/{run}")["conf"] == {"private": f"{b.name} conf"}
    assert get("/dag-runs/{dag}/{run}/state")["state"] == "running"
    assert get("/dag-runs/count?dag_id={dag}") == 1
    assert get(f"/dag-runs/previous?dag_id={{dag}}&logical_date={LATER}")["run_id"] == b.run_id
    assert get("/dags/{dag}")["dag_id"] == b.dag_id
    assert get("/task-instances/count?dag_id={dag}") == 2
    assert b.run_id in get("/task-instances/states?dag_id={dag}")["task_states"]
    assert get("/assets/by-name?name={asset}")["name"] == b.asset
    assert get("/assets/by-uri?uri={uri}")["uri"] == b.uri
    assert [x["name"] for x in get("/assets/by-alias?alias_name={alias}")] == [b.asset]  # a's filtered out
    assert {e["asset"]["name"] for e in get("/asset-events/by-asset-alias?name={alias}")["asset_events"]} == {
        b.asset, world.shared}  # a's own filtered out, its shared one kept
    assert len(get("/asset-events/by-asset?name={asset}&uri=")["asset_events"]) >= 1
    # an asset of team a shared with b: readable, its state writable
    assert get(f"/assets/by-name?name={world.shared}")["name"] == world.shared
    r = guarded.put(f"/execution/store/asset/by-name/value?name={world.shared}&key=k", json={"value": 1},
                    headers={"Authorization": base})
    assert r.status_code == 204, r.text
    r = guarded.put(f"/execution/store/asset/by-name/value?name={b.asset}&key=k", json={"value": 2},
                    headers={"Authorization": base})
    assert r.status_code == 204, r.text
    assert get("/store/asset/by-name/value?name={asset}&key=k") == {"value": 2}
    # variables: its own, a new key (it gets b's team), a global one read
    r = guarded.put(f"/execution/variables/{b.variable}", json={"value": "new"}, headers={"Authorization": base})
    assert r.status_code == 201 and _variable(b.variable) == (True, "new", b.name)
    fresh = f"g{world.tag}_b_fresh"
    r = guarded.put(f"/execution/variables/{fresh}", json={"value": "v"}, headers={"Authorization": base})
    assert r.status_code == 201 and _variable(fresh) == (True, "v", b.name)
    assert get(f"/variables/{world.global_variable}")["value"] == "global value"
    r = guarded.delete(f"/execution/variables/{fresh}", headers={"Authorization": base})
    assert r.status_code == 204 and not _variable(fresh)[0]


def test_tokens_the_route_refuses_are_left_to_the_route(world, apps):
    """The guard never answers for a token it cannot verify: the route's 401/403 stays."""
    from airflow.api_fastapi.auth.tokens import generate_private_key

    _, guarded = apps
    url = f"/execution/dags/{world.a.dag_id}"
    assert guarded.get(url).status_code == 401
    for forged in (token(world.b.ti_ids["work"], private_key=generate_private_key("Ed25519")),
                   token(world.b.ti_ids["work"], secret_key=secrets.token_urlsafe(64))):  # same alg, wrong key
        r = guarded.get(url, headers={"Authorization": f"Bearer {forged}"})
        assert r.status_code == 403 and r.json()["detail"] == "Invalid auth token", r.text
        r = guarded.post(f"/execution/dag-runs/{world.a.dag_id}/forged", json={"logical_date": None},
                         headers={"Authorization": f"Bearer {forged}"})
        assert r.status_code == 403 and r.json()["detail"] == "Invalid auth token", r.text  # not "cross_team"
    workload = token(world.b.ti_ids["work"], scope="workload")
    r = guarded.get(url, headers={"Authorization": f"Bearer {workload}"})
    assert r.status_code == 403 and "not allowed for this endpoint" in r.json()["detail"], r.text


def test_airflow_itself_scopes_variable_reads_by_team(world, apps):
    """Rows the table marks "team-checked by Airflow": reading another team's variable is a 404
    on stock Airflow already (the lookup is made with the task's team)."""
    stock, _ = apps
    headers = {"Authorization": f"Bearer {token(world.b.ti_ids['work'])}"}
    assert stock.get(f"/execution/variables/{world.a.variable}", headers=headers).status_code == 404
    keys = stock.get("/execution/variables/keys", headers=headers).json()["keys"]
    assert world.b.variable in keys and world.a.variable not in keys


# -- the route table -----------------------------------------------------------------------
def test_every_execution_api_route_is_in_the_table_and_only_those():
    from platform_runtime.execution_guard import EXECUTION_API_ROUTES, route_table_differences

    unlisted, gone = route_table_differences()
    assert not unlisted, f"routes of the installed Airflow without a decision in EXECUTION_API_ROUTES: {unlisted}"
    assert not gone, f"EXECUTION_API_ROUTES lists routes the installed Airflow does not have: {gone}"
    assert len(EXECUTION_API_ROUTES) >= 50


def test_a_planted_route_is_reported():
    from airflow.api_fastapi.execution_api.routes import execution_api_router
    from fastapi import APIRouter

    from platform_runtime.execution_guard import route_table_differences

    router = APIRouter()
    router.include_router(execution_api_router)

    @router.get("/dag-runs/{dag_id}/secrets")
    def planted(dag_id: str) -> dict:
        return {}

    assert route_table_differences(router) == ({("GET", "/dag-runs/{dag_id}/secrets")}, set())


def test_the_readme_shows_the_route_table():
    from platform_runtime.execution_guard import route_table_markdown

    readme = (ROOT / "README.md").read_text()
    heading = "### Execution API routes and who checks them"
    assert heading in readme
    section = readme.split(heading, 1)[1].split("\n#", 1)[0]
    table = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    assert table == route_table_markdown(), "README's table differs from EXECUTION_API_ROUTES: regenerate it with " \
        "python -c 'from platform_runtime.execution_guard import route_table_markdown; print(route_table_markdown())'"


# -- platform_runtime.ownership ----------------------------------------------------------
def test_the_first_team_to_reference_an_asset_owns_it(world):
    from platform_runtime.ownership import asset_id_of, asset_owners, asset_teams, dag_team, may_use_asset, ti_team

    with _session() as session:
        a_asset = asset_id_of(session, name=world.a.asset)
        b_asset = asset_id_of(session, uri=world.b.uri)
        assert asset_owners(session, [a_asset, b_asset]) == {a_asset: world.a.name, b_asset: world.b.name}
        # b's DAG names a's asset too (an inlet, referenced later): that gives b nothing
        assert asset_teams(session, a_asset) == {world.a.name}
        assert not may_use_asset(session, world.b.name, a_asset)
        assert may_use_asset(session, world.a.name, a_asset)
        assert not may_use_asset(session, world.a.name, None)  # a missing asset is nobody's
        assert may_use_asset(session, None, a_asset)  # a caller of no team is not limited here
        assert dag_team(session, world.a.dag_id) == world.a.name and dag_team(session, "no such dag") is None
        assert ti_team(session, world.b.ti_ids["work"]) == world.b.name


def test_shared_assets_setting(world, monkeypatch):
    from platform_runtime.ownership import asset_id_of, asset_teams, shared_assets, team_asset_ids

    with _session() as session:
        shared = asset_id_of(session, name=world.shared)
        assert asset_teams(session, shared) == {world.a.name, world.b.name}
        assert shared in team_asset_ids(session, world.b.name)
        assert asset_id_of(session, name=world.a.asset) not in team_asset_ids(session, world.b.name)
        monkeypatch.setenv("AIRFLOW__PLATFORM__SHARED_ASSETS", json.dumps({f"s3://{world.shared}/data": [world.b.name]}))
        assert asset_teams(session, shared) == {world.a.name, world.b.name}  # by URI as well
        monkeypatch.delenv("AIRFLOW__PLATFORM__SHARED_ASSETS")
        assert shared_assets() == {} and asset_teams(session, shared) == {world.a.name}
        monkeypatch.setenv("AIRFLOW__PLATFORM__SHARED_ASSETS", json.dumps({"x": "team"}))
        with pytest.raises(ValueError, match="shared_assets"):
            shared_assets()


def test_variable_team(world):
    from platform_runtime.ownership import variable_team

    with _session() as session:
        assert variable_team(session, world.global_variable) == (True, None)
        assert variable_team(session, world.b.variable)[0] is True
        assert variable_team(session, "no such key") == (False, None)



# -- the live probe's Task SDK attempts (tests/tenant_probe.py), run in a real task --------
PROBE_DAG = '''
from datetime import datetime

from airflow.sdk import DAG, Asset, task

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1)):
    @task(outlets=[Asset(name="{own_asset}", uri="{own_uri}")])
    def probe():
        from tests import tenant_probe

        return {{
            "variable": tenant_probe._try_sdk_variable_write("{variable}"),
            "runs": tenant_probe._try_sdk_dag_runs(["{dag}"]),
            "asset": tenant_probe._try_sdk_asset("{asset}"),
            "outlet": tenant_probe._add_foreign_outlet("{asset}", "{uri}"),
        }}

    probe()
'''


def _fresh_async_pool() -> None:
    """Each in-process Execution API runs its own event loop; Airflow's async engine's pooled
    connections belong to the loop that opened them: start each phase with a new pool."""
    from airflow import settings

    if settings.async_engine is not None:
        settings.async_engine.sync_engine.dispose(close=False)


class _AsRunningTask:
    """Test-only: the in-process Execution API (``dag.test()``) sends no token; this adds the
    running probe task's own token, minted as the executors mint it, so the guard in front of
    the app sees what it sees on the api-server."""

    def __init__(self, app, dag_id: str | None) -> None:
        self.app, self.dag_id = app, dag_id  # None: only take the token off

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and self.dag_id is None:
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"authorization"]}
        elif scope["type"] == "http":
            from airflow.models.taskinstance import TaskInstance
            from airflow.utils.state import TaskInstanceState
            from sqlalchemy import select

            with _session() as session:
                ti_id = session.scalar(select(TaskInstance.id).where(TaskInstance.dag_id == self.dag_id,
                                                                      TaskInstance.state == TaskInstanceState.RUNNING))
            headers = [(k, v) for k, v in scope["headers"] if k != b"authorization"]
            if ti_id is not None:
                headers.append((b"authorization", f"Bearer {token(str(ti_id))}".encode()))
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


def _run_probe(world: World, monkeypatch, guarded: bool) -> dict:
    from airflow.api_fastapi.execution_api.app import InProcessExecutionAPI
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.sdk.execution_time import supervisor

    from platform_runtime.execution_guard import ExecutionGuardMiddleware

    b, a = world.b, world.a
    dag_id = f"g{world.tag}_b_probe_{'guarded' if guarded else 'stock'}"
    folder = world.folders[b.name]
    (folder / f"{dag_id}.py").write_text(PROBE_DAG.format(
        dag_id=dag_id, own_asset=b.asset, own_uri=b.uri, variable=a.variable, dag=a.dag_id, asset=a.asset, uri=a.uri))
    bag = BundleDagBag(dag_folder=folder / f"{dag_id}.py", bundle_path=folder, bundle_name=f"{b.name}_bundle")
    assert bag.import_errors == {}, bag.import_errors
    api = InProcessExecutionAPI()
    if guarded:  # the api-server's middleware, in front of the in-process Execution API (not mounted)
        api.app.add_middleware(_AsRunningTask, dag_id=None)  # innermost: the token off again (the in-process
        api.app.add_middleware(ExecutionGuardMiddleware, prefix="")  # app has no validator to refresh it with)
        api.app.add_middleware(_AsRunningTask, dag_id=dag_id)
    monkeypatch.setattr(supervisor, "in_process_api_server", lambda: api)
    _fresh_async_pool()
    try:
        run = bag.dags[dag_id].test()
        from airflow.models.xcom import XComModel
        from sqlalchemy import select

        with _session() as session:
            [ti] = run.get_task_instances(session=session)
            assert ti.state == "success", ti.state
            row = session.scalars(select(XComModel).where(XComModel.dag_id == dag_id, XComModel.run_id == run.run_id,
                                                          XComModel.task_id == "probe",
                                                          XComModel.key == "return_value")).one()
            return XComModel.deserialize_value(row)
    finally:
        _fresh_async_pool()


def test_the_probes_sdk_attempts_work_on_stock_airflow_and_fail_through_the_guard(world, monkeypatch):
    """The live matrix's new rows (tests/tenant_probe.py) run in a real task of team b through
    the Task SDK and its supervisor, against team a: on the stock Execution API each reaches a's
    objects (so the probe can tell a leak), through the guard none does."""
    from platform_runtime.ownership import asset_id_of

    _reset_variable(world.a.variable, "a's value", world.a.name)
    events_a, events_b = _events_on(world.a.asset), _events_on(world.b.asset)
    stock = _run_probe(world, monkeypatch, guarded=False)
    assert {k: v["succeeded"] for k, v in stock.items()} == {"variable": True, "runs": True, "asset": True,
                                                             "outlet": False}, stock
    assert _variable(world.a.variable)[1:] == ("probe@attacker.invalid", world.a.name)
    assert _events_on(world.a.asset) == events_a + 1 and _events_on(world.b.asset) == events_b + 1
    assert "state written" in stock["asset"]["detail"] and "asset found" in stock["asset"]["detail"]

    _reset_variable(world.a.variable, "a's value", world.a.name)
    with _session() as session:
        assert asset_id_of(session, name=world.a.asset) is not None
    guarded = _run_probe(world, monkeypatch, guarded=True)
    assert {k: v["succeeded"] for k, v in guarded.items()} == dict.fromkeys(guarded, False), guarded
    assert _variable(world.a.variable)[1:] == ("a's value", world.a.name)
    assert _events_on(world.a.asset) == events_a + 1 and _events_on(world.b.asset) == events_b + 2
    print(f"\nprobe rows, stock: {stock}\nprobe rows, guarded: {guarded}")
