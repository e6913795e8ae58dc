"""The Execution API's missing team checks, added by an api-server middleware.

Airflow 3.3.2's Execution API (``/execution``, what tasks call with their own token) scopes
connections, variable reads, XComs and a task's own records by the calling task's team, but
not the routes that name a DAG, a run, an asset or an asset's state, nor variable writes: a
task of one team could read another team's run states and confs, overwrite its variables,
read and write its assets' state and events. ``EXECUTION_API_ROUTES`` lists every route of
the installed Airflow with who checks it; ``ExecutionGuardMiddleware`` adds the check where
the answer is "platform_runtime".

The caller is the task instance the token names (``sub``); its team is that of its DAG's
bundle (``platform_runtime.ownership``). The guard reads the token only after verifying it as
the route does (Airflow's ``JWTValidator`` with the Execution API's audience and keys), and
only tokens of the ``execution`` scope: a missing, invalid, expired or workload token is
passed through untouched, so the route answers it (401/403) and an unverified claim can
never decide anything. A caller of no team (not a task instance, or a task of a bundle
without a team) and a platform without ``[core] multi_team`` are not limited here.

When the caller's team does not own the target, the guard answers what the route answers
for a missing object (same status and body), so a task cannot tell another team's DAG,
run or asset from one that does not exist:

- a DAG (and its runs and task instances): the DAG's bundle's team must be the caller's;
- an asset (by name, URI, or name and URI) and its state: the caller's team must own it or
  have it shared (``ownership.may_use_asset``); asset-alias answers are filtered to such
  assets;
- a variable: reads are Airflow's (its own team's or a global one); a write to an existing
  key of another team or a global key is refused with 403, since the "missing" answer of
  ``PUT`` is to create the key, which keys unique across teams make impossible (and the
  upsert would overwrite the other team's row); ``DELETE`` of such a key answers 204 and
  deletes nothing, which is what the route answers for a missing key. A new key may be
  created: it gets the caller's team.
- Asset outlets of a successful task (``PATCH /task-instances/{id}/state``, ``task_outlets``
  and ``outlet_events`` of the success body) that name an existing asset the team may not
  use are *stripped* from the body, and one warning line names the task and the assets. The
  task still succeeds and its own outlets still get their events. Stripped rather than
  refused: the success call comes after the task's work is done; refusing it would leave the
  task instance running until its heartbeat times out and then retry work that was already
  done, for every task of a DAG author who named another team's asset by mistake, while the
  only thing to prevent is the event on the other team's asset. Assets that do not exist
  yet (an alias may create one) are left to Airflow.

Trigger/clear (``POST /dag-runs/{dag_id}/{run_id}[/clear]``) are refused (403) by
``platform_runtime.tenant_guard.TenantGuardMiddleware``.
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from starlette.routing import compile_path

from platform_runtime.asgi import read_body, replaying, send_json

log = logging.getLogger(__name__)

AIRFLOW = "team-checked by Airflow"
PLATFORM = "guarded by platform_runtime"
HARMLESS = "harmless"

_TI_SELF = ("`ti:self`: the token's subject must be the path's task instance (`require_auth`, "
            "execution_api/security.py), so a task reaches only its own record")
_CT_SELF = ("`ct:self`: the token's subject must be the path's connection test (`require_auth`); such "
            "tokens are minted only for that test's run")
_XCOM = ("`has_xcom_access`: the DAG's team must be the task's (reads may also reach teamless DAGs); "
         "403 otherwise")
_DAG = "the DAG's team must be the caller's; else the route's answer for a missing DAG/run"
_ASSET = "the caller's team must own the asset or have it shared; else the route's answer for a missing asset"
_STORE = "asset state: " + _ASSET

#: Every route of ``airflow.api_fastapi.execution_api.routes.execution_api_router`` (paths
#: relative to ``/execution``): (decision, reason). tests/test_execution_guard.py fails when
#: the installed Airflow has a route not listed here or lacks one listed.
EXECUTION_API_ROUTES: dict[tuple[str, str], tuple[str, str]] = {
    ("GET", "/health"): (HARMLESS, "no token, no data: the API's liveness"),
    ("GET", "/health/ping"): (HARMLESS, "no token, no data: the API's liveness"),
    ("GET", "/assets/by-name"): (PLATFORM, _ASSET),
    ("GET", "/assets/by-uri"): (PLATFORM, _ASSET),
    ("GET", "/assets/by-alias"): (PLATFORM, "the answer is filtered to the assets the caller's team may use"),
    ("GET", "/asset-events/by-asset"): (PLATFORM, _ASSET + " (no events)"),
    ("GET", "/asset-events/by-asset-alias"): (PLATFORM, "the answer is filtered to events of assets the caller's "
                                                        "team may use"),
    ("GET", "/connection-tests/{connection_test_id}/connection"): (AIRFLOW, _CT_SELF),
    ("PATCH", "/connection-tests/{connection_test_id}"): (AIRFLOW, _CT_SELF),
    ("GET", "/connections/{connection_id}"): (AIRFLOW, "looked up with the task's team "
                                              "(`get_connection_from_secrets(team_name=...)`): its own team's or a "
                                              "global connection, else 404; `has_connection_access` itself allows all"),
    ("GET", "/dag-runs/{dag_id}/previous"): (PLATFORM, _DAG + " (older API versions only)"),
    ("GET", "/dag-runs/{dag_id}/{run_id}"): (PLATFORM, _DAG),
    ("POST", "/dag-runs/{dag_id}/{run_id}"): (PLATFORM, "trigger: refused (403) unless the target DAG is in the "
                                              "caller's bundle (`tenant_guard.TenantGuardMiddleware`)"),
    ("POST", "/dag-runs/{dag_id}/{run_id}/clear"): (PLATFORM, "clear: refused (403) unless the target DAG is in the "
                                                    "caller's bundle (`tenant_guard.TenantGuardMiddleware`)"),
    ("GET", "/dag-runs/{dag_id}/{run_id}/state"): (PLATFORM, _DAG),
    ("GET", "/dag-runs/count"): (PLATFORM, _DAG + " (0)"),
    ("GET", "/dag-runs/previous"): (PLATFORM, _DAG + " (null)"),
    ("GET", "/dags/{dag_id}"): (PLATFORM, _DAG),
    ("GET", "/task-instances/count"): (PLATFORM, _DAG + " (0)"),
    ("GET", "/task-instances/previous/{dag_id}/{task_id}"): (PLATFORM, _DAG + " (null)"),
    ("GET", "/task-instances/states"): (PLATFORM, _DAG + " (no states)"),
    ("GET", "/task-instances/breadcrumbs"): (PLATFORM, _DAG + " (no breadcrumbs)"),
    ("PATCH", "/task-instances/{task_instance_id}/run"): (AIRFLOW, _TI_SELF),
    ("PATCH", "/task-instances/{task_instance_id}/state"): (PLATFORM, _TI_SELF + "; a success's asset outlets the "
                                                            "team may not use are stripped (one warning line)"),
    ("PATCH", "/task-instances/{task_instance_id}/skip-downstream"): (AIRFLOW, _TI_SELF + "; skips tasks of that "
                                                                      "task's own run only"),
    ("PUT", "/task-instances/{task_instance_id}/heartbeat"): (AIRFLOW, _TI_SELF),
    ("PUT", "/task-instances/{task_instance_id}/rtif"): (AIRFLOW, _TI_SELF),
    ("PATCH", "/task-instances/{task_instance_id}/rendered-map-index"): (AIRFLOW, _TI_SELF),
    ("GET", "/task-instances/{task_instance_id}/previous-successful-dagrun"): (AIRFLOW, _TI_SELF + "; its own DAG's "
                                                                               "runs"),
    ("GET", "/task-instances/{task_instance_id}/validate-inlets-and-outlets"): (AIRFLOW, _TI_SELF),
    ("GET", "/task-reschedules/{task_instance_id}/start_date"): (AIRFLOW, _TI_SELF),
    ("GET", "/variables/keys"): (AIRFLOW, "lists only the task's own team's keys (`get_team_name_dep`)"),
    ("GET", "/variables/{variable_key:path}"): (AIRFLOW, "looked up with the task's team (`Variable.get(team_name="
                                                "...)`): its own team's or a global variable, else 404; "
                                                "`has_variable_access` itself allows all"),
    ("PUT", "/variables/{variable_key:path}"): (PLATFORM, "an existing key of another team or a global key: 403 "
                                                "(the upsert would overwrite that row); a new key gets the "
                                                "caller's team"),
    ("DELETE", "/variables/{variable_key:path}"): (PLATFORM, "another team's or a global key: 204, nothing deleted "
                                                   "(Airflow would delete a global key)"),
    ("GET", "/xcoms/{dag_id}/{run_id}/{task_id}/{key:path}/item/{offset}"): (AIRFLOW, _XCOM),
    ("GET", "/xcoms/{dag_id}/{run_id}/{task_id}/{key:path}/slice"): (AIRFLOW, _XCOM),
    ("HEAD", "/xcoms/{dag_id}/{run_id}/{task_id}/{key:path}"): (AIRFLOW, _XCOM),
    ("GET", "/xcoms/{dag_id}/{run_id}/{task_id}/{key:path}"): (AIRFLOW, _XCOM),
    ("POST", "/xcoms/{dag_id}/{run_id}/{task_id}/{key:path}"): (AIRFLOW, _XCOM),
    ("DELETE", "/xcoms/{dag_id}/{run_id}/{task_id}/{key:path}"): (AIRFLOW, _XCOM),
    ("POST", "/hitlDetails/{task_instance_id}"): (AIRFLOW, _TI_SELF),
    ("PATCH", "/hitlDetails/{task_instance_id}"): (AIRFLOW, _TI_SELF),
    ("GET", "/hitlDetails/{task_instance_id}"): (AIRFLOW, _TI_SELF),
    ("GET", "/store/ti/{task_instance_id}/{key:path}"): (AIRFLOW, _TI_SELF),
    ("PUT", "/store/ti/{task_instance_id}/{key:path}"): (AIRFLOW, _TI_SELF),
    ("DELETE", "/store/ti/{task_instance_id}/{key:path}"): (AIRFLOW, _TI_SELF),
    ("DELETE", "/store/ti/{task_instance_id}"): (AIRFLOW, _TI_SELF),
    ("GET", "/store/asset/by-name/value"): (PLATFORM, _STORE),
    ("PUT", "/store/asset/by-name/value"): (PLATFORM, _STORE),
    ("DELETE", "/store/asset/by-name/value"): (PLATFORM, _STORE),
    ("DELETE", "/store/asset/by-name/clear"): (PLATFORM, _STORE),
    ("GET", "/store/asset/by-uri/value"): (PLATFORM, _STORE),
    ("PUT", "/store/asset/by-uri/value"): (PLATFORM, _STORE),
    ("DELETE", "/store/asset/by-uri/value"): (PLATFORM, _STORE),
    ("DELETE", "/store/asset/by-uri/clear"): (PLATFORM, _STORE),
}


def installed_routes(router=None) -> set[tuple[str, str]]:
    """(method, path) of every route of the Execution API router (the installed Airflow's by default)."""
    if router is None:
        from airflow.api_fastapi.execution_api.routes import execution_api_router as router
    return {(m, r.path) for r in router.routes for m in getattr(r, "methods", None) or ()}


def route_table_differences(router=None) -> tuple[set, set]:
    """(routes of the router missing from ``EXECUTION_API_ROUTES``, listed routes the router lacks)."""
    routes = installed_routes(router)
    return routes - set(EXECUTION_API_ROUTES), set(EXECUTION_API_ROUTES) - routes


def route_table_markdown() -> str:
    """``EXECUTION_API_ROUTES`` as the README's table."""
    lines = ["| method | path (under `/execution`) | decision | why |", "|---|---|---|---|"]
    for (method, path), (decision, reason) in EXECUTION_API_ROUTES.items():
        lines.append(f"| {method} | `{path}` | {decision} | {reason.replace('|', '/')} |")
    return "\n".join(lines)


# -- answers ----------------------------------------------------------------------------
@dataclass
class Answer:
    """The guard's own answer instead of the route's."""

    status: int
    body: Any = None  # JSON; None with 204 means no body


@dataclass
class FilterResponse:
    """Let the route answer, then pass its JSON through ``keep`` (run with a DB session)."""

    keep: Callable[[Any, Any], Any]


def _not_found(message: str) -> Answer:
    return Answer(404, {"detail": {"reason": "not_found", "message": message}})


# -- decisions per route ----------------------------------------------------------------
def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _dag_owned(session, team: str, dag_id: str | None) -> bool:
    from platform_runtime.ownership import dag_team

    return dag_id is None or dag_team(session, dag_id) == team


def _asset_by_key(session, name: str | None, uri: str | None, active: bool = True) -> int | None:
    from airflow.models.asset import AssetModel
    from sqlalchemy import select

    stmt = select(AssetModel.id)
    if name is not None:
        stmt = stmt.where(AssetModel.name == name)
    if uri is not None:
        stmt = stmt.where(AssetModel.uri == uri)
    if active:
        stmt = stmt.where(AssetModel.active.has())
    return session.scalar(stmt.limit(1))


def _asset_usable(session, team: str, name: str | None, uri: str | None, active: bool = True) -> bool:
    from platform_runtime.ownership import may_use_asset

    return may_use_asset(session, team, _asset_by_key(session, name, uri, active))


def _dag_run_detail(session, team, params, query, headers):
    if _dag_owned(session, team, params["dag_id"]):
        return None
    dag_id, run_id = params["dag_id"], params["run_id"]
    if run_id == "previous" and _api_version(headers) < "2026-04-06":
        return Answer(200, None)  # the older versions' /dag-runs/{dag_id}/previous: no previous run
    return _not_found(f"Dag run with dag_id '{dag_id}' and run_id '{run_id}' was not found")


def _dag_run_state(session, team, params, query, headers):
    if _dag_owned(session, team, params["dag_id"]):
        return None
    return _not_found(f"Dag run with dag_id '{params['dag_id']}' and run_id '{params['run_id']}' was not found")


def _dag_by_query(empty):
    def decide(session, team, params, query, headers):
        return None if _dag_owned(session, team, _one(query, "dag_id")) else Answer(200, empty)
    return decide


def _dag_by_path(empty):
    def decide(session, team, params, query, headers):
        return None if _dag_owned(session, team, params["dag_id"]) else Answer(200, empty)
    return decide


def _dag(session, team, params, query, headers):
    if _dag_owned(session, team, params["dag_id"]):
        return None
    return _not_found(f"The Dag with dag_id: `{params['dag_id']}` was not found")


def _asset_by_name(session, team, params, query, headers):
    name = _one(query, "name")
    if name is None or _asset_usable(session, team, name, None):
        return None
    return _not_found(f"Asset with name {name} not found")


def _asset_by_uri(session, team, params, query, headers):
    uri = _one(query, "uri")
    if uri is None or _asset_usable(session, team, None, uri):
        return None
    return _not_found(f"Asset with URI {uri} not found")


def _events_by_asset(session, team, params, query, headers):
    name, uri = _one(query, "name") or None, _one(query, "uri") or None
    if name is None and uri is None:
        return None  # the route's 400
    # name and uri together: the route does not require the asset to be active
    if _asset_usable(session, team, name, uri, active=not (name and uri)):
        return None
    return Answer(200, {"asset_events": []})


def _keep_usable_assets(session, team, assets: list) -> list:
    return [a for a in assets if isinstance(a, dict) and _asset_usable(session, team, a.get("name"), a.get("uri"),
                                                                       active=False)]


def _assets_by_alias(session, team, params, query, headers):
    return FilterResponse(lambda session_, body: _keep_usable_assets(session_, team, body)
                          if isinstance(body, list) else body)


def _events_by_alias(session, team, params, query, headers):
    def keep(session_, body):
        if not isinstance(body, dict) or not isinstance(body.get("asset_events"), list):
            return body
        return {**body, "asset_events": [
            e for e in body["asset_events"] if isinstance(e, dict) and isinstance(e.get("asset"), dict)
            and _asset_usable(session_, team, e["asset"].get("name"), e["asset"].get("uri"), active=False)]}
    return FilterResponse(keep)


def _store_by(field: str):
    def decide(session, team, params, query, headers):
        value = _one(query, field)
        if not value:
            return None  # the route's 422
        if _asset_usable(session, team, value if field == "name" else None, value if field == "uri" else None):
            return None
        return _not_found(f"Asset with {field}={value!r} not found")
    return decide


def _put_variable(session, team, params, query, headers):
    from platform_runtime.ownership import variable_team

    exists, owner = variable_team(session, params["variable_key"])
    if not exists or owner == team:
        return None
    return Answer(403, {"detail": {"reason": "access_denied",
                                   "message": "Task does not have access to the variable"}})


def _delete_variable(session, team, params, query, headers):
    from platform_runtime.ownership import variable_team

    exists, owner = variable_team(session, params["variable_key"])
    return None if not exists or owner == team else Answer(204)


def _api_version(headers: dict[bytes, bytes]) -> str:
    """The Execution API version the request asks for (Cadwyn's header; the newest when absent)."""
    return headers.get(b"airflow-api-version", b"9999-99-99").decode(errors="replace")


#: (method, path relative to /execution) -> decision; first match wins (the compat route
#: before the detail route it shadows in older versions).
GUARDED: list[tuple[str, str, Callable]] = [
    ("GET", "/dag-runs/{dag_id}/{run_id}/state", _dag_run_state),
    ("GET", "/dag-runs/count", _dag_by_query(0)),
    ("GET", "/dag-runs/previous", _dag_by_query(None)),
    ("GET", "/dag-runs/{dag_id}/{run_id}", _dag_run_detail),
    ("GET", "/dags/{dag_id}", _dag),
    ("GET", "/task-instances/count", _dag_by_query(0)),
    ("GET", "/task-instances/states", _dag_by_query({"task_states": {}})),
    ("GET", "/task-instances/breadcrumbs", _dag_by_query({"breadcrumbs": []})),
    ("GET", "/task-instances/previous/{dag_id}/{task_id}", _dag_by_path(None)),
    ("GET", "/assets/by-name", _asset_by_name),
    ("GET", "/assets/by-uri", _asset_by_uri),
    ("GET", "/assets/by-alias", _assets_by_alias),
    ("GET", "/asset-events/by-asset", _events_by_asset),
    ("GET", "/asset-events/by-asset-alias", _events_by_alias),
    ("PUT", "/variables/{variable_key:path}", _put_variable),
    ("DELETE", "/variables/{variable_key:path}", _delete_variable),
] + [(method, f"/store/asset/by-{field}/{leaf}", _store_by(field))
     for field in ("name", "uri") for method, leaf in (("GET", "value"), ("PUT", "value"), ("DELETE", "value"),
                                                       ("DELETE", "clear"))]
_COMPILED = [(method, compile_path(path)[0], decide) for method, path, decide in GUARDED]
_TI_STATE = compile_path("/task-instances/{task_instance_id}/state")[0]


def match(method: str, path: str) -> tuple[Callable, dict[str, str]] | None:
    """The decision for a request to the Execution API path ``path`` (relative to /execution)."""
    for m, regex, decide in _COMPILED:
        if m == method and (found := regex.match(path)):
            return decide, found.groupdict()
    return None


# -- asset outlets of a successful task -------------------------------------------------
def _redacted(uri: str | None) -> str | None:
    """An asset URI without any password in it (for the log)."""
    if not uri:
        return uri
    try:
        parts = urlsplit(uri)
        if parts.password is None:
            return uri
        host = parts.hostname or ""
        netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparseable uri>"


def foreign_outlets(session, team: str, body: dict) -> tuple[dict, list[str]]:
    """(the success body without outlets/outlet events naming an existing asset ``team`` may
    not use, the stripped assets as text)."""
    stripped: list[str] = []

    def foreign(name, uri) -> bool:
        asset_id = _asset_by_key(session, name, uri, active=False) if (name or uri) else None
        from platform_runtime.ownership import may_use_asset

        if asset_id is None or may_use_asset(session, team, asset_id):
            return False
        stripped.append(f"Asset(name={name!r}, uri={_redacted(uri)!r})")
        return True

    outlets = []
    for o in body.get("task_outlets") or []:
        kind = o.get("type") if isinstance(o, dict) else None
        if kind == "Asset" and foreign(o.get("name"), o.get("uri")):
            continue
        if kind == "AssetNameRef" and foreign(o.get("name"), None):
            continue
        if kind == "AssetUriRef" and foreign(None, o.get("uri")):
            continue
        outlets.append(o)
    events = []
    for e in body.get("outlet_events") or []:
        key = e.get("dest_asset_key") if isinstance(e, dict) else None
        if isinstance(key, dict) and foreign(key.get("name"), key.get("uri")):
            continue
        events.append(e)
    if not stripped:
        return body, []
    new = dict(body)
    if "task_outlets" in body:
        new["task_outlets"] = outlets
    if "outlet_events" in body:
        new["outlet_events"] = events
    return new, sorted(set(stripped))


# -- the middleware ---------------------------------------------------------------------
@functools.cache
def _validator():
    """A validator of Execution API tokens configured as Airflow's own (execution_api/app.py)."""
    from airflow.api_fastapi.auth.tokens import JWTValidator, get_sig_validation_args
    from airflow.configuration import conf

    required = {"aud", "exp", "iat"}
    issuer = conf.get("api_auth", "jwt_issuer", fallback=None)
    if issuer:
        required.add("iss")
    return JWTValidator(required_claims=frozenset(required), issuer=issuer,
                        audience=conf.get_mandatory_list_value("execution_api", "jwt_audience"),
                        **get_sig_validation_args(make_secret_key_if_needed=False))


async def verified_task_id(headers: dict[bytes, bytes]) -> str | None:
    """The task instance id of a valid execution-scope bearer token; None for anything else."""
    auth = headers.get(b"authorization", b"").decode(errors="replace")
    if not auth.lower().startswith("bearer "):
        return None
    try:
        claims = await _validator().avalidated_claims(auth[7:].strip(), {})
    except Exception:  # the route refuses it and logs why
        return None
    if claims.get("scope", "execution") != "execution":
        return None
    try:
        return str(uuid.UUID(str(claims.get("sub"))))
    except ValueError:
        return None


def _caller(ti_id: str) -> tuple[str | None, tuple | None]:
    """(team, (dag_id, task_id, run_id)) of a task instance; team None when not limited."""
    from airflow.configuration import conf
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    from platform_runtime.ownership import ti_team

    if not conf.getboolean("core", "multi_team", fallback=False):
        return None, None
    with create_session() as session:
        team = ti_team(session, ti_id)
        ti = session.get(TaskInstance, ti_id) if team else None
        return team, ((ti.dag_id, ti.task_id, ti.run_id) if ti is not None else None)


def _in_session(fn, *args):
    from airflow.utils.session import create_session

    with create_session() as session:
        return fn(session, *args)


def _encode(body: Any) -> bytes:
    """JSON as FastAPI's ``JSONResponse`` renders it."""
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


async def _send_json(send, status: int, body: Any) -> None:
    if status == 204:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await send_json(send, status, _encode(body))


def _route_path(scope) -> str:
    """The path the app's routes match (Starlette's routing drops the app's ``root_path``,
    e.g. the api-server's ``[api] base_url`` path, from ``scope["path"]``)."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


class ExecutionGuardMiddleware:
    """ASGI middleware on the api-server adding team checks to the Execution API (see module doc).

    ``prefix`` is where the Execution API is mounted (``/execution`` on the api-server; a root
    middleware sees the full path in ``scope["path"]``)."""

    def __init__(self, app, prefix: str = "/execution") -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")

    async def __call__(self, scope, receive, send) -> None:
        path = _route_path(scope) if scope["type"] == "http" else ""
        if not path.startswith(self.prefix + "/"):
            await self.app(scope, receive, send)
            return
        path, method = path[len(self.prefix):], scope["method"]
        state_update = method == "PATCH" and _TI_STATE.match(path)
        found = None if state_update else match(method, path)
        if not state_update and found is None:
            await self.app(scope, receive, send)
            return
        from starlette.concurrency import run_in_threadpool

        headers = dict(scope.get("headers", []))
        ti_id = await verified_task_id(headers)
        team, task = await run_in_threadpool(_caller, ti_id) if ti_id else (None, None)
        if team is None:
            await self.app(scope, receive, send)
            return
        if state_update:
            await self._state_update(scope, receive, send, team, task, ti_id)
            return
        decide, params = found
        query = parse_qs(scope.get("query_string", b"").decode(errors="replace"), keep_blank_values=True)
        decision = await run_in_threadpool(_in_session, decide, team, params, query, headers)
        if isinstance(decision, Answer):
            await _send_json(send, decision.status, decision.body)
        elif isinstance(decision, FilterResponse):
            await self._filtered(scope, receive, send, decision)
        else:
            await self.app(scope, receive, send)

    async def _filtered(self, scope, receive, send, decision: FilterResponse) -> None:
        from starlette.concurrency import run_in_threadpool

        start: dict = {}
        chunks: list[bytes] = []

        async def capture(message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            if start.get("status") == 200:
                filtered = await run_in_threadpool(_in_session, decision.keep, json.loads(body))
                body = _encode(filtered)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": headers + [(b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)

    async def _state_update(self, scope, receive, send, team: str, task, ti_id: str) -> None:
        from starlette.concurrency import run_in_threadpool

        raw = await read_body(receive)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("state") == "success":
            new, stripped = await run_in_threadpool(_in_session, foreign_outlets, team, body)
            if stripped:
                dag_id, task_id, run_id = task or (None, None, None)
                log.warning("Stripped asset outlets of another team from task %s (dag %s, task %s, run %s, team %s): "
                            "%s", ti_id, dag_id, task_id, run_id, team, ", ".join(stripped))
                raw = json.dumps(new).encode()
                headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
                scope = {**scope, "headers": headers + [(b"content-length", str(len(raw)).encode())]}
        await self.app(scope, replaying(raw, receive), send)


__all__ = ["EXECUTION_API_ROUTES", "ExecutionGuardMiddleware", "route_table_differences", "route_table_markdown"]
