"""Lineage integrity between teams (issue 22, item 3): what a team can do to another team's
lineage with its own ingest key, through the explorer's HTTP API on the real stores.

looklyy (the attacker) holds its own key; referral's runs and datasets are stored first by
referral's own key (and the platform key, for DAG-level events). Each attack must leave
referral's view exactly as it was and show looklyy nothing of referral's:

- (a) an event of looklyy's own job carrying a run id of referral's -> 409, nothing stored;
- (b) an event of looklyy's own job naming referral's dataset with facets -> stored for
  looklyy's job only; referral never sees those facets;
- (c) looklyy's view of referral's dataset after it named it: only looklyy's own facets and
  times, no sign that referral uses it;
- parent/root run facets pointing at referral's runs or jobs -> refused, nothing stored.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import psycopg2
import pytest

from tests.lineage_explorer.conftest import PLATFORM_KEY, TEAM_KEYS, team_key_for
from tests.lineage_explorer.events import NAMESPACE, PRODUCER, SCHEMA, events_for, three_teams

PG = "postgres://127.0.0.1:5432"
NS = quote(NAMESPACE, safe="")
ATTACKER, VICTIM = "looklyy", "referral"
ATTACKER_JOB = "looklyy_crawler.enrich"  # a job of the attacker's own DAG: its key may report it
LATER = datetime(2026, 12, 2, tzinfo=UTC)  # after every stored event: the latest event would win
FORGED_SCHEMA = {"schema": {"_producer": PRODUCER, "_schemaURL": "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json",
                            "fields": [{"name": "forged_column", "type": "text"}]}}
FORGED_COLUMN_LINEAGE = {"columnLineage": {
    "_producer": PRODUCER, "_schemaURL": "https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json",
    "fields": {"score": {"inputFields": [{"namespace": PG, "name": "looklyy.public.products", "field": "sku"}]}}}}


def table(name: str) -> dict:
    return {"namespace": PG, "name": name}


def event(job: str, run_id: str | None = None, *, kind: str = "COMPLETE", t: datetime = LATER,
          inputs=(), outputs=(), run_facets: dict | None = None) -> dict:
    return {
        "eventTime": t.isoformat().replace("+00:00", "Z"), "eventType": kind, "producer": PRODUCER, "schemaURL": SCHEMA,
        "run": {"runId": run_id or str(uuid.uuid4()), "facets": run_facets or {}},
        "job": {"namespace": NAMESPACE, "name": job, "facets": {}},
        "inputs": list(inputs), "outputs": list(outputs),
    }


def parent(run_id: str, job: str, root: tuple[str, str] | None = None) -> dict:
    facet = {"_producer": PRODUCER, "_schemaURL": "https://openlineage.io/spec/facets/1-1-0/ParentRunFacet.json",
             "run": {"runId": run_id}, "job": {"namespace": NAMESPACE, "name": job}}
    if root:
        facet["root"] = {"run": {"runId": root[0]}, "job": {"namespace": NAMESPACE, "name": root[1]}}
    return {"parent": facet}


def stored(dsn: str) -> dict[str, int]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            out = {}
            for t in ("lineage_event", "lineage_job", "lineage_run", "lineage_edge", "lineage_dataset"):
                cur.execute(f"SELECT count(*) FROM {t}")
                out[t] = cur.fetchone()[0]
            return out
    finally:
        conn.close()


def run_id_of(explorer, job: str) -> str:
    runs = explorer.get(f"/api/v1/namespaces/{NS}/jobs/{job}/runs", "admin").json()["runs"]
    assert len(runs) == 1, runs
    return runs[0]["id"]


def victim_view(explorer) -> dict:
    """Everything referral_op sees of its lineage (jobs, their runs, datasets, graph)."""
    user = f"{VICTIM}_op"
    jobs = explorer.get("/api/v1/jobs", user).json()
    return {
        "jobs": jobs,
        "runs": {j["name"]: explorer.get(f"/api/v1/namespaces/{NS}/jobs/{j['name']}/runs", user).json()
                 for j in jobs["jobs"]},
        "datasets": explorer.get(f"/api/v1/namespaces/{quote(PG, safe='')}/datasets", user).json(),
        "graph": explorer.get("/api/v1/lineage", user, nodeId=f"dataset:{PG}:referral.public.candidates", depth=5).json(),
    }


@pytest.fixture
def loaded(explorer):
    explorer.load(events_for(three_teams()), team_key_for)
    return explorer


# -- (a) another team's run id under one's own job ------------------------------------------
@pytest.mark.parametrize("victim_job", ["bullhorn_sync.match", "bullhorn_sync"])
def test_a_another_teams_run_id_is_refused(loaded, lineage_dsn, victim_job):
    """A task run's (and a DAG run's) id of referral's, in an event of looklyy's own job that
    would fail it: refused, and referral's run is as it was."""
    explorer = loaded
    victim_run = run_id_of(explorer, victim_job)
    before, counts = victim_view(explorer), stored(lineage_dsn)
    attack = event(ATTACKER_JOB, victim_run, kind="FAIL", outputs=[table("looklyy.public.enriched")],
                   run_facets={"errorMessage": {"_producer": PRODUCER, "_schemaURL": "x", "message": "forged",
                                                "programmingLanguage": "python"}})
    r = explorer.post_event(attack, TEAM_KEYS[ATTACKER])
    assert victim_view(explorer) == before  # the attack changed nothing referral sees ...
    assert explorer.get(f"/api/v1/jobs/runs/{victim_run}", "admin").json()["jobVersion"]["name"] == victim_job
    assert stored(lineage_dsn) == counts  # ... nor anything at all
    assert r.status_code == 409, r.text  # ... because it was refused, saying why
    assert "already stored for another job" in r.json()["detail"]
    assert victim_job not in r.text  # the answer names no job of another team
    # the platform key may not move a run to another job either
    assert explorer.post_event(attack, PLATFORM_KEY).status_code == 409
    assert stored(lineage_dsn) == counts


# -- (b) facets written onto another team's dataset -----------------------------------------
@pytest.mark.parametrize("direction", ["outputs", "inputs"])
def test_b_facets_on_another_teams_dataset_stay_with_their_job(loaded, lineage_dsn, direction):
    """looklyy's own job names referral's matches table (never touched by looklyy) with a
    forged schema and column lineage: referral sees exactly what it saw before."""
    explorer = loaded
    before = victim_view(explorer)
    io_facets = "outputFacets" if direction == "outputs" else "inputFacets"
    matches = {**table("referral.public.matches"), "facets": FORGED_SCHEMA, io_facets: FORGED_COLUMN_LINEAGE}
    r = explorer.post_event(event(ATTACKER_JOB, **{direction: [matches]}), TEAM_KEYS[ATTACKER])
    after = victim_view(explorer)
    assert "forged" not in json.dumps(after)
    assert after == before
    d = explorer.get(f"/api/v1/namespaces/{quote(PG, safe='')}/datasets/referral.public.matches", f"{VICTIM}_op").json()
    assert [f["name"] for f in d["fields"]] == ["candidate_id", "job_id", "score"]
    # the event itself is looklyy's to report: stored, under looklyy's job only
    assert r.status_code == 201, r.text
    admin = explorer.get(f"/api/v1/namespaces/{quote(PG, safe='')}/datasets/referral.public.matches", "admin").json()
    by_job = {e["job"]["name"]: e["facets"] for e in admin["facetsByJob"]}
    assert set(by_job) == {"bullhorn_sync.match", ATTACKER_JOB}
    assert by_job[ATTACKER_JOB]["schema"]["fields"] == [{"name": "forged_column", "type": "text"}]
    assert "columnLineage" in by_job[ATTACKER_JOB] and "columnLineage" not in by_job["bullhorn_sync.match"]
    assert [f["name"] for f in by_job["bullhorn_sync.match"]["schema"]["fields"]] == ["candidate_id", "job_id", "score"]


# -- (c) what naming another team's dataset shows the attacker -------------------------------
def test_c_naming_another_teams_dataset_reveals_nothing_of_it(loaded):
    """After its own job names referral's matches table, looklyy sees that table only as its
    own event reported it: no schema or source facet of referral's, its own event's time, no
    flag or job saying that another team uses it."""
    explorer = loaded
    user = f"{ATTACKER}_op"
    t = LATER + timedelta(hours=1)
    # a table it has not named does not exist for it
    assert explorer.get(f"/api/v1/namespaces/{quote(PG, safe='')}/datasets/referral.public.matches", user).status_code == 404
    assert explorer.post_event(event(ATTACKER_JOB, inputs=[table("referral.public.matches")], t=t),
                               TEAM_KEYS[ATTACKER]).status_code == 201
    d = explorer.get(f"/api/v1/namespaces/{quote(PG, safe='')}/datasets/referral.public.matches", user).json()
    assert not d.get("boundary")
    assert d["fields"] == [] and d["facets"] == {}
    assert d["createdAt"] == d["updatedAt"] == t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    g = explorer.get("/api/v1/lineage", user, nodeId=f"dataset:{PG}:referral.public.matches", depth=5).json()
    assert not any(n.get("boundary") for n in g["graph"])
    assert "bullhorn_sync" not in json.dumps(g)
    node = next(n for n in g["graph"] if n["id"] == f"dataset:{PG}:referral.public.matches")
    assert node["data"]["facets"] == {} and node["inEdges"] == []  # nobody writes it, as far as looklyy knows
    assert {e["destination"] for e in node["outEdges"]} == {f"job:{NAMESPACE}:{ATTACKER_JOB}"}
    listed = explorer.get(f"/api/v1/namespaces/{quote(PG, safe='')}/datasets", user).json()["datasets"]
    assert not any(x.get("boundary") for x in listed)
    assert "candidate_id" not in json.dumps([x for x in listed if x["name"] == "referral.public.matches"])


# -- parent and root run facets -------------------------------------------------------------
@pytest.mark.parametrize("how", ["parent run and job of the other team", "parent run of the other team, own job",
                                 "root run and job of the other team", "root run of the other team, own job",
                                 "parent run of the other team, a job in another namespace"])
def test_parent_run_of_another_team_does_not_attach(loaded, lineage_dsn, how):
    explorer = loaded
    victim_dag_run = run_id_of(explorer, "bullhorn_sync")
    own_dag_run = run_id_of(explorer, "looklyy_crawler")
    facets = {
        "parent run and job of the other team": parent(victim_dag_run, "bullhorn_sync"),
        "parent run of the other team, own job": parent(victim_dag_run, "looklyy_crawler"),
        "root run and job of the other team": parent(own_dag_run, "looklyy_crawler", root=(victim_dag_run, "bullhorn_sync")),
        "root run of the other team, own job": parent(own_dag_run, "looklyy_crawler", root=(victim_dag_run, "looklyy_crawler")),
        "parent run of the other team, a job in another namespace": parent(victim_dag_run, "bullhorn_sync"),
    }[how]
    if how.endswith("another namespace"):
        facets["parent"]["job"]["namespace"] = "elsewhere"
    before, counts = victim_view(explorer), stored(lineage_dsn)
    job_before = explorer.get(f"/api/v1/namespaces/{NS}/jobs/{ATTACKER_JOB}", "admin").json()
    r = explorer.post_event(event(ATTACKER_JOB, run_facets=facets), TEAM_KEYS[ATTACKER])
    job_after = explorer.get(f"/api/v1/namespaces/{NS}/jobs/{ATTACKER_JOB}", "admin").json()
    assert job_after["parentJobName"] == "looklyy_crawler"
    assert stored(lineage_dsn) == counts, "the event attached to another team's run was stored"
    assert job_after == job_before and victim_view(explorer) == before
    assert r.status_code in (403, 409), r.text
    assert "parent" in r.json()["detail"]


# -- legitimate events still store and show ------------------------------------------------
def test_both_teams_legitimate_events_store_and_show_completely(explorer, lineage_dsn):
    """Every event of the three teams (task events with parent facets on their DAG runs, a
    table two teams share) is accepted with its team's key, also in reverse order (children
    before their parent run), and each team sees its own runs and facets whole."""
    events = events_for(three_teams())
    explorer.load(list(reversed(events)), team_key_for)
    counts = stored(lineage_dsn)
    assert counts["lineage_event"] == len(events) and counts["lineage_run"] == 8
    ns_pg = quote(PG, safe="")
    for user, job, fields in (("referral_op", "bullhorn_sync.match", ["candidate_id", "job_id", "score"]),
                              ("looklyy_op", "looklyy_crawler.enrich", ["sku", "candidate_id"])):
        j = explorer.get(f"/api/v1/namespaces/{NS}/jobs/{job}", user).json()
        assert j["latestRun"]["state"] == "COMPLETED" and j["parentJobName"] == job.split(".")[0]
        out = j["outputs"][0]["name"]
        d = explorer.get(f"/api/v1/namespaces/{ns_pg}/datasets/{out}", user).json()
        assert [f["name"] for f in d["fields"]] == fields and d["facetsByJob"][0]["job"]["name"] == job
    # a hook-level child job (``<dag>.<task>.query.1``) whose parent is the task's run
    match_run = run_id_of(explorer, "bullhorn_sync.match")
    child = event("bullhorn_sync.match.query.1", run_facets=parent(match_run, "bullhorn_sync.match",
                                                                   root=(run_id_of(explorer, "bullhorn_sync"), "bullhorn_sync")),
                  inputs=[table("referral.public.candidates")])
    r = explorer.post_event(child, TEAM_KEYS["referral"])
    assert r.status_code == 201 and r.json() == {"stored": True}
    j = explorer.get(f"/api/v1/namespaces/{NS}/jobs/bullhorn_sync.match.query.1", "referral_op").json()
    assert (j["parentJobName"], j["simpleName"]) == ("bullhorn_sync.match", "query.1")
    # a DAG run triggered from elsewhere: its root is a run in another namespace, no job of this deployment
    external = event("bullhorn_sync.extract", run_facets=parent(run_id_of(explorer, "bullhorn_sync"), "bullhorn_sync"))
    external["run"]["facets"]["parent"]["root"] = {"run": {"runId": str(uuid.uuid4())},
                                                   "job": {"namespace": "other-scheduler", "name": "nightly"}}
    assert explorer.post_event(external, TEAM_KEYS["referral"]).status_code == 201
    # an event with a parent facet that is no run (no UUID) cannot be checked: not kept
    bad = event("bullhorn_sync.match", run_facets=parent("not-a-run", "bullhorn_sync"))
    assert explorer.post_event(bad, TEAM_KEYS["referral"]).status_code == 422


def test_the_loader_skips_and_reports_refused_events(store, lineage_dsn, tmp_path):
    """``make lineage-load`` (platform authority) keeps the rule: a run belongs to one job."""
    from lineage_explorer.load import load_file
    from lineage_explorer.ownership import OwnerResolver

    events = events_for(three_teams())
    match = next(e for e in events if e["job"]["name"] == "bullhorn_sync.match")
    hijack = event(ATTACKER_JOB, match["run"]["runId"], kind="FAIL")
    f = tmp_path / "events.jsonl"
    f.write_text("".join(json.dumps(e) + "\n" for e in [*events, hijack]))
    teams = {d.dag_id: d.team for d in three_teams()}
    report = load_file(f, store, OwnerResolver(lookup=lambda c: {d: teams[d] for d in c if d in teams}), batch=5)
    assert (report.stored, report.duplicates, report.invalid) == (len(events), 0, [])
    assert report.refused == [f"run {match['run']['runId']} of job {ATTACKER_JOB}: run {match['run']['runId']}"
                              " is already stored for another job; a run belongs to one job"]
    assert stored(lineage_dsn)["lineage_event"] == len(events)


def test_the_isolation_probes_integrity_attempts_are_judged_as_the_live_test_expects(explorer, standin, monkeypatch):
    """``tests/tenant_probe.py``'s lineage attempts (run by tests/test_isolation.py from a task
    on the live platform) against this app over real HTTP, with looklyy's key as the probe's
    OpenLineage transport: the codes the live test requires, and referral's run and dataset
    untouched."""
    from lineage_explorer.config import transport_config
    from tests.lineage_explorer.conftest import seed_metadata
    from tests.lineage_explorer.events import Dag
    from tests.tenant_probe import INTEGRITY_FACETS, Loot, _try_lineage

    seed_metadata([Dag("looklyy_attack_probe", ATTACKER), Dag("referral_conn_probe", VICTIM)])
    server = standin(explorer.app)
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__TRANSPORT", json.dumps(transport_config(server.url, TEAM_KEYS[ATTACKER])))
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__NAMESPACE", NAMESPACE)
    run_id, owned = str(uuid.uuid4()), {"namespace": "postgres://isolation-lineage", "name": "referral.public.owned"}
    seeded = event("referral_conn_probe.resolve", run_id,
                   outputs=[{**owned, "facets": {"schema": {**FORGED_SCHEMA["schema"], "fields": [{"name": "owned_by_referral"}]}}}])
    assert explorer.post_event(seeded, TEAM_KEYS[VICTIM]).status_code == 201

    row = _try_lineage(server.url, ATTACKER, VICTIM, Loot(), {"run_id": run_id, "job": "referral_conn_probe.resolve",
                                                              "dataset": owned})
    assert row["succeeded"] is False, row["detail"]
    assert row["integrity"] == {"run id of the other team's run": 409, "parent run of the other team": 403,
                                "root run of the other team": 403, INTEGRITY_FACETS: 201}
    assert explorer.get(f"/api/v1/jobs/runs/{run_id}", "referral_op").json()["state"] == "COMPLETED"
    ds_path = f"/api/v1/namespaces/{quote(owned['namespace'], safe='')}/datasets/{owned['name']}"
    assert "forged_by_looklyy" not in explorer.get(ds_path, "referral_op").text
    mine = explorer.get(ds_path, "looklyy_op")
    assert "owned_by_referral" not in mine.text and "forged_by_looklyy" in mine.text
