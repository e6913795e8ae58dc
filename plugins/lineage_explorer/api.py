"""The lineage explorer's HTTP API: Marquez's paths and JSON shapes, under the plugin's prefix.

Mounted by the api-server at ``/lineage-explorer`` (see ``plugins/lineage_explorer_plugin.py``);
every path below is relative to it, e.g. ``GET /lineage-explorer/api/v1/namespaces``.

Ingest (the OpenLineage provider's ``http`` transport, ``Authorization: Bearer <ingest key>``;
answered by :class:`IngestEndpoint`, stored by the group-commit writer ``store.IngestQueue``)
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
  "location", "description", "latestRun": Run | null, "facets": {...}, "currentVersion",
  "tags": [], "labels": [], "dagId", "team"}`` (``dagId``/``team``: this platform's additions)
- ``GET /api/v1/namespaces/{ns}/jobs/{job}/runs?limit=100&offset=0`` -> ``{"runs": [Run], "totalCount"}``;
  ``GET /api/v1/jobs/runs/{runId}`` -> ``Run``
  ``Run = {"id", "createdAt", "updatedAt", "nominalStartTime", "nominalEndTime", "state"
  (NEW|RUNNING|COMPLETED|FAILED|ABORTED), "startedAt", "endedAt", "durationMs", "args": {},
  "jobVersion": {"namespace", "name", "version"}, "inputDatasetVersions":
  [{"datasetVersionId": {"namespace", "name", "version"}, "facets": {}}],
  "outputDatasetVersions": [...], "context": {}, "facets": {...}}``
- ``GET /api/v1/namespaces/{ns}/datasets?limit=100&offset=0`` -> ``{"datasets": [Dataset], "totalCount"}``;
  ``GET /api/v1/namespaces/{ns}/datasets/{dataset}`` -> ``Dataset``
  ``Dataset = {"id": {"namespace", "name"}, "type": "DB_TABLE", "name", "physicalName",
  "createdAt", "updatedAt", "namespace", "sourceName", "fields": [{"name", "type", "tags": [],
  "description"}], "tags": [], "lastModifiedAt", "lastLifecycleState", "description",
  "currentVersion", "columnLineage": [{"name", "inputFields": [...], ...}] | null, "facets": {...}, "facetsByJob": [{"job":
  {"namespace", "name"}, "facets": {...}, "updatedAt"}], "deleted": false}``: only what the
  jobs you may see reported for it (``facets`` merged, the latest job's winning per facet;
  ``facetsByJob`` this platform's addition); its times are theirs too
- ``GET /api/v1/namespaces/{ns}/datasets/{dataset}/versions?limit=100&offset=0`` ->
  ``{"versions": [DatasetVersion], "totalCount"}`` (newest first);
  ``GET /api/v1/namespaces/{ns}/datasets/{dataset}/versions/{version}`` -> ``DatasetVersion``
  ``DatasetVersion = {"id": {"namespace", "name", "version"}, "type", "name", "physicalName",
  "createdAt", "version", "namespace", "sourceName", "fields", "tags": [], "lifecycleState",
  "description", "currentSchemaVersion": null, "createdByRun": Run | null (a version a reading
  job saw), "facets"}``: only versions made by jobs you may see
- ``GET /api/v1/namespaces/{ns}/jobs/{job}/versions?limit=100&offset=0`` -> ``{"versions": [JobVersion]}``;
  ``GET /api/v1/namespaces/{ns}/jobs/{job}/versions/{version}`` -> ``JobVersion``
  ``JobVersion = {"id": {"namespace", "name", "version"}, "name", "createdAt", "version",
  "namespace", "location", "inputs", "outputs", "context": {}, "latestRun": Run | null, "facets"
  (what the version was derived from: dagVersionId, dagBundleVersion, sourceCodeLocation, ...)}``
- ``GET /api/v1/column-lineage?nodeId=dataset:<ns>:<name>|datasetField:<ns>:<name>:<field>&depth=20&withDownstream=false``
  -> ``{"graph": [{"id": "datasetField:<ns>:<name>:<field>", "type": "DATASET_FIELD", "data":
  {"namespace", "dataset", "datasetVersion", "field", "fieldType", "transformationDescription",
  "transformationType", "inputFields": [{"namespace", "dataset", "datasetVersion", "field",
  "transformationDescription", "transformationType"}]}, "inEdges", "outEdges"}]}``: upstream
  ``depth`` edges (and downstream with ``withDownstream``), from the ``columnLineage`` facets
  the jobs you may see reported
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
import hashlib
import json
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
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

    def versions(items: list[dict], with_versions: list[dict]) -> list[dict]:
        # the versions the run read/wrote (stored since migration 0003); before it: none known
        found = with_versions or [{**d, "version": None} for d in items]
        return [{"datasetVersionId": {"namespace": d["namespace"], "name": d["name"], "version": d["version"]},
                 "facets": {}} for d in sorted(found, key=lambda d: (d["namespace"], d["name"], d["version"] or ""))]

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
        "jobVersion": {"namespace": row["job_namespace"], "name": row["job_name"],
                       "version": _str(row.get("job_version"))},
        "inputDatasetVersions": versions(row.get("inputs") or [], row.get("input_versions") or []),
        "outputDatasetVersions": versions(row.get("outputs") or [], row.get("output_versions") or []),
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
        "currentVersion": _str(row.get("current_version")),
        "tags": [],
        "labels": [],
        "dagId": row.get("dag_id"),
        "team": row.get("team"),
    }


def dataset_json(row: dict) -> dict:
    facets = row.get("facets") or {}
    fields = fields_json((facets.get("schema") or {}).get("fields"))
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
        "currentVersion": _str(row.get("current_version")),
        "columnLineage": column_lineage_json(facets),
        "facets": facets,
        "facetsByJob": [{"job": e["job"], "facets": e["facets"], "updatedAt": iso(e["updatedAt"])}
                        for e in row.get("facets_by_job") or []],
        "deleted": False,
    }


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def fields_json(schema_fields: Any) -> list[dict]:
    return [{"name": f.get("name"), "type": f.get("type"), "tags": [], "description": f.get("description")}
            for f in (schema_fields if isinstance(schema_fields, list) else []) if isinstance(f, dict)]


def _transformation(spec: dict, src: dict) -> tuple[str | None, str | None]:
    t = next((x for x in src.get("transformations") or [] if isinstance(x, dict)), {})
    return (t.get("description") or spec.get("transformationDescription") or None,
            t.get("type") or spec.get("transformationType") or None)


def column_lineage_json(facets: dict) -> list[dict] | None:
    """Marquez's ``columnLineage`` of a dataset, from its ``columnLineage`` facet: per field, the
    input fields it is derived from; None when no visible job reported one."""
    fields = ((facets.get("columnLineage") or {}).get("fields")) if isinstance(facets.get("columnLineage"), dict) else None
    if not isinstance(fields, dict):
        return None
    out = []
    for name, spec in sorted(fields.items()):
        if not isinstance(spec, dict):
            continue
        inputs = []
        for src in spec.get("inputFields") or []:
            if isinstance(src, dict):
                desc, kind = _transformation(spec, src)
                inputs.append({"namespace": src.get("namespace"), "dataset": src.get("name"), "field": src.get("field"),
                               "transformationDescription": desc, "transformationType": kind})
        out.append({"name": name, "inputFields": inputs,
                    "transformationDescription": inputs[0]["transformationDescription"] if inputs else None,
                    "transformationType": inputs[0]["transformationType"] if inputs else None})
    return out


def dataset_version_json(row: dict) -> dict:
    """Marquez's DatasetVersion: one version of a dataset, with the run that wrote it."""
    facets = row.get("facets") or {}
    version = str(row["version"])
    return {
        "id": {"namespace": row["dataset_namespace"], "name": row["dataset_name"], "version": version},
        "type": "DB_TABLE",
        "name": row["dataset_name"],
        "physicalName": row["dataset_name"],
        "createdAt": iso(row["created_at"]),
        "version": version,
        "namespace": row["dataset_namespace"],
        "sourceName": (facets.get("dataSource") or {}).get("name") or row["dataset_namespace"],
        "fields": fields_json(row.get("fields")),
        "tags": [],
        "lifecycleState": row.get("lifecycle_state"),
        "description": (facets.get("documentation") or {}).get("description"),
        "currentSchemaVersion": None,
        "createdByRun": run_json(row.get("run")),
        "facets": facets,
    }


def job_version_json(row: dict) -> dict:
    """Marquez's JobVersion."""
    version = str(row["version"])
    return {
        "id": {"namespace": row["namespace"], "name": row["name"], "version": version},
        "name": row["name"],
        "createdAt": iso(row["created_at"]),
        "version": version,
        "namespace": row["namespace"],
        "location": row.get("location"),
        "inputs": row.get("inputs") or [],
        "outputs": row.get("outputs") or [],
        "context": {},
        "latestRun": run_json(row.get("latest_run")),
        "facets": row.get("facets") or {},
    }


def field_node_id(namespace: str, dataset: str, field: str) -> str:
    return f"datasetField:{namespace}:{dataset}:{field}"


def column_graph_json(edges: list[dict], datasets: dict[tuple[str, str], dict], start: list[tuple[str, str, str]],
                      depth: int, with_downstream: bool) -> dict:
    """Marquez's column lineage graph: ``start`` fields, their input fields ``depth`` edges up
    (and, ``with_downstream``, the fields derived from them ``depth`` edges down); every node's
    direct inputs are nodes too. ``datasets``: (namespace, name) -> dataset row (types, version)."""
    up: dict[tuple, list[dict]] = {}
    down: dict[tuple, list[tuple]] = {}
    for e in edges:
        node = (e["namespace"], e["dataset"], e["field"])
        src = (e["input"]["namespace"], e["input"]["dataset"], e["input"]["field"])
        up.setdefault(node, []).append(e)
        down.setdefault(src, []).append(node)
    included = set(start)
    frontier = set(start)
    for _ in range(depth):
        frontier = {(x["input"]["namespace"], x["input"]["dataset"], x["input"]["field"])
                    for n in frontier for x in up.get(n, [])} - included
        included |= frontier
    if with_downstream:
        frontier = set(start)
        for _ in range(depth):
            frontier = {d for n in frontier for d in down.get(n, [])} - included
            included |= frontier
    for n in list(included):  # a node's direct inputs are in the graph (as Marquez answers)
        included |= {(x["input"]["namespace"], x["input"]["dataset"], x["input"]["field"]) for x in up.get(n, [])}

    def version(ns: str, name: str) -> str | None:
        return _str((datasets.get((ns, name)) or {}).get("current_version"))

    def field_type(ns: str, name: str, field: str) -> str | None:
        facets = (datasets.get((ns, name)) or {}).get("facets") or {}
        return next((f.get("type") for f in ((facets.get("schema") or {}).get("fields") or [])
                     if isinstance(f, dict) and f.get("name") == field), None)

    nodes = {}
    for ns, name, field in included:
        inputs = [{"namespace": x["input"]["namespace"], "dataset": x["input"]["dataset"],
                   "datasetVersion": version(x["input"]["namespace"], x["input"]["dataset"]),
                   "field": x["input"]["field"], "transformationDescription": x["transformationDescription"],
                   "transformationType": x["transformationType"]}
                  for x in sorted(up.get((ns, name, field), []), key=lambda x: tuple(x["input"].values()))]
        nid = field_node_id(ns, name, field)
        nodes[(ns, name, field)] = {
            "id": nid, "type": "DATASET_FIELD",
            "data": {"namespace": ns, "dataset": name, "datasetVersion": version(ns, name), "field": field,
                     "fieldType": field_type(ns, name, field),
                     "transformationDescription": inputs[0]["transformationDescription"] if inputs else None,
                     "transformationType": inputs[0]["transformationType"] if inputs else None,
                     "inputFields": inputs},
            "inEdges": [], "outEdges": [],
        }
    for key, node in nodes.items():
        for x in up.get(key, []):
            src = (x["input"]["namespace"], x["input"]["dataset"], x["input"]["field"])
            edge = {"origin": field_node_id(*src), "destination": node["id"]}
            node["inEdges"].append(edge)
            if src in nodes:
                nodes[src]["outEdges"].append(edge)
    for node in nodes.values():
        node["inEdges"].sort(key=lambda e: e["origin"])
        node["outEdges"].sort(key=lambda e: e["destination"])
    return {"graph": sorted(nodes.values(), key=lambda n: n["id"])}


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

    @cache
    def key_index() -> KeyIndex:
        return KeyIndex(services()[0])

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
    async def ingest(headers: dict[str, str], body: bytes) -> dict:
        """``POST /api/v1/lineage`` (see :class:`IngestEndpoint`): ``{"stored": bool}``, or an
        :class:`HTTPException` saying why not."""
        settings, _, _, resolver = services()
        auth = headers.get("authorization", "")
        key = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        team = key_index().team_of(key)
        if team is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or unknown lineage ingest key")
        if headers.get("content-encoding", "").lower() == "gzip":
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
        return {"stored": stored}

    app.add_middleware(IngestEndpoint, handle=ingest)

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
            case [ns, "datasets", name, "versions"]:
                if r.dataset(vis, ns, name) is None:
                    raise HTTPException(404, f"dataset {name} not found in namespace {ns}")
                rows, total = r.dataset_versions(vis, ns, name, limit, offset)
                return {"versions": [dataset_version_json(v) for v in rows], "totalCount": total}
            case [ns, "datasets", name, "versions", version]:
                rows, _ = r.dataset_versions(vis, ns, name, 1, 0, version=_version(version))
                if not rows:
                    raise HTTPException(404, f"version {version} of dataset {name} not found in namespace {ns}")
                return dataset_version_json(rows[0])
            case [ns, "jobs", name, "versions"]:
                if r.job(vis, ns, name) is None:
                    raise HTTPException(404, f"job {name} not found in namespace {ns}")
                return {"versions": [job_version_json(v) for v in r.job_versions(vis, ns, name, limit, offset)]}
            case [ns, "jobs", name, "versions", version]:
                rows = r.job_versions(vis, ns, name, 1, 0, version=_version(version))
                if not rows:
                    raise HTTPException(404, f"version {version} of job {name} not found in namespace {ns}")
                return job_version_json(rows[0])
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

    @app.get("/api/v1/column-lineage")
    def column_lineage(vis: VisDep, nodeId: str, depth: Annotated[int, Query(ge=0, le=MAX_DEPTH)] = 20,
                       withDownstream: bool = False) -> dict:
        r = reader()
        kind, sep, rest = nodeId.partition(":")
        if kind not in ("dataset", "datasetField") or not sep:
            raise HTTPException(400, "nodeId must be dataset:<namespace>:<name> or "
                                     "datasetField:<namespace>:<name>:<field>")
        field = None
        if kind == "datasetField":
            rest, _, field = rest.rpartition(":")
        for _, ns, name in _parse_node_id(f"dataset:{rest}"):
            row = r.dataset(vis, ns, name)
            if row is None:
                continue
            edges = r.column_lineage_edges(vis)
            known = {f.get("name") for f in ((row["facets"].get("schema") or {}).get("fields") or [])
                     if isinstance(f, dict)}
            known |= {e["field"] for e in edges if (e["namespace"], e["dataset"]) == (ns, name)}
            known |= {e["input"]["field"] for e in edges if (e["input"]["namespace"], e["input"]["dataset"]) == (ns, name)}
            if field is not None and field not in known:
                raise HTTPException(404, f"field {field} of dataset {name} not found")
            start = [(ns, name, f) for f in sorted(k for k in known if k)] if field is None else [(ns, name, field)]
            names = {(e["namespace"], e["dataset"]) for e in edges} | {(e["input"]["namespace"], e["input"]["dataset"])
                                                                        for e in edges} | {(ns, name)}
            rows, _ = r.datasets(vis, None, len(names), 0, keys=sorted(names))
            return column_graph_json(edges, {(d["namespace"], d["name"]): d for d in rows}, start, depth,
                                     withDownstream)
        raise HTTPException(404, f"node {nodeId} not found")

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
INGEST_PATH = "/api/v1/lineage"


class IngestEndpoint:
    """``POST /api/v1/lineage`` as a pure ASGI middleware in front of the app's router: the
    ingest is the one hot path (every task's events, from every worker), so it is answered
    without route matching, dependency solving or response classes; every other request goes
    on to the FastAPI app. ``handle(headers, body)`` returns the JSON answer (``201``) or raises
    :class:`HTTPException` (``{"detail": ...}`` with its status, as FastAPI answers it); any
    other error goes on up to the app's server-error handling (``500``)."""

    HEADERS = frozenset({b"authorization", b"content-encoding"})

    def __init__(self, app: Any, handle: Callable) -> None:
        self.app = app
        self.handle = handle

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith(INGEST_PATH):
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        # only the two headers the ingest reads (ASGI header names are lower-case bytes)
        headers = {k.decode(): v.decode("latin-1") for k, v in scope["headers"] if k in self.HEADERS}
        try:
            answer, code = await self.handle(headers, bytes(body)), 201
        except HTTPException as e:
            answer, code = {"detail": e.detail}, e.status_code
        data = json.dumps(answer).encode()
        await send({"type": "http.response.start", "status": code,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})


class KeyIndex:
    """The team of an ingest key (PLATFORM for the platform key), looked up in one step per
    request: the keys are indexed by their SHA-256 digest, and a presented key is hashed and
    looked up by its digest. What an answer's timing could tell about is the digest, never the
    key's characters (as a comparison of the keys themselves would, which is why they were
    compared in constant time one by one before)."""

    def __init__(self, settings: Settings) -> None:
        self._teams: dict[bytes, str] = {}
        if settings.platform_key:
            self._teams[self._digest(settings.platform_key)] = PLATFORM
        for team, key in settings.ingest_keys.items():  # a team's key wins over an equal platform key
            self._teams[self._digest(key)] = team

    @staticmethod
    def _digest(key: str) -> bytes:
        return hashlib.sha256(key.encode()).digest()

    def team_of(self, key: str) -> str | None:
        return self._teams.get(self._digest(key)) if key else None


def _version(value: str) -> str:
    try:
        return str(_uuid(value))
    except ValueError:
        raise HTTPException(404, f"version {value} not found") from None


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
