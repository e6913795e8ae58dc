"""Versions, column lineage and concurrent ingest (issue 23), against a real ``lineage``
database, the real simple auth manager and, for ingest, real HTTP through the OpenLineage
client's own transport. Answers are checked against Marquez's documented shapes
(``tests/fixtures/marquez/``: its OpenAPI spec and its column-lineage node example)."""

from __future__ import annotations

import concurrent.futures
import copy
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import yaml

from lineage_explorer.store import Owner, RefusedEvent, RunEvent
from tests.lineage_explorer.conftest import team_key_for
from tests.lineage_explorer.events import NAMESPACE, events_for, three_teams
from tests.lineage_explorer.sql import rows

MARQUEZ = Path(__file__).parents[1] / "fixtures" / "marquez"
PG = "postgres://127.0.0.1:5432"
CANDIDATES = "referral.public.candidates"
MATCHES = "referral.public.matches"
ENRICHED = "looklyy.public.enriched"
NS = quote(NAMESPACE, safe="")
PGQ = quote(PG, safe="")


def marquez_schema(name: str) -> dict:
    return yaml.safe_load((MARQUEZ / "openapi.yml").read_text())["components"]["schemas"][name]


def column_lineage(fields: dict[str, list[tuple[str, str]]]) -> dict:
    """A ColumnLineageDatasetFacet: output field -> [(input table, input field)]."""
    return {"_producer": "t", "_schemaURL": "https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json",
            "fields": {out: {"inputFields": [{"namespace": PG, "name": table, "field": f, "transformations": [
                {"type": "DIRECT", "subtype": "IDENTITY", "description": "", "masking": False}]}
                for table, f in ins]} for out, ins in fields.items()}}


def day(start: datetime, dag_version: str, extra_column: bool = False) -> list[dict]:
    """One run of the three teams' DAGs, as the provider reports them: the DAG version in the
    ``airflow`` run facet, column lineage on the tables the SQL writes."""
    events = events_for(three_teams(), start)
    for e in events:
        e["run"]["facets"]["airflow"] = {"_producer": "t", "_schemaURL": "t",
                                         "dagRun": {"dag_version_id": dag_version}}
        for d in e["outputs"]:
            if d["name"] == CANDIDATES and extra_column:
                d["facets"]["schema"]["fields"].append({"name": "phone", "type": "text"})
            if d["name"] == MATCHES:
                d["facets"]["columnLineage"] = column_lineage({"candidate_id": [(CANDIDATES, "id")]})
            if d["name"] == ENRICHED:
                d["facets"]["columnLineage"] = column_lineage({"candidate_id": [(CANDIDATES, "id")],
                                                               "sku": [("looklyy.public.products", "sku")]})
    return events


FIRST = datetime(2026, 12, 1, 12, tzinfo=UTC)
SECOND = FIRST + timedelta(days=1)


def load_two_days(explorer) -> tuple[list[dict], list[dict]]:
    first, second = day(FIRST, "v-1"), day(SECOND, "v-2", extra_column=True)
    explorer.load(first + second, team_key_for)
    return first, second


def run_of(events: list[dict], job: str) -> str:
    return next(e["run"]["runId"] for e in events if e["job"]["name"] == job)


def test_dataset_versions_per_writing_run_and_schema(explorer):
    first, second = load_two_days(explorer)
    path = f"/api/v1/namespaces/{PGQ}/datasets/{quote(CANDIDATES, safe='')}"
    body = explorer.get(path + "/versions", "referral_op").json()
    writes = [v for v in body["versions"] if v["createdByRun"] is not None]
    # one version per writing run, newest first, each with its run and that run's schema
    assert [v["createdByRun"]["id"] for v in writes] == [run_of(second, "bullhorn_sync.extract"),
                                                         run_of(first, "bullhorn_sync.extract")]
    assert [[f["name"] for f in v["fields"]] for v in writes] == [["id", "name", "email", "phone"],
                                                                  ["id", "name", "email"]]
    assert len({v["version"] for v in body["versions"]}) == len(body["versions"]) == body["totalCount"]
    # a reading job's view of it: one version per schema it saw (match read the same schema twice)
    reads = [v for v in body["versions"] if v["createdByRun"] is None]
    assert len(reads) == 1 and [f["name"] for f in reads[0]["fields"]] == ["id", "name", "email"]
    # the dataset's current version is the newest; the writing run names it as its output version
    dataset = explorer.get(path, "referral_op").json()
    assert dataset["currentVersion"] == writes[0]["version"]
    run = explorer.get(f"/api/v1/jobs/runs/{run_of(second, 'bullhorn_sync.extract')}", "referral_op").json()
    assert [v["datasetVersionId"] for v in run["outputDatasetVersions"]] == [
        {"namespace": PG, "name": CANDIDATES, "version": writes[0]["version"]}]
    one = explorer.get(f"{path}/versions/{writes[1]['version']}", "referral_op").json()
    assert one == writes[1]

    # Marquez's DatasetVersion: every documented property, the required ones set
    schema = marquez_schema("DatasetVersion")
    assert set(schema["properties"]) <= set(one)
    assert all(one[k] is not None for k in schema["required"] if k != "description")
    assert set(schema["example"]) <= set(one) | {"tags"}

    # looklyy reads candidates: it sees the version its own job saw, not referral's writes
    looklyy = explorer.get(path + "/versions", "looklyy_op").json()
    assert {v["createdByRun"] is None for v in looklyy["versions"]} == {True}
    assert explorer.get(f"{path}/versions/{writes[0]['version']}", "looklyy_op").status_code == 404
    assert explorer.get(path, "looklyy_op").json()["currentVersion"] == looklyy["versions"][0]["version"]
    assert explorer.get(path + "/versions", "aurora_op").status_code == 404


def test_job_versions_follow_the_dag_version(explorer):
    first, second = load_two_days(explorer)
    path = f"/api/v1/namespaces/{NS}/jobs/bullhorn_sync.extract"
    versions = explorer.get(path + "/versions", "referral_op").json()["versions"]
    assert len(versions) == 2 and versions[0]["latestRun"]["id"] == run_of(second, "bullhorn_sync.extract")
    assert versions[1]["latestRun"]["id"] == run_of(first, "bullhorn_sync.extract")
    assert [v["facets"]["dagVersionId"] for v in versions] == ["v-2", "v-1"]
    assert versions[0]["outputs"] == [{"namespace": PG, "name": CANDIDATES}]
    job = explorer.get(path, "referral_op").json()
    assert job["currentVersion"] == versions[0]["version"]
    assert job["latestRun"]["jobVersion"] == {"namespace": NAMESPACE, "name": "bullhorn_sync.extract",
                                              "version": versions[0]["version"]}
    assert explorer.get(f"{path}/versions/{versions[1]['version']}", "referral_op").json() == versions[1]
    # Marquez's JobVersion: exactly its documented properties
    assert set(versions[0]) == set(marquez_schema("JobVersion")["properties"])
    # another team: no such job, no versions
    assert explorer.get(path + "/versions", "looklyy_op").status_code == 404
    assert explorer.get(f"{path}/versions/{versions[0]['version']}", "looklyy_op").status_code == 404
    # a replay changes no version
    explorer.load(second, team_key_for)
    assert explorer.get(path + "/versions", "referral_op").json()["versions"] == versions


def test_column_lineage_like_marquez(explorer):
    load_two_days(explorer)
    node = f"datasetField:{PG}:{MATCHES}:candidate_id"
    r = explorer.get("/api/v1/column-lineage", "referral_op", nodeId=node, depth=2)
    assert r.status_code == 200, r.text
    graph = {n["id"]: n for n in r.json()["graph"]}
    source = f"datasetField:{PG}:{CANDIDATES}:id"
    assert set(graph) == {node, source}
    edge = {"origin": source, "destination": node}
    assert graph[node]["inEdges"] == [edge] and graph[source]["outEdges"] == [edge]
    data = graph[node]["data"]
    assert data["inputFields"][0]["field"] == "id" and data["transformationType"] == "DIRECT"
    assert graph[source]["data"]["fieldType"] == "text" and graph[source]["data"]["inputFields"] == []
    # the documented node's shape (Marquez's own test resource)
    documented = json.loads((MARQUEZ / "column_lineage_node.json").read_text())
    assert set(documented) == set(graph[node]) and documented["type"] == graph[node]["type"]
    assert set(documented["data"]) <= set(data)
    assert set(documented["data"]["inputFields"][0]) <= set(data["inputFields"][0])
    # the dataset answers its column lineage too
    ds = explorer.get(f"/api/v1/namespaces/{PGQ}/datasets/{quote(MATCHES, safe='')}", "referral_op").json()
    assert ds["columnLineage"] == [{"name": "candidate_id", "inputFields": [
        {"namespace": PG, "dataset": CANDIDATES, "field": "id", "transformationDescription": None,
         "transformationType": "DIRECT"}], "transformationDescription": None, "transformationType": "DIRECT"}]

    # downstream of candidates.id: referral sees its own matches only; looklyy its enriched only
    up = f"datasetField:{PG}:{CANDIDATES}:id"
    ids = {n["id"] for n in explorer.get("/api/v1/column-lineage", "referral_op", nodeId=up,
                                         withDownstream="true").json()["graph"]}
    assert ids == {up, node}
    ids = {n["id"] for n in explorer.get("/api/v1/column-lineage", "looklyy_op", nodeId=up,
                                         withDownstream="true").json()["graph"]}
    assert ids == {up, f"datasetField:{PG}:{ENRICHED}:candidate_id"}
    # a whole dataset: every field of enriched and their inputs
    ids = {n["id"] for n in explorer.get("/api/v1/column-lineage", "looklyy_op",
                                         nodeId=f"dataset:{PG}:{ENRICHED}").json()["graph"]}
    assert ids == {f"datasetField:{PG}:{ENRICHED}:{f}" for f in ("sku", "candidate_id")} | {
        up, f"datasetField:{PG}:looklyy.public.products:sku"}
    assert explorer.get("/api/v1/column-lineage", "looklyy_op", nodeId=node).status_code == 404
    assert explorer.get("/api/v1/column-lineage", "referral_op", nodeId=node + "x").status_code == 404


def test_ingest_batch_is_sequential_ingest(store, lineage_dsn, pg):
    """A batch stores what one event per transaction stores: the same rows, replays answered
    False, a claim on another job's run refused with nothing of it stored."""
    from lineage_explorer.store import LineageStore

    events = day(FIRST, "v-1") + day(SECOND, "v-2", extra_column=True)
    hijack = copy.deepcopy(events[1])
    hijack["job"]["name"] = "looklyy_crawler.enrich"
    owner = {d.dag_id: d.team for d in three_teams()}
    items = [(RunEvent.parse(e), Owner(e["job"]["name"].split(".")[0], owner[e["job"]["name"].split(".")[0]]), None)
             for e in [*events, events[0], hijack]]
    results = store.ingest_batch(items)
    assert results[:len(events)] == [True] * len(events) and results[len(events)] is False
    assert isinstance(results[-1], RefusedEvent) and results[-1].status == 409

    other_dsn = lineage_dsn.rsplit("/", 1)[0] + "/" + lineage_dsn.rsplit("/", 1)[1] + "_seq"
    pg.ensure_database(other_dsn.rsplit("/", 1)[1], "lineage", other_dsn.split(":")[2].split("@")[0])
    sequential = LineageStore(other_dsn)
    try:
        for item in items[:-1]:
            sequential.ingest(*item)
        assert_same_store(lineage_dsn, other_dsn)
    finally:
        sequential.close()
        pg.drop_database(other_dsn.rsplit("/", 1)[1])


# every column ingest writes, per table
STORED = {
    "lineage_event": "run_id, event_type, event_time, job_namespace, job_name, team, payload",
    "lineage_run": "run_id, job_namespace, job_name, state, state_time, nominal_start_time, nominal_end_time,"
                   " started_at, ended_at, facets, inputs, outputs, job_version, input_versions, output_versions,"
                   " created_at, updated_at",
    "lineage_job": "namespace, name, dag_id, team, parent_job_name, description, location, facets, current_version,"
                   " created_at, updated_at",
    "lineage_dataset": "namespace, name, created_at, updated_at",
    "lineage_dataset_facet": "dataset_namespace, dataset_name, job_namespace, job_name, facets, created_at, updated_at",
    "lineage_dataset_version": "dataset_namespace, dataset_name, version, job_namespace, job_name, run_id, direction,"
                               " fields, facets, lifecycle_state, created_at, updated_at",
    "lineage_job_version": "namespace, name, version, location, facets, created_at, updated_at",
    "lineage_edge": "job_namespace, job_name, direction, dataset_namespace, dataset_name, updated_at",
}


def assert_same_store(dsn: str, other_dsn: str) -> None:
    for table, cols in STORED.items():
        sql = f"SELECT {cols} FROM {table} ORDER BY {', '.join(str(i + 1) for i in range(cols.count(',') + 1))}"
        assert rows(dsn, sql) == rows(other_dsn, sql), table


def assert_same_as_one_at_a_time(lineage_dsn: str, pg, items: list) -> None:
    """The same events stored one at a time (``LineageStore.ingest``, refused ones skipped) into
    a second store give the same rows in every table as ``lineage_dsn`` holds."""
    from lineage_explorer.store import LineageStore

    other_dsn = lineage_dsn + "_seq"
    pg.ensure_database(other_dsn.rsplit("/", 1)[1], "lineage", other_dsn.split(":")[2].split("@")[0])
    sequential = LineageStore(other_dsn)
    try:
        for args in items:
            try:
                sequential.ingest(*args)
            except RefusedEvent:
                pass
        assert_same_store(lineage_dsn, other_dsn)
    finally:
        sequential.close()
        pg.drop_database(other_dsn.rsplit("/", 1)[1])


def test_set_based_batch_is_one_event_at_a_time(store, lineage_dsn, pg):
    """The group commit's set-based call (migration 0004) stores what one event per
    transaction stores, every column of every table: batches with team keys and parent runs,
    a run's START and COMPLETE in one batch, a replay inside a batch and of an earlier batch,
    a lifecycle change and a new schema; a batch with an event older than what is stored, and
    one with a run of another job, go one event at a time, with the same result."""

    owner = {d.dag_id: d.team for d in three_teams()}

    def item(e: dict) -> tuple[RunEvent, Owner, str | None]:
        dag = e["job"]["name"].split(".")[0]
        return RunEvent.parse(e, raw=json.dumps(e)), Owner(dag, owner[dag]), owner[dag] if "." in e["job"]["name"] else None

    first, second = day(FIRST, "v-1"), day(SECOND, "v-2", extra_column=True)
    for e in second:
        for d in e["outputs"]:
            if d["name"] == CANDIDATES:
                d["facets"]["lifecycleStateChange"] = {"_producer": "t", "_schemaURL": "t",
                                                       "lifecycleStateChange": "OVERWRITE"}
    late = copy.deepcopy(first[3])
    late["eventType"], late["eventTime"] = "RUNNING", (FIRST + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    hijack = copy.deepcopy(second[5])
    hijack["job"]["name"] = next(e["job"]["name"] for e in first if e["job"]["name"] != hijack["job"]["name"])
    batches = [first[:3] + [first[2]] + first[3:7], first[7:], second[:9], [first[-1]] + second[9:],
               [late, *second[:3]], [hijack, *second[:3]]]
    results = [store.ingest_batch([item(e) for e in b]) for b in batches]
    assert store.batches_set_based == 4 and store.batches_one_at_a_time == 2
    assert results[0] == [True] * 3 + [False] + [True] * 4 and results[3] == [False] + [True] * (len(second) - 9)
    assert results[4] == [True, False, False, False]
    assert isinstance(results[5][0], RefusedEvent) and results[5][1:] == [False, False, False]

    assert_same_as_one_at_a_time(lineage_dsn, pg, [item(e) for b in batches for e in b])


def test_late_events_inside_a_batch_go_one_at_a_time_between_set_based_calls(store, lineage_dsn, pg):
    """Runs of each DAG an hour apart reported at once (as concurrent runs, a backfill or
    workers catching up report them): the middle hour's stored first, then one batch with the
    latest hour's events interleaved with the earliest's. Only the late events (older than their
    job's newest, stored or earlier in the batch) go one at a time, the runs of events between
    them set-based; every column of every table is what storing one event after the other gives."""

    owner = {d.dag_id: d.team for d in three_teams()}

    def item(e: dict) -> tuple[RunEvent, Owner, str | None]:
        dag = e["job"]["name"].split(".")[0]
        return RunEvent.parse(e, raw=json.dumps(e)), Owner(dag, owner[dag]), owner[dag] if "." in e["job"]["name"] else None

    earlier, middle, later = (day(FIRST + timedelta(hours=h), "v-1") for h in range(3))
    mixed = []  # four events of the latest runs, then two of the earliest, ...
    for i in range(0, max(len(later), 2 * len(earlier)), 4):
        mixed += later[i:i + 4] + earlier[i // 2:i // 2 + 2]
    batches = [middle, mixed]
    late = sum(1 for i, e in enumerate(mixed) if any(
        x["job"]["name"] == e["job"]["name"] and x["eventTime"] > e["eventTime"] for x in middle + mixed[:i]))
    assert late == len(earlier)
    results = [store.ingest_batch([item(e) for e in b]) for b in batches]
    assert results == [[True] * len(b) for b in batches]
    assert (store.batches_set_based, store.batches_one_at_a_time) == (2, 0)
    assert store.events_one_at_a_time == late

    assert_same_as_one_at_a_time(lineage_dsn, pg, [item(e) for b in batches for e in b])


def test_concurrent_workers_over_http(explorer, standin, lineage_dsn, monkeypatch):
    """Eight workers post whole runs at once through the provider's http transport with their
    team's keys (the endpoint's group commit stores them together, set-based whatever a batch's
    size here, so that the set-based path is taken however the requests happen to arrive; one
    at a time when a batch holds events older than stored rows): every event
    stored once, every run's state that of its last event, every answer 201."""
    from openlineage.client.transport.http import HttpConfig, HttpTransport

    from lineage_explorer.config import transport_config
    from lineage_explorer.store import LineageStore

    monkeypatch.setattr(LineageStore, "SET_BASED_FROM", 1)
    server = standin(explorer.app)
    events = [e for i in range(12) for e in day(FIRST + timedelta(hours=i), f"v-{i}")]
    runs: dict[str, list[dict]] = {}
    for e in events:  # a DAG run with its tasks' runs goes to one worker, in order
        root = (e["run"]["facets"].get("parent") or {}).get("run", {}).get("runId") or e["run"]["runId"]
        runs.setdefault(root, []).append(e)
    shares = [sum(list(runs.values())[i::8], []) for i in range(8)]
    start = threading.Barrier(8)

    def worker(share: list[dict]) -> list[int]:
        transports: dict[str, HttpTransport] = {}
        start.wait()
        codes = []
        for e in share:
            key = team_key_for(e)
            t = transports.setdefault(key, HttpTransport(HttpConfig.from_dict(transport_config(server.url, key))))
            codes.append(t.emit(e).status_code)
        return codes

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = [c for share in pool.map(worker, shares) for c in share]
    assert codes == [201] * len(events)
    last: dict[str, tuple[datetime, str]] = {}
    for e in events:
        t = datetime.fromisoformat(e["eventTime"].replace("Z", "+00:00"))
        if e["run"]["runId"] not in last or t >= last[e["run"]["runId"]][0]:
            last[e["run"]["runId"]] = (t, {"START": "RUNNING", "COMPLETE": "COMPLETED", "FAIL": "FAILED"}[e["eventType"]])
    assert rows(lineage_dsn, "SELECT count(*), count(DISTINCT (run_id, event_type, event_time)) FROM lineage_event") == [
        (len(events), len(events))]
    stored = {r[0]: (r[2], r[1]) for r in rows(lineage_dsn, "SELECT run_id::text, state, state_time FROM lineage_run")}
    assert stored == last
    assert explorer.sub.state.services()[1].batches_set_based > 0


def test_ingest_queue_survives_requests_that_went_away(store, lineage_dsn):
    """A request whose future is cancelled before its batch is taken is not stored; the writer
    goes on, every other request gets its result, and stop() stores what is queued first."""
    from lineage_explorer.store import IngestQueue

    queue = IngestQueue(store, max_batch=5)
    owner = {d.dag_id: d.team for d in three_teams()}
    events = [RunEvent.parse(e) for e in day(FIRST, "v-1")]
    futures = [queue.submit(ev, Owner(ev.job_name.split(".")[0], owner[ev.job_name.split(".")[0]]), None)
               for ev in events]
    cancelled = {i for i, f in enumerate(futures) if i % 3 == 1 and f.cancel()}
    queue.stop()
    kept = [i for i in range(len(events)) if i not in cancelled]
    assert [futures[i].result(timeout=30) for i in kept] == [True] * len(kept)
    assert rows(lineage_dsn, "SELECT count(*) FROM lineage_event") == [(len(kept),)]
