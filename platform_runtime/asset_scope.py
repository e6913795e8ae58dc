"""Assets are team-scoped on the api-server's REST API and UI (issue 22).

Airflow 3.3.2's simple auth manager decides asset access by role only: any ``op`` lists every
team's assets, creates events on them (which schedules other teams' asset-scheduled DAGs) and
writes their state store. Here a user of one or more teams reads and writes only the assets
its teams may use (``platform_runtime.ownership``: the team whose DAG referenced the asset
first, plus ``[platform] shared_assets``; several teams: the union); a non-admin user of no
team gets none; an admin (and a platform without multi-team mode) is not limited.

Mechanism (two layers, both public extension points of Airflow's auth manager API):

1. ``platform_runtime.auth.TeamScopedAuthManager``, a ``SimpleAuthManager`` subclass set as
   ``[core] auth_manager``: ``is_authorized_asset`` / ``is_authorized_asset_alias`` refuse an
   asset (alias) id the user's teams may not use. Airflow passes the id only when it is in the
   URL path (``requires_access_asset`` reads ``request.path_params``), so this layer alone
   covers the by-id routes (answering 403) and nothing else.
2. ``AssetScopeMiddleware`` (this module), which that auth manager registers through its own
   ``get_fastapi_middlewares`` (so the one setting brings both layers, and the middleware
   never runs with an auth manager that does not answer ``asset_scope``). It handles every
   route in ``ROUTES``, before the route runs:

   - ``BY_ID``: the asset (alias) id in the path, ``BODY_ID``: the ``asset_id`` of the JSON
     body (``POST /api/v2/assets/events``). Another team's asset gets the answer a missing
     asset gets (404; ``GET /api/v2/assets/{id}/queuedEvents`` answers a missing asset with an
     empty list), so a team cannot even tell that it exists.
   - ``LIST``: the JSON list of the response is filtered to the user's assets and
     ``total_entries`` recomputed. A paginated list (``limit``/``offset``) is read through
     in pages of ``[api] maximum_page_limit`` with the caller's other query parameters (the
     caller's token, filters and order), then filtered and cut to the caller's page, so
     pages and totals are exact. Costs one inner call per ``maximum_page_limit`` rows.
   - ``GRAPH``: ``/ui/dependencies`` loses the asset nodes (``asset:<id>``) the user may not
     use and their edges; ``node_id=asset:<id>`` of another team's asset is a 404.
   - ``scrub``: an answer that names DAGs (an asset's schedule/inlet/outlet references, the
     runs an event created) keeps only DAGs the user may read (the auth manager's own
     ``get_authorized_dag_ids``): another team's DAG that names an own asset stays unnamed.
   - ``DAG_SCOPED``: nothing to do: Airflow already limits the route to DAGs of the user's
     teams and it returns only what that DAG's own file declares (its asset expression).
   - ``NOT_ASSETS``: matched by the route census below but not about assets.

   A request on a handled route with no valid token is answered 401, as the route would.

``ROUTES`` is the census of every core-API route (``/api/v2`` and ``/ui``) that returns or
changes assets, aliases, asset events, queued asset events, asset state or the asset graph,
each with its decision; ``tests/test_asset_scope.py`` fails when the installed Airflow has such
a route that is not listed (or a listed one is gone). Not covered here: the Execution API
(``/execution/...``, task-facing asset and asset-event reads by name/URI).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qsl, urlencode

from platform_runtime.asgi import read_body, replaying, send_json


class Decision(StrEnum):
    BY_ID = "by_id"
    BODY_ID = "body_id"
    LIST = "list"
    GRAPH = "graph"
    DAG_SCOPED = "dag_scoped"
    NOT_ASSETS = "not_assets"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    decision: Decision
    why: str
    kind: str = "asset"  # "asset" or "alias": which ids the route carries
    id_field: str = "asset_id"  # BY_ID: the path parameter; BODY_ID/LIST: the field holding the id
    items: str | None = None  # LIST: the JSON key of the list
    paged: bool = False  # LIST: takes limit/offset
    scrub: bool = False  # the answer names DAGs (asset references, runs an event created): readable ones only
    missing_is_empty: bool = False  # BY_ID: a missing asset answers 200 with an empty list

    @property
    def pattern(self) -> re.Pattern:
        regex = re.sub(r"\{(\w+):path\}", r"(?P<\1>.*)", self.path)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        return re.compile(f"^{regex}$")


_A = "/api/v2/assets"
_D = "/api/v2/dags/{dag_id}"
ROUTES: tuple[Route, ...] = (
    # -- public API: lists
    Route("GET", _A, Decision.LIST, "every asset", items="assets", id_field="id", paged=True, scrub=True),
    Route("GET", f"{_A}/aliases", Decision.LIST, "every alias", kind="alias", items="asset_aliases",
          id_field="id", paged=True),
    Route("GET", f"{_A}/events", Decision.LIST, "events of every asset (Airflow limits only events a DAG "
          "produced to readable DAGs; API-made ones stay visible)", items="asset_events", paged=True, scrub=True),
    Route("GET", f"{_D}/dagRuns/{{dag_run_id}}/upstreamAssetEvents", Decision.LIST,
          "the events that triggered an own run may be another team's asset's", items="asset_events", scrub=True),
    Route("GET", f"{_D}/assets/queuedEvents", Decision.LIST, "dag-scoped (own DAG's queue) but lists the ids "
          "of every asset the DAG waits on, another team's too", items="queued_events"),
    Route("GET", "/ui/next_run_assets/{dag_id}", Decision.LIST, "an own DAG's schedule: names, URIs and "
          "last event times of the assets it waits on, another team's too", items="events", id_field="id"),
    Route("GET", "/ui/pending_partitioned_dag_run/{dag_id}", Decision.LIST, "as next_run_assets, for "
          "partitioned DAGs", items="assets"),
    # -- public API: one asset (alias) by id
    Route("GET", f"{_A}/{{asset_id}}", Decision.BY_ID, "read", scrub=True),
    Route("GET", f"{_A}/aliases/{{asset_alias_id}}", Decision.BY_ID, "read", kind="alias",
          id_field="asset_alias_id"),
    Route("POST", f"{_A}/{{asset_id}}/materialize", Decision.BY_ID, "triggers the producing DAG (Airflow "
          "refuses another team's producer with 403, which tells the asset exists)"),
    Route("GET", f"{_A}/{{asset_id}}/queuedEvents", Decision.BY_ID, "read", missing_is_empty=True),
    Route("DELETE", f"{_A}/{{asset_id}}/queuedEvents", Decision.BY_ID, "write"),
    Route("GET", f"{_D}/assets/{{asset_id}}/queuedEvents", Decision.BY_ID, "read"),
    Route("DELETE", f"{_D}/assets/{{asset_id}}/queuedEvents", Decision.BY_ID, "write"),
    Route("GET", f"{_A}/{{asset_id}}/state-store", Decision.BY_ID, "read state"),
    Route("DELETE", f"{_A}/{{asset_id}}/state-store", Decision.BY_ID, "clear state"),
    Route("GET", f"{_A}/{{asset_id}}/state-store/{{key:path}}", Decision.BY_ID, "read state"),
    Route("PUT", f"{_A}/{{asset_id}}/state-store/{{key:path}}", Decision.BY_ID, "write state"),
    Route("DELETE", f"{_A}/{{asset_id}}/state-store/{{key:path}}", Decision.BY_ID, "delete state"),
    # -- public API: id in the body
    Route("POST", f"{_A}/events", Decision.BODY_ID, "creates an event: schedules the asset's consumers"),
    # -- UI: the dependency graph
    Route("GET", "/ui/dependencies", Decision.GRAPH, "asset nodes of readable DAGs' references, another "
          "team's assets too; node_id=asset:<id> opens an asset's data graph"),
    # -- dag-scoped already: only DAGs of the user's teams, only their own declarations
    Route("DELETE", f"{_D}/assets/queuedEvents", Decision.DAG_SCOPED, "empties an own DAG's queue"),
    Route("GET", f"{_D}/details", Decision.DAG_SCOPED, "asset_expression: the DAG file's own schedule"),
    Route("GET", "/ui/dags", Decision.DAG_SCOPED, "asset_expression of readable DAGs"),
    Route("GET", "/ui/partitioned_dag_runs", Decision.DAG_SCOPED, "asset_expressions of readable DAGs"),
    Route("GET", "/ui/structure/structure_data", Decision.DAG_SCOPED, "a readable DAG's graph with the "
          "assets its own file names"),
    # -- named like assets/dependencies, but not about assets
    Route("GET", f"{_D}/dagRuns/{{dag_run_id}}/taskInstances/{{task_id}}/dependencies", Decision.NOT_ASSETS,
          "task dependencies"),
    Route("GET", f"{_D}/dagRuns/{{dag_run_id}}/taskInstances/{{task_id}}/{{map_index}}/dependencies",
          Decision.NOT_ASSETS, "task dependencies"),
)
_ACTIVE = tuple(r for r in ROUTES if r.decision not in (Decision.DAG_SCOPED, Decision.NOT_ASSETS))


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The handled route of a request (literal paths before templated ones, as Airflow
    registers them: ``/assets/events`` is not ``/assets/{asset_id}``)."""
    hits = [(r, m.groupdict()) for r in _ACTIVE if r.method == method and (m := r.pattern.match(path))]
    hits.sort(key=lambda h: len(h[1]))
    return hits[0] if hits else None


def parse_id(value) -> int | None:
    """An id as the route parses it (pydantic, lax); None when the route would refuse it (422)."""
    from pydantic import TypeAdapter, ValidationError

    try:
        return TypeAdapter(int).validate_python(value)
    except ValidationError:
        return None


# -- which ids a set of teams may use --------------------------------------------------
def team_alias_ids(session, teams: set[str], asset_ids: set[int]) -> set[int]:
    """Aliases of those teams: one that resolves to an asset they may use, or that a DAG of
    theirs is scheduled on (the alias name is in their own DAG file)."""
    from airflow.models.asset import DagScheduleAssetAliasReference, alias_association_table
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.team import Team
    from sqlalchemy import select

    ids = set(session.scalars(select(alias_association_table.c.alias_id).where(
        alias_association_table.c.asset_id.in_(asset_ids)))) if asset_ids else set()
    if teams:
        ids |= set(session.scalars(
            select(DagScheduleAssetAliasReference.alias_id)
            .join(DagModel, DagModel.dag_id == DagScheduleAssetAliasReference.dag_id)
            .join(DagBundleModel, DagBundleModel.name == DagModel.bundle_name)
            .join(DagBundleModel.teams).where(Team.name.in_(teams))))
    return ids


def usable_ids(teams: frozenset[str], kind: str) -> set[int]:
    """Every asset (alias) id the teams may use (the union over the teams)."""
    from airflow.utils.session import create_session

    from platform_runtime.ownership import team_asset_ids

    with create_session() as session:
        assets: set[int] = set()
        for team in teams:
            assets |= team_asset_ids(session, team)
        return assets if kind == "asset" else team_alias_ids(session, set(teams), assets)


def may_use(teams: frozenset[str], kind: str, item_id: int) -> bool:
    """Whether the teams may use that asset (alias): ``asset_teams`` of the asset meets them."""
    if kind != "asset":
        return item_id in usable_ids(teams, kind)
    from airflow.utils.session import create_session

    from platform_runtime.ownership import asset_teams

    with create_session() as session:
        return bool(asset_teams(session, item_id) & teams)


def filter_graph(graph: dict, allowed: set[int]) -> dict:
    """The dependency graph without asset nodes (``asset:<id>``) outside ``allowed``."""
    def foreign(node_id: str) -> bool:
        kind, _, rest = node_id.partition(":")
        return kind == "asset" and (parse_id(rest) not in allowed)

    gone = {n["id"] for n in graph.get("nodes", []) if foreign(n["id"])}
    return {**graph, "nodes": [n for n in graph.get("nodes", []) if n["id"] not in gone],
            "edges": [e for e in graph.get("edges", []) if e["source_id"] not in gone and e["target_id"] not in gone]}


_DAG_LISTS = ("scheduled_dags", "producing_tasks", "consuming_tasks", "created_dagruns")


def scrub(item: dict, readable: set[str] | None) -> dict:
    """An asset or asset event without the DAGs the caller may not read: another team's DAG
    that references an own asset (later), a run of another team's DAG an event created."""
    if readable is None:
        return item
    return {k: [r for r in v if r.get("dag_id") in readable] if k in _DAG_LISTS and isinstance(v, list) else v
            for k, v in item.items()}


@dataclass(frozen=True)
class Caller:
    user: object
    teams: frozenset[str]
    manager: object

    def readable_dags(self) -> set[str]:
        """The DAGs the caller may read, as Airflow's own DAG checks decide."""
        return self.manager.get_authorized_dag_ids(user=self.user)


# -- the middleware ---------------------------------------------------------------------
class _Response:
    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""

    async def send(self, message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")

    def json(self):
        headers = dict(self.headers)
        if self.status != 200 or b"json" not in headers.get(b"content-type", b"") or headers.get(b"content-encoding"):
            return None
        return json.loads(self.body)


async def _respond(send, status: int, body, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send_json(send, status, json.dumps(body).encode(), headers)


def _not_found(route: Route, item_id) -> tuple[int, dict]:
    if route.missing_is_empty:
        return 200, {"queued_events": [], "total_entries": 0}
    what = "Asset Alias" if route.kind == "alias" else "Asset"
    return 404, {"detail": f"The {what} with ID: `{item_id}` was not found"}


class AssetScopeMiddleware:
    """ASGI middleware on the api-server: assets of other teams are missing (see the module)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        hit = match(scope["method"], path)
        if hit is None:
            return await self.app(scope, receive, send)
        route, params = hit
        caller = await self._caller(scope)
        if caller is False:
            return await _respond(send, 401, {"detail": "Not authenticated"})
        if caller is None:  # not limited
            return await self.app(scope, receive, send)
        await getattr(self, f"_{route.decision.value}")(route, params, caller, scope, receive, send)

    @staticmethod
    async def _caller(scope):
        """The caller (its teams, whose assets it may use); None: unlimited; False: no valid token.
        The token is found as ``airflow.api_fastapi.core_api.security.get_user`` finds it:
        ``Authorization: Bearer`` first, else the UI's cookie."""
        from airflow.api_fastapi.app import get_auth_manager
        from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
        from starlette.concurrency import run_in_threadpool
        from starlette.requests import HTTPConnection

        conn = HTTPConnection(scope)
        scheme, _, credentials = conn.headers.get("authorization", "").partition(" ")
        token = credentials.strip() if scheme.lower() == "bearer" else conn.cookies.get(COOKIE_NAME_JWT_TOKEN)
        if not token:
            return False
        manager = get_auth_manager()
        try:
            user = await manager.get_user_from_token(token)
        except Exception:  # invalid, expired, revoked: the route answers 401 as well
            return False
        teams = await run_in_threadpool(manager.asset_scope, user)
        return None if teams is None else Caller(user, teams, manager)

    async def _by_id(self, route, params, caller, scope, receive, send) -> None:
        from starlette.concurrency import run_in_threadpool

        item_id = parse_id(params[route.id_field])
        if item_id is not None and not await run_in_threadpool(may_use, caller.teams, route.kind, item_id):
            return await _respond(send, *_not_found(route, item_id))
        if not route.scrub:
            return await self.app(scope, receive, send)
        response = await self._inner(scope)
        data = response.json()
        if not isinstance(data, dict):
            return await _respond_raw(send, response)
        readable = await run_in_threadpool(caller.readable_dags)
        await _respond(send, response.status, scrub(data, readable), response.headers)

    async def _body_id(self, route, params, caller, scope, receive, send) -> None:
        body = await read_body(receive)
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        item_id = parse_id(data.get(route.id_field)) if isinstance(data, dict) else None
        if item_id is not None:
            from starlette.concurrency import run_in_threadpool

            if not await run_in_threadpool(may_use, caller.teams, route.kind, item_id):
                return await _respond(send, *_not_found(route, item_id))
        await self.app(scope, replaying(body, receive), send)

    async def _inner(self, scope, query: str | None = None) -> _Response:
        """Run the request on the wrapped app (GET, no body) and keep its answer."""
        import anyio

        inner_scope = dict(scope)
        if query is not None:
            inner_scope["query_string"] = query.encode()
        sent = False

        async def receive():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await anyio.sleep_forever()  # no disconnect: the answer is read to its end

        response = _Response()
        await self.app(inner_scope, receive, response.send)
        return response

    async def _list(self, route, params, caller, scope, receive, send) -> None:
        from starlette.concurrency import run_in_threadpool

        allowed = await run_in_threadpool(usable_ids, caller.teams, route.kind)
        readable = await run_in_threadpool(caller.readable_dags) if route.scrub else None
        if not route.paged:
            response = await self._inner(scope)
            data = response.json()
            if not isinstance(data, dict) or not isinstance(data.get(route.items), list):
                return await _respond_raw(send, response)
            kept = [i for i in data[route.items] if i.get(route.id_field) in allowed]
            if isinstance(data.get("total_entries"), int):
                data["total_entries"] -= len(data[route.items]) - len(kept)
            data[route.items] = [scrub(i, readable) for i in kept]
            return await _respond(send, response.status, data, response.headers)
        await self._paged(route, allowed, readable, scope, send)

    async def _paged(self, route, allowed: set[int], readable: set[str] | None, scope, send) -> None:
        from airflow.configuration import conf

        query = parse_qsl(scope.get("query_string", b"").decode(), keep_blank_values=True)
        asked = dict(query)
        limit = parse_id(asked.get("limit", conf.getint("api", "fallback_page_limit")))
        offset = parse_id(asked.get("offset", 0))
        if limit is None or offset is None or limit < 0 or offset < 0:
            return await _respond_raw(send, await self._inner(scope))  # the route's 422
        limit = min(limit, conf.getint("api", "maximum_page_limit"))
        page = conf.getint("api", "maximum_page_limit")
        rest = [(k, v) for k, v in query if k not in ("limit", "offset")]
        items: list = []
        kept: list = []
        while True:
            response = await self._inner(scope, urlencode([*rest, ("limit", page), ("offset", len(items))]))
            data = response.json()
            if not isinstance(data, dict) or not isinstance(data.get(route.items), list):
                return await _respond_raw(send, response)
            items += data[route.items]
            kept += [i for i in data[route.items] if i.get(route.id_field) in allowed]
            if not data[route.items] or len(items) >= data.get("total_entries", 0):
                break
        data[route.items] = [scrub(i, readable) for i in kept[offset:offset + limit]]
        data["total_entries"] = len(kept)
        await _respond(send, 200, data, response.headers)

    async def _graph(self, route, params, caller, scope, receive, send) -> None:
        from starlette.concurrency import run_in_threadpool
        from starlette.requests import HTTPConnection

        allowed = await run_in_threadpool(usable_ids, caller.teams, "asset")
        node = HTTPConnection(scope).query_params.get("node_id") or ""
        if node.startswith("asset:"):
            try:  # as the route reads it
                asset_id = int(node.replace("asset:", ""))
            except ValueError:
                asset_id = None
            if asset_id is not None and asset_id not in allowed:
                return await _respond(send, 404, {"detail": f"Asset with id {asset_id} was not found"})
        response = await self._inner(scope)
        data = response.json()
        if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
            return await _respond_raw(send, response)
        await _respond(send, response.status, filter_graph(data, allowed), response.headers)


async def _respond_raw(send, response: _Response) -> None:
    await send({"type": "http.response.start", "status": response.status, "headers": response.headers})
    await send({"type": "http.response.body", "body": response.body})
