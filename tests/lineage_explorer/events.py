"""OpenLineage run events shaped like the Airflow provider's (2.20.3): DAG-level jobs
``<dag_id>``, task jobs ``<dag_id>.<task_id>`` with a ``parent`` facet pointing at the DAG
run, ``jobType``/``nominalTime``/``processing_engine`` facets, datasets with ``schema``
and ``dataSource`` facets. Used by the lineage explorer's tests and its benchmark."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

NAMESPACE = "airflow-platform"
PRODUCER = "https://github.com/apache/airflow/tree/providers-openlineage/2.20.3"
SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"


def _facet(name: str) -> dict:
    return {"_producer": PRODUCER, "_schemaURL": f"https://openlineage.io/spec/facets/1-0-1/{name}.json#/$defs/{name}"}


@dataclass(frozen=True)
class Ds:
    namespace: str
    name: str
    columns: tuple[str, ...] = ()

    def json(self) -> dict:
        facets = {"dataSource": {**_facet("DatasourceDatasetFacet"), "name": self.namespace, "uri": self.namespace}}
        if self.columns:
            facets["schema"] = {**_facet("SchemaDatasetFacet"),
                                "fields": [{"name": c, "type": "text"} for c in self.columns]}
        return {"namespace": self.namespace, "name": self.name, "facets": facets}


@dataclass(frozen=True)
class Task:
    task_id: str
    inputs: tuple[Ds, ...] = ()
    outputs: tuple[Ds, ...] = ()
    sql: str | None = None


@dataclass(frozen=True)
class Dag:
    dag_id: str
    team: str
    tasks: tuple[Task, ...] = field(default_factory=tuple)


def pg(port: int, db: str, table: str, *columns: str) -> Ds:
    return Ds(f"postgres://127.0.0.1:{port}", f"{db}.public.{table}", columns)


def service(svc: str, resource: str) -> Ds:
    return Ds(f"https://{svc}", resource)


def run_events(dag: Dag, start: datetime, state: str = "COMPLETE", namespace: str = NAMESPACE) -> list[dict]:
    """One DAG run: the DAG's START, each task's START and COMPLETE (or FAIL), the DAG's end."""
    dag_run_id = str(uuid.uuid4())
    nominal = {"nominalTime": {**_facet("NominalTimeRunFacet"), "nominalStartTime": start.isoformat()}}
    engine = {"processing_engine": {**_facet("ProcessingEngineRunFacet"), "version": "3.3.2", "name": "Airflow",
                                    "openlineageAdapterVersion": "2.20.3"}}

    def event(kind: str, t: datetime, run_id: str, job: str, job_type: str, run_facets: dict,
              inputs=(), outputs=(), job_facets=None) -> dict:
        return {
            "eventTime": t.isoformat().replace("+00:00", "Z"),
            "producer": PRODUCER,
            "schemaURL": SCHEMA,
            "eventType": kind,
            "run": {"runId": run_id, "facets": {**nominal, **engine, **run_facets}},
            "job": {"namespace": namespace, "name": job, "facets": {
                "jobType": {**_facet("JobTypeJobFacet"), "processingType": "BATCH", "integration": "AIRFLOW",
                            "jobType": job_type}, **(job_facets or {})}},
            "inputs": [d.json() for d in inputs],
            "outputs": [d.json() for d in outputs],
        }

    out = [event("START", start, dag_run_id, dag.dag_id, "DAG", {})]
    t = start
    parent = {"parent": {**_facet("ParentRunFacet"), "run": {"runId": dag_run_id},
                         "job": {"namespace": namespace, "name": dag.dag_id}}}
    for i, task in enumerate(dag.tasks):
        ti_run = str(uuid.uuid4())
        job_facets = {"sql": {**_facet("SQLJobFacet"), "query": task.sql}} if task.sql else None
        t += timedelta(seconds=1)
        out.append(event("START", t, ti_run, f"{dag.dag_id}.{task.task_id}", "TASK", parent, task.inputs, (), job_facets))
        t += timedelta(seconds=2)
        end = "FAIL" if state == "FAIL" and i == len(dag.tasks) - 1 else "COMPLETE"
        out.append(event(end, t, ti_run, f"{dag.dag_id}.{task.task_id}", "TASK", parent, task.inputs, task.outputs,
                         job_facets))
    out.append(event(state, t + timedelta(seconds=1), dag_run_id, dag.dag_id, "DAG", {}))
    return out


def three_teams(port: int = 5432) -> list[Dag]:
    """referral and looklyy share one table (looklyy reads referral's candidates); aurora
    is on its own. Every team also calls an HTTP service."""
    candidates = pg(port, "referral", "candidates", "id", "name", "email")
    return [
        Dag("bullhorn_sync", "referral", (
            Task("extract", (service("bullhorn", "Candidate"),), (candidates,)),
            Task("match", (candidates,), (pg(port, "referral", "matches", "candidate_id", "job_id", "score"),),
                 "INSERT INTO matches SELECT ... FROM candidates"),
        )),
        Dag("looklyy_crawler", "looklyy", (
            Task("crawl", (service("looklyy-api", "products"),), (pg(port, "looklyy", "products", "sku", "title"),)),
            Task("enrich", (pg(port, "looklyy", "products", "sku", "title"), candidates),
                 (pg(port, "looklyy", "enriched", "sku", "candidate_id"),)),
        )),
        Dag("aurora_stream", "aurora", (
            Task("consume", (Ds("kafka://broker:9092", "aurora.events"),), (Ds("redis://cache:6379", "sessions:*"),)),
        )),
    ]


def events_for(dags: list[Dag], start: datetime | None = None) -> list[dict]:
    start = start or datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    out = []
    for i, dag in enumerate(dags):
        out += run_events(dag, start + timedelta(minutes=i))
    return out


DOMAINS = ("aurora", "ecommerce_ml", "hss_workflow", "looklyy", "referral")
SERVICES = {"aurora": ("kafka://broker:9092", "events"), "ecommerce_ml": ("https://ml-service", "predict"),
            "hss_workflow": ("https://hss-api", "cases"), "looklyy": ("https://looklyy-api", "products"),
            "referral": ("https://bullhorn", "Candidate")}


def platform_dags(dags_per_domain: int = 8, tasks_per_dag: int = 6, port: int = 5432, seed: int = 7) -> list[Dag]:
    """A platform-sized set: per domain ``dags_per_domain`` DAGs, each a chain of tasks from
    the domain's external service through its tables to a lake file or a Redis key space;
    one task in four also reads a table of another domain (the shared datasets)."""
    import random

    rng = random.Random(seed)
    tables = {d: [[pg(port, d, f"dag{i}_t{t}", "id", "value", "updated_at") for t in range(tasks_per_dag)]
                  for i in range(dags_per_domain)] for d in DOMAINS}
    dags = []
    for d in DOMAINS:
        svc_ns, resource = SERVICES[d]
        for i in range(dags_per_domain):
            chain = tables[d][i]
            tasks = []
            for t in range(tasks_per_dag):
                inputs = [service(svc_ns.split("://")[1], f"{resource}/{i}") if svc_ns.startswith("https")
                          else Ds(svc_ns, f"{d}.{resource}.{i}")] if t == 0 else [chain[t - 1]]
                if t and rng.random() < 0.25:
                    other = rng.choice([o for o in DOMAINS if o != d])
                    inputs.append(rng.choice(rng.choice(tables[other])))
                outputs = [chain[t]]
                if t == tasks_per_dag - 1:
                    outputs.append(Ds("file", f"/lake/{d}/dag{i}/part.parquet") if i % 2
                                   else Ds("redis://cache:6379", f"{d}:dag{i}:*"))
                tasks.append(Task(f"t{t}", tuple(inputs), tuple(outputs),
                                  f"INSERT INTO {chain[t].name} SELECT * FROM {inputs[0].name}" if t else None))
            dags.append(Dag(f"{d}_dag{i}", d, tuple(tasks)))
    return dags
