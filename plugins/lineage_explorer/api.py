"""The lineage explorer's HTTP API: Marquez's paths and JSON shapes, under the plugin's prefix.

Mounted by the api-server at ``/lineage-explorer`` (see ``plugins/lineage_explorer_plugin.py``);
every path below is relative to it, e.g. ``GET /lineage-explorer/api/v1/namespaces``.

Ingest (the OpenLineage provider's ``http`` transport, ``Authorization: Bearer <ingest key>``)
- ``POST /api/v1/lineage`` one OpenLineage run event -> ``201`` (also for a replay, which
  changes nothing). ``401`` no/unknown key; ``403`` a team key for a job that is not one of
  its team's DAGs, or whose ``parent``/``root`` run facet names a job of the deployment's
  namespace that is not its team's, or a stored run of another team; ``409`` the run id (or
  the parent/root run id) is stored for another job (a run belongs to one job; any key);
  ``422`` not a run event (also a parent facet without a UUID run id and a job). A refused
  event stores nothing; the ``detail`` says why.

Reads (a logged-in Airflow user: ``Authorization: Bearer <JWT>`` or the UI's ``_token``
cookie; anonymous -> ``401``). Only what the user may see is returned (see ``Visibility``).
Times are ISO 8601 UTC strings (``2026-12-02T01:02:03.456000Z``).

- ``GET /api/v1/namespaces`` -> ``{"namespaces": [Namespace]}``;
  ``GET /api/v1/namespaces/{ns}`` -> ``Namespace``
  ``Namespace = {"name", "createdAt", "updatedAt", "ownerName": null, "description": null, "isHidden": false}``
- ``GET /api/v1/namespaces/{ns}/jobs?limit=100&offset=0`` -> ``{"jobs": [Job], "totalCount"}``;
  ``GET /api/v1/jobs`` (every namespace) the same; ``GET /api/v1/namespaces/{ns}/jobs/{job}`` -> ``Job``
  ``Job = {"id": {"namespace", "name"}, "type": "BATCH", "name", "simpleName", "parentJobName",
  "createdAt", "updatedAt", "namespace", "inputs": [{"namespace", "name"}], "outputs": [...],
  "location", "description", "latestRun": Run | null, "facets": {...}, "currentVersion": null,
  "tags": [], "labels": [], "dagId", "team"}`` (``dagId``/``team``: this platform's additions)
- ``GET /api/v1/namespaces/{ns}/jobs/{job}/runs?limit=100&offset=0`` -> ``{"runs": [Run], "totalCount"}``;
  ``GET /api/v1/jobs/runs/{runId}`` -> ``Run``
  ``Run = {"id", "createdAt", "updatedAt", "nominalStartTime", "nominalEndTime", "state"
  (NEW|RUNNING|COMPLETED|FAILED|ABORTED), "startedAt", "endedAt", "durationMs", "args": {},
  "jobVersion": {"namespace", "name", "version": null}, "inputDatasetVersions":
  [{"datasetVersionId": {"namespace", "name", "version": null}, "facets": {}}],
  "outputDatasetVersions": [...], "context": {}, "facets": {...}}``
- ``GET /api/v1/namespaces/{ns}/datasets?limit=100&offset=0`` -> ``{"datasets": [Dataset], "totalCount"}``;
  ``GET /api/v1/namespaces/{ns}/datasets/{dataset}`` -> ``Dataset``
  ``Dataset = {"id": {"namespace", "name"}, "type": "DB_TABLE", "name", "physicalName",
  "createdAt", "updatedAt", "namespace", "sourceName", "fields": [{"name", "type", "tags": [],
  "description"}], "tags": [], "lastModifiedAt", "lastLifecycleState", "description",
  "currentVersion": null, "columnLineage": null, "facets": {...}, "facetsByJob": [{"job":
  {"namespace", "name"}, "facets": {...}, "updatedAt"}], "deleted": false}``: only what the
  jobs you may see reported for it (``facets`` merged, the latest job's winning per facet;
  ``facetsByJob`` this platform's addition); its times are theirs too
- ``GET /api/v1/search?q=...&filter=JOB|DATASET&sort=NAME|UPDATE_AT&limit=10&namespace=...`` ->
  ``{"totalCount", "results": [{"type", "name", "updatedAt", "namespace", "nodeId"}]}``
- ``GET /api/v1/lineage?nodeId=job:<ns>:<name>|dataset:<ns>:<name>&depth=20`` (or
  ``type=job|dataset&namespace=<ns>&name=<name>`` instead of ``nodeId``) ->
  ``{"graph": [{"id": nodeId, "type": "JOB"|"DATASET", "data": Job|Dataset,
  "inEdges": [{"origin", "destination"}], "outEdges": [...]}]}``.
  ``depth`` counts job-to-job hops through datasets (as Marquez); every dataset the included
  jobs read or write is in the graph. A node id is parsed as ``<type>:<namespace>:<name>``
  where the namespace is the longest prefix that exists (namespaces contain colons).

Path segments are taken from the raw, percent-encoded request path, so a namespace such as
``postgres://127.0.0.1:5432`` is passed as ``postgres%3A%2F%2F127.0.0.1%3A5432``.
"""

# No ``from __future__ import annotations``: FastAPI must see the dependency annotations
# of the endpoints defined inside ``create_app`` as objects, not strings.
import asyncio
import gzip
import hmac
import json
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from lineage_explorer.config import Settings
from lineage_explorer.ownership import OwnerResolver
from lineage_explorer.queries import Reader, Visibility, dataset_node_id, job_node_id
from lineage_explorer.retention import PurgeLoop
from lineage_explorer.store import IngestQueue, InvalidEvent, LineageStore, RefusedEvent, RunEvent

log = logging.getLogger(__name__)

MAX_LIMIT = 1000
MAX_DEPTH = 20


# -- shapes --------------------------------------------------------------------------
def iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def namespace_json(row: dict) -> dict:
    return {"name": row["name"], "createdAt": iso(row["created_at"]), "updatedAt": iso(row["updated_at"]),
            "ownerName": None, "description": None, "isHidden": False}


def run_json(row: dict | None) -> dict | None:
    if not row:
        return None
    started, ended = row.get("started_at"), row.get("ended_at")
    if isinstance(started, str):
        started = datetime.fromisoformat(started)
    if isinstance(ended, str):
        ended = datetime.fromisoformat(ended)
    duration = int((ended - started).total_seconds() * 1000) if started and ended else None

    def versions(items: list[dict]) -> list[dict]:
        return [{"datasetVersionId": {"namespace": d["namespace"], "name": d["name"], "version": None}, "facets": {}}
                for d in sorted(items, key=lambda d: (d["namespace"], d["name"]))]

    return {
        "id": str(row["run_id"]),
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
        "nominalStartTime": iso(row.get("nominal_start_time")),
        "nominalEndTime": iso(row.get("nominal_end_time")),
        "state": row["state"],
        "startedAt": iso(started),
        "endedAt": iso(ended),
        "durationMs": duration,
        "args": {},
        "jobVersion": {"namespace": row["job_namespace"], "name": row["job_name"], "version": None},
        "inputDatasetVersions": versions(row.get("inputs") or []),
        "outputDatasetVersions": versions(row.get("outputs") or []),
        "context": {},
        "facets": row.get("facets") or {},
    }


def job_json(row: dict) -> dict:
    name, parent = row["name"], row.get("parent_job_name")
    simple = name[len(parent) + 1:] if parent and name.startswith(parent + ".") else name
    return {
        "id": {"namespace": row["namespace"], "name": name},
        "type": ((row.get("facets") or {}).get("jobType") or {}).get("processingType") or "BATCH",
        "name": name,
        "simpleName": simple,
        "parentJobName": parent,
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
        "namespace": row["namespace"],
        "inputs": row.get("inputs") or [],
        "outputs": row.get("outputs") or [],
        "location": row.get("location"),
        "description": row.get("description"),
        "latestRun": run_json(row.get("latest_run")),
        "facets": row.get("facets") or {},
        "currentVersion": None,
        "tags": [],
        "labels": [],
        "dagId": row.get("dag_id"),
        "team": row.get("team"),
    }


def dataset_json(row: dict) -> dict:
    facets = row.get("facets") or {}
    fields = [
        {"name": f.get("name"), "type": f.get("type"), "tags": [], "description": f.get("description")}
        for f in ((facets.get("schema") or {}).get("fields") or [])
    ]
    return {
        "id": {"namespace": row["namespace"], "name": row["name"]},
        "type": "DB_TABLE",
        "name": row["name"],
        "physicalName": row["name"],
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
        "namespace": row["namespace"],
        "sourceName": (facets.get("dataSource") or {}).get("name") or row["namespace"],
        "fields": fields,
        "tags": [],
        "lastModifiedAt": iso(row["updated_at"]),
        "lastLifecycleState": row.get("lifecycle_state"),
        "description": (facets.get("documentation") or {}).get("description"),
        "currentVersion": None,
        "columnLineage": None,
        "facets": facets,
        "facetsByJob": [{"job": e["job"], "facets": e["facets"], "updatedAt": iso(e["updatedAt"])}
                        for e in row.get("facets_by_job") or []],
        "deleted": False,
    }


def graph_json(graph: dict) -> dict:
    nodes: dict[str, dict] = {}
    for j in graph["jobs"]:
        nid = job_node_id(j["namespace"], j["name"])
        nodes[nid] = {"id": nid, "type": "JOB", "data": job_json(j), "inEdges": [], "outEdges": []}
    for d in graph["datasets"]:
        nid = dataset_node_id(d["namespace"], d["name"])
        nodes[nid] = {"id": nid, "type": "DATASET", "data": dataset_json(d), "inEdges": [], "outEdges": []}
    for jns, jname, direction, dns, dname in graph["edges"]:
        job, ds = job_node_id(jns, jname), dataset_node_id(dns, dname)
        if job not in nodes or ds not in nodes:
            continue
        origin, dest = (ds, job) if direction == "in" else (job, ds)
        edge = {"origin": origin, "destination": dest}
        nodes[origin]["outEdges"].append(edge)
        nodes[dest]["inEdges"].append(edge)
    return {"graph": sorted(nodes.values(), key=lambda n: n["id"])}


# -- the app -------------------------------------------------------------------------
def visibility_for(user: Any, reader: Reader, resolver: OwnerResolver) -> Visibility:
    """The jobs ``user`` may see, from Airflow's auth manager: the jobs of the DAGs
    ``get_authorized_dag_ids`` returns, plus jobs of no known DAG (platform-key events,
    deleted DAGs) of the teams the user may read (``is_authorized_dag`` with that team)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    am = get_auth_manager()
    teams = {
        t for t in ["", *reader.job_teams()]
        if am.is_authorized_dag(method="GET", user=user, details=DagDetails(team_name=t or None))
    }
    return Visibility(
        dag_ids=frozenset(am.get_authorized_dag_ids(user=user, method="GET")),
        known_dag_ids=frozenset(resolver.known_dag_ids()),
        teams=frozenset(teams),
    )


def create_app(
    settings_factory: Callable[[], Settings] = Settings.from_airflow,
    resolver_factory: Callable[[Settings], OwnerResolver] = OwnerResolver,
) -> FastAPI:
    """The FastAPI app the plugin mounts. Settings and the database pool are made on
    first use, so importing the plugin (workers do) opens nothing."""
    from airflow.api_fastapi.core_api.security import GetUserDep

    @cache
    def services() -> tuple[Settings, LineageStore, Reader, OwnerResolver]:
        s = settings_factory()
        store = LineageStore(s.dsn)
        return s, store, Reader(store), resolver_factory(s)

    @cache
    def ingest_queue() -> IngestQueue:
        return IngestQueue(services()[1])

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        """The api-server enters mounted apps' lifespans: retention runs there, hourly. The
        database is not touched here, so the api-server starts even when it is down."""
        def retention_target() -> tuple[LineageStore, int]:
            settings, store, _, _ = services()
            return store, settings.retention_days

        loop = PurgeLoop(retention_target).start()
        yield
        loop.stop()
        if ingest_queue.cache_info().currsize:
            ingest_queue().stop()  # what is queued is stored before the api-server exits

    app = FastAPI(title="Lineage explorer (Marquez-compatible)", version="1", lifespan=lifespan)

    app.state.services = services
    app.state.ingest_queue = ingest_queue

    def vis_dep(user: GetUserDep) -> Visibility:
        _, _, reader, resolver = services()
        return visibility_for(user, reader, resolver)

    VisDep = Annotated[Visibility, Depends(vis_dep)]

    # -- ingest ---------------------------------------------------------------------
    @app.post("/api/v1/lineage", status_code=201)
    async def ingest(request: Request) -> JSONResponse:
        settings, _, _, resolver = services()
        auth = request.headers.get("authorization", "")
        key = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        team = _team_of_key(settings, key)
        if team is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or unknown lineage ingest key")
        body = await request.body()
        if request.headers.get("content-encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        try:
            text = body.decode()
            event = RunEvent.parse(json.loads(text), raw=text)
        except (InvalidEvent, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"not an OpenLineage run event: {e}") from None
        owner = resolver.cached(event.job_name) or await run_in_threadpool(resolver.owner, event)
        if team != PLATFORM:
            if event.job_namespace != settings.namespace or owner.team != team:
                log.warning("lineage ingest refused: team %s key for job %s:%s (team %s)",
                            team, event.job_namespace, event.job_name, owner.team)
                raise HTTPException(
                    status.HTTP_403_FORBIDDEN,
                    f"the ingest key of team {team!r} may only report jobs of its own DAGs in namespace "
                    f"{settings.namespace!r}; job {event.job_name!r} is not one",
                )
            # a parent/root in this deployment's namespace must be a job of the key's team; one in
            # another namespace (a run elsewhere that triggered this DAG run) is no job of another
            # team here, and a stored run of another team's is refused by the store whatever it names
            for label, _, ns, name in event.parent_runs():
                if ns != settings.namespace:
                    continue
                parent_team = (resolver.cached(name) or await run_in_threadpool(resolver.owner_of, name)).team
                if parent_team != team:
                    log.warning("lineage ingest refused: team %s key for job %s:%s with %s job %s:%s (team %s)",
                                team, event.job_namespace, event.job_name, label, ns, name, parent_team)
                    raise HTTPException(
                        status.HTTP_403_FORBIDDEN,
                        f"the ingest key of team {team!r} may only attach events to runs of its own DAGs' jobs in "
                        f"namespace {settings.namespace!r}; the {label} job {name!r} is not one of them",
                    )
        try:  # group commit: stored (committed) with the events of other requests waiting now
            stored = await asyncio.wrap_future(
                ingest_queue().submit(event, owner, None if team == PLATFORM else team))
        except RefusedEvent as e:
            log.warning("lineage ingest refused: %s key, job %s:%s: %s", "platform" if team == PLATFORM else f"team {team}",
                        event.job_namespace, event.job_name, e.reason)
            raise HTTPException(e.status, e.reason) from None
        return JSONResponse({"stored": stored}, status_code=201)

    # -- reads ----------------------------------------------------------------------
    def reader() -> Reader:
        return services()[2]

    @app.get("/api/v1/namespaces")
    def list_namespaces(vis: VisDep) -> dict:
        return {"namespaces": [namespace_json(r) for r in reader().namespaces(vis)]}

    @app.get("/api/v1/jobs")
    def list_all_jobs(vis: VisDep, limit: Annotated[int, Query(ge=0, le=MAX_LIMIT)] = 100,
                      offset: Annotated[int, Query(ge=0)] = 0) -> dict:
        rows, total = reader().jobs(vis, None, limit, offset)
        return {"jobs": [job_json(r) for r in rows], "totalCount": total}

    @app.get("/api/v1/jobs/runs/{run_id}")
    def get_run(vis: VisDep, run_id: str) -> dict:
        try:
            row = reader().run(vis, str(_uuid(run_id)))
        except ValueError:
            row = None
        if row is None:
            raise HTTPException(404, f"run {run_id} not found")
        return run_json(row)

    @app.get("/api/v1/namespaces/{rest:path}")
    def namespace_tree(vis: VisDep, request: Request, limit: Annotated[int, Query(ge=0, le=MAX_LIMIT)] = 100,
                       offset: Annotated[int, Query(ge=0)] = 0) -> dict:
        parts = _raw_segments(request, "/api/v1/namespaces/")
        r = reader()
        match parts:
            case [ns]:
                row = next((n for n in r.namespaces(vis) if n["name"] == ns), None)
                if row is None:
                    raise HTTPException(404, f"namespace {ns} not found")
                return namespace_json(row)
            case [ns, "jobs"]:
                rows, total = r.jobs(vis, ns, limit, offset)
                return {"jobs": [job_json(j) for j in rows], "totalCount": total}
            case [ns, "jobs", name]:
                row = r.job(vis, ns, name)
                if row is None:
                    raise HTTPException(404, f"job {name} not found in namespace {ns}")
                return job_json(row)
            case [ns, "jobs", name, "runs"]:
                if r.job(vis, ns, name) is None:
                    raise HTTPException(404, f"job {name} not found in namespace {ns}")
                rows, total = r.runs(vis, ns, name, limit, offset)
                return {"runs": [run_json(x) for x in rows], "totalCount": total}
            case [ns, "datasets"]:
                rows, total = r.datasets(vis, ns, limit, offset)
                return {"datasets": [dataset_json(d) for d in rows], "totalCount": total}
            case [ns, "datasets", name]:
                row = r.dataset(vis, ns, name)
                if row is None:
                    raise HTTPException(404, f"dataset {name} not found in namespace {ns}")
                return dataset_json(row)
        raise HTTPException(404, "no such Marquez call here (see the lineage explorer's README)")

    @app.get("/api/v1/search")
    def search(vis: VisDep, q: Annotated[str, Query(min_length=1)],
               filter: Annotated[str | None, Query(pattern="^(JOB|DATASET|job|dataset)$")] = None,
               sort: Annotated[str, Query(pattern="^(NAME|UPDATE_AT|name|update_at)$")] = "NAME",
               limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 10,
               namespace: str | None = None) -> dict:
        rows, total = reader().search(vis, q, filter.upper() if filter else None, sort.upper(), limit, namespace)
        results = [
            {"type": x["type"], "name": x["name"], "updatedAt": iso(x["updated_at"]), "namespace": x["namespace"],
             "nodeId": (job_node_id if x["type"] == "JOB" else dataset_node_id)(x["namespace"], x["name"])}
            for x in rows
        ]
        return {"totalCount": total, "results": results}

    @app.get("/api/v1/lineage")
    def lineage(vis: VisDep, nodeId: str | None = None, depth: Annotated[int, Query(ge=0, le=MAX_DEPTH)] = 20,
                type: str | None = None, namespace: str | None = None, name: str | None = None) -> dict:
        r = reader()
        if nodeId:
            candidates = _parse_node_id(nodeId)
        elif type and namespace and name:
            candidates = [(type.lower(), namespace, name)]
        else:
            raise HTTPException(400, "give nodeId=job:<ns>:<name>|dataset:<ns>:<name>, or type, namespace and name")
        for kind, ns, nm in candidates:
            if kind not in ("job", "dataset"):
                raise HTTPException(400, f"node type must be job or dataset, not {kind!r}")
            graph = r.graph(vis, kind, ns, nm, depth)
            if graph is not None:
                return graph_json(graph)
        raise HTTPException(404, f"node {nodeId or (type, namespace, name)} not found")

    return app


PLATFORM = "__platform__"


def _team_of_key(settings: Settings, key: str) -> str | None:
    """The team an ingest key belongs to (PLATFORM for the platform key), compared in constant time."""
    if not key:
        return None
    found = None
    if settings.platform_key and hmac.compare_digest(key.encode(), settings.platform_key.encode()):
        found = PLATFORM
    for team, k in settings.ingest_keys.items():
        if hmac.compare_digest(key.encode(), k.encode()):
            found = team
    return found


def _uuid(value: str):
    import uuid

    return uuid.UUID(value)


def _raw_segments(request: Request, marker: str) -> list[str]:
    """Path segments after ``marker``, split on the raw path's ``/`` and then decoded, so an
    encoded ``%2F`` inside a namespace stays inside its segment."""
    raw = request.scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0]
    idx = raw.find(marker)
    if idx < 0:
        raise HTTPException(404, "not found")
    return [unquote(s) for s in raw[idx + len(marker):].split("/") if s != ""]


def _parse_node_id(node_id: str) -> list[tuple[str, str, str]]:
    """Every split of ``<type>:<namespace>:<name>`` at a colon, longest namespace first."""
    kind, sep, rest = node_id.partition(":")
    if not sep or ":" not in rest:
        raise HTTPException(400, f"nodeId must be <type>:<namespace>:<name>, got {node_id!r}")
    cuts = [i for i, c in enumerate(rest) if c == ":"]
    return [(kind.lower(), rest[:i], rest[i + 1:]) for i in reversed(cuts) if rest[:i] and rest[i + 1:]]
