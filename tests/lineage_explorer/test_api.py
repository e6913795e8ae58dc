"""The lineage explorer's API in-process: the plugin app mounted like the api-server does,
Airflow's simple auth manager (real JWTs from its ``POST /auth/token``), the real metadata
database (teams, bundles, DAGs) and a real ``lineage`` database."""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import pytest
import requests

from tests.lineage_explorer.conftest import PLATFORM_KEY, TEAM_KEYS, team_key_for
from tests.lineage_explorer.events import NAMESPACE, events_for, three_teams

PG = "postgres://127.0.0.1:5432"
CANDIDATES = f"dataset:{PG}:referral.public.candidates"


def graph_of(explorer, user: str, node: str, depth: int = 5) -> dict:
    r = explorer.get("/api/v1/lineage", user, nodeId=node, depth=depth)
    assert r.status_code == 200, r.text
    return r.json()


def shape(graph: dict) -> tuple[set, set]:
    """(node ids, edges as (origin, destination))."""
    nodes = {n["id"] for n in graph["graph"]}
    edges = {(e["origin"], e["destination"]) for n in graph["graph"] for e in n["outEdges"]}
    assert edges == {(e["origin"], e["destination"]) for n in graph["graph"] for e in n["inEdges"]}
    return nodes, edges


def facet_jobs(dataset: dict) -> set[str]:
    """The jobs whose facets a Dataset shows."""
    return {e["job"]["name"] for e in dataset["facetsByJob"]}


def job(name: str) -> str:
    return f"job:{NAMESPACE}:{name}"


REFERRAL_EDGES = {
    ("dataset:https://bullhorn:Candidate", job("bullhorn_sync.extract")),
    (job("bullhorn_sync.extract"), CANDIDATES),
    (CANDIDATES, job("bullhorn_sync.match")),
    (job("bullhorn_sync.match"), f"dataset:{PG}:referral.public.matches"),
}
LOOKLYY_EDGES = {
    ("dataset:https://looklyy-api:products", job("looklyy_crawler.crawl")),
    (job("looklyy_crawler.crawl"), f"dataset:{PG}:looklyy.public.products"),
    (f"dataset:{PG}:looklyy.public.products", job("looklyy_crawler.enrich")),
    (CANDIDATES, job("looklyy_crawler.enrich")),
    (job("looklyy_crawler.enrich"), f"dataset:{PG}:looklyy.public.enriched"),
}


def nodes_of(edges: set) -> set:
    return {x for e in edges for x in e}


def test_same_events_three_users_three_graphs(explorer):
    explorer.load(events_for(three_teams()), team_key_for)

    # referral_op: its two jobs and their datasets; nothing says that looklyy reads candidates
    g = graph_of(explorer, "referral_op", CANDIDATES)
    assert shape(g) == (nodes_of(REFERRAL_EDGES), REFERRAL_EDGES)
    assert "looklyy" not in json.dumps(g)
    node = next(n for n in g["graph"] if n["id"] == CANDIDATES)
    assert facet_jobs(node["data"]) == {"bullhorn_sync.extract", "bullhorn_sync.match"}

    # looklyy_op, same node: its jobs only, no referral job or run, only its own job's facets
    g = graph_of(explorer, "looklyy_op", CANDIDATES)
    assert shape(g) == (nodes_of(LOOKLYY_EDGES), LOOKLYY_EDGES)
    assert "bullhorn_sync" not in json.dumps(g)

    # admin: both teams' lineage joined at candidates, every job's facets
    g = graph_of(explorer, "admin", CANDIDATES)
    assert shape(g) == (nodes_of(REFERRAL_EDGES | LOOKLYY_EDGES), REFERRAL_EDGES | LOOKLYY_EDGES)
    node = next(n for n in g["graph"] if n["id"] == CANDIDATES)
    assert facet_jobs(node["data"]) == {"bullhorn_sync.extract", "bullhorn_sync.match", "looklyy_crawler.enrich"}

    # depth counts job hops: from matches at depth 0 admin sees only the writer and its datasets
    g = graph_of(explorer, "admin", f"dataset:{PG}:referral.public.matches", depth=0)
    assert {n["id"] for n in g["graph"] if n["type"] == "JOB"} == {job("bullhorn_sync.match")}
    g = graph_of(explorer, "admin", f"dataset:{PG}:referral.public.matches", depth=1)
    assert {n["id"] for n in g["graph"] if n["type"] == "JOB"} == {
        job("bullhorn_sync.match"), job("bullhorn_sync.extract"), job("looklyy_crawler.enrich")}

    # a node the user may not see does not exist for it
    assert explorer.get("/api/v1/lineage", "referral_op", nodeId=job("looklyy_crawler.enrich")).status_code == 404
    assert explorer.get("/api/v1/lineage", "referral_op", nodeId="dataset:https://looklyy-api:products").status_code == 404
    # namespace and name as separate parameters
    r = explorer.get("/api/v1/lineage", "referral_op", type="dataset", namespace=PG, name="referral.public.candidates", depth=5)
    assert shape(r.json()) == (nodes_of(REFERRAL_EDGES), REFERRAL_EDGES)


def test_marquez_calls_per_team(explorer):
    explorer.load(events_for(three_teams()), team_key_for)
    ns_path = quote(NAMESPACE, safe="")
    pg_path = quote(PG, safe="")

    names = {n["name"] for n in explorer.get("/api/v1/namespaces", "referral_op").json()["namespaces"]}
    assert names == {NAMESPACE, PG, "https://bullhorn"}
    names = {n["name"] for n in explorer.get("/api/v1/namespaces", "admin").json()["namespaces"]}
    assert names == {NAMESPACE, PG, "https://bullhorn", "https://looklyy-api", "kafka://broker:9092", "redis://cache:6379"}
    assert explorer.get(f"/api/v1/namespaces/{pg_path}", "admin").json()["name"] == PG

    jobs = explorer.get(f"/api/v1/namespaces/{ns_path}/jobs", "referral_op").json()
    assert jobs["totalCount"] == 3
    assert [j["name"] for j in jobs["jobs"]] == ["bullhorn_sync", "bullhorn_sync.extract", "bullhorn_sync.match"]
    assert explorer.get("/api/v1/jobs", "admin").json()["totalCount"] == 8

    j = explorer.get(f"/api/v1/namespaces/{ns_path}/jobs/bullhorn_sync.match", "referral_op").json()
    assert j["id"] == {"namespace": NAMESPACE, "name": "bullhorn_sync.match"}
    assert (j["parentJobName"], j["simpleName"], j["type"]) == ("bullhorn_sync", "match", "BATCH")
    assert j["inputs"] == [{"namespace": PG, "name": "referral.public.candidates"}]
    assert j["outputs"] == [{"namespace": PG, "name": "referral.public.matches"}]
    assert j["latestRun"]["state"] == "COMPLETED" and j["latestRun"]["durationMs"] == 2000
    assert j["facets"]["sql"]["query"].startswith("INSERT INTO matches")
    assert explorer.get(f"/api/v1/namespaces/{ns_path}/jobs/looklyy_crawler.enrich", "referral_op").status_code == 404

    runs = explorer.get(f"/api/v1/namespaces/{ns_path}/jobs/bullhorn_sync.match/runs", "referral_op").json()
    assert runs["totalCount"] == 1
    run = runs["runs"][0]
    assert run["state"] == "COMPLETED"
    assert run["inputDatasetVersions"][0]["datasetVersionId"]["name"] == "referral.public.candidates"
    assert explorer.get(f"/api/v1/jobs/runs/{run['id']}", "referral_op").json()["id"] == run["id"]
    assert explorer.get(f"/api/v1/jobs/runs/{run['id']}", "looklyy_op").status_code == 404
    assert explorer.get(f"/api/v1/namespaces/{ns_path}/jobs/bullhorn_sync.match/runs", "looklyy_op").status_code == 404

    ds = explorer.get(f"/api/v1/namespaces/{pg_path}/datasets", "looklyy_op").json()
    assert [d["name"] for d in ds["datasets"]] == [
        "looklyy.public.enriched", "looklyy.public.products", "referral.public.candidates"]
    assert [facet_jobs(d) for d in ds["datasets"]] == [
        {"looklyy_crawler.enrich"}, {"looklyy_crawler.crawl", "looklyy_crawler.enrich"}, {"looklyy_crawler.enrich"}]
    d = explorer.get(f"/api/v1/namespaces/{pg_path}/datasets/referral.public.candidates", "looklyy_op").json()
    assert [f["name"] for f in d["fields"]] == ["id", "name", "email"]  # as looklyy's own event reported them
    assert d["sourceName"] == PG and "boundary" not in d
    assert explorer.get(f"/api/v1/namespaces/{pg_path}/datasets/referral.public.matches", "looklyy_op").status_code == 404

    found = explorer.get("/api/v1/search", "looklyy_op", q="public").json()
    assert [(x["type"], x["name"]) for x in found["results"]] == [
        ("DATASET", "looklyy.public.enriched"), ("DATASET", "looklyy.public.products"),
        ("DATASET", "referral.public.candidates")]
    found = explorer.get("/api/v1/search", "admin", q="match", filter="JOB").json()
    assert found["results"] == [{"type": "JOB", "name": "bullhorn_sync.match", "updatedAt": found["results"][0]["updatedAt"],
                                 "namespace": NAMESPACE, "nodeId": job("bullhorn_sync.match")}]
    assert explorer.get("/api/v1/search", "looklyy_op", q="match").json()["totalCount"] == 0


def test_anonymous_is_refused(explorer):
    explorer.load(events_for(three_teams()), team_key_for)
    for path in ("/api/v1/namespaces", "/api/v1/jobs", "/api/v1/search?q=a", f"/api/v1/lineage?nodeId={quote(CANDIDATES)}"):
        assert explorer.client.get(explorer.prefix + path).status_code == 401, path
    r = explorer.client.get(explorer.prefix + "/api/v1/namespaces", headers={"Authorization": "Bearer forged"})
    assert r.status_code in (401, 403)


def test_ingest_keys_are_scoped_to_their_team(explorer):
    events = events_for(three_teams())
    enrich = next(e for e in events if e["job"]["name"] == "looklyy_crawler.enrich")
    # referral's worker may not write looklyy's lineage
    r = explorer.post_event(enrich, TEAM_KEYS["referral"])
    assert r.status_code == 403 and "referral" in r.json()["detail"]
    # nor a DAG-level event of its own DAG under another namespace, nor an unknown job
    other_ns = json.loads(json.dumps(next(e for e in events if e["job"]["name"] == "bullhorn_sync.extract")))
    other_ns["job"]["namespace"] = "someone-else"
    assert explorer.post_event(other_ns, TEAM_KEYS["referral"]).status_code == 403
    unknown = json.loads(json.dumps(enrich))
    unknown["job"]["name"] = "no_such_dag.task"
    unknown["run"]["runId"] = str(uuid.uuid4())
    assert explorer.post_event(unknown, TEAM_KEYS["looklyy"]).status_code == 403
    # no key, a wrong key: 401; not a run event: 422
    assert explorer.post_event(enrich, None).status_code == 401
    assert explorer.post_event(enrich, "guess").status_code == 401
    assert explorer.post_event({"eventType": "START"}, TEAM_KEYS["looklyy"]).status_code == 422
    # nothing of the refused events was stored
    assert explorer.get("/api/v1/jobs", "admin").json()["totalCount"] == 0
    # the right team's key and the platform key are accepted
    assert explorer.post_event(enrich, TEAM_KEYS["looklyy"]).status_code == 201
    assert explorer.post_event(unknown, PLATFORM_KEY).status_code == 201
    assert {j["name"]: (j["dagId"], j["team"]) for j in explorer.get("/api/v1/jobs", "admin").json()["jobs"]} == {
        "looklyy_crawler.enrich": ("looklyy_crawler", "looklyy"), "no_such_dag.task": (None, None)}


def test_ingest_replay_is_idempotent(explorer):
    events = events_for(three_teams())
    explorer.load(events, team_key_for)
    before = graph_of(explorer, "admin", CANDIDATES)
    runs_before = explorer.get(f"/api/v1/namespaces/{quote(NAMESPACE, safe='')}/jobs/bullhorn_sync.match/runs", "admin").json()
    for e in events:
        r = explorer.post_event(e, team_key_for(e))
        assert r.status_code == 201 and r.json() == {"stored": False}
    assert graph_of(explorer, "admin", CANDIDATES) == before
    assert explorer.get(f"/api/v1/namespaces/{quote(NAMESPACE, safe='')}/jobs/bullhorn_sync.match/runs", "admin").json() == runs_before


def test_provider_http_transport_reaches_the_endpoint(explorer, standin):
    """The OpenLineage client's own ``http`` transport, configured as the workers are
    (``{"type": "http", "url", "endpoint", "auth": {"type": "api_key", "apiKey"}}``),
    against the app served over real HTTP."""
    from openlineage.client.transport.http import HttpConfig, HttpTransport

    from lineage_explorer.config import transport_config

    server = standin(explorer.app)
    cfg = transport_config(server.url, TEAM_KEYS["referral"])
    assert cfg["auth"] == {"type": "api_key", "apiKey": TEAM_KEYS["referral"]}
    event = next(e for e in events_for(three_teams()) if e["job"]["name"] == "bullhorn_sync.extract")
    assert HttpTransport(HttpConfig.from_dict(cfg)).emit(_client_event(event)).status_code == 201
    j = explorer.get(f"/api/v1/namespaces/{quote(NAMESPACE, safe='')}/jobs/bullhorn_sync.extract", "referral_op").json()
    assert j["latestRun"]["state"] == "RUNNING"
    # another team's key through the same transport is refused
    looklyy = HttpTransport(HttpConfig.from_dict(transport_config(server.url, TEAM_KEYS["looklyy"])))
    with pytest.raises(requests.HTTPError, match="403"):
        looklyy.emit(_client_event(event))


def _client_event(event: dict):
    """The dict as the openlineage client's RunEvent (what the provider hands its transport)."""
    from openlineage.client.event_v2 import InputDataset, Job, Run, RunEvent, RunState

    return RunEvent(
        eventType=RunState(event["eventType"]), eventTime=event["eventTime"],
        run=Run(runId=event["run"]["runId"]), job=Job(namespace=event["job"]["namespace"], name=event["job"]["name"]),
        producer=event["producer"], inputs=[InputDataset(namespace=d["namespace"], name=d["name"]) for d in event["inputs"]],
    )
