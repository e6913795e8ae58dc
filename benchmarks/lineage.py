"""Benchmark (not a test): the lineage explorer's ingest rate and lineage-graph query time.

On one embedded PostgreSQL 18, a platform-sized event set (tests/lineage_explorer/events.py
``platform_dags``: 5 domains x DAGS DAGs x 6 tasks, cross-domain shared tables, HTTP
services, Kafka, Redis, lake files; RUNS runs per DAG, the provider's event shapes) is

1. ingested event by event, one transaction each (what ``POST /api/v1/lineage`` does after
   its key and owner checks): events/s;
2. posted over real HTTP to the plugin app (uvicorn) by the OpenLineage client's own
   ``http`` transport with each team's ingest key, for a sample of HTTP_EVENTS events:
   events/s end to end (one client, sequential, as one worker process emits);
3. queried: ``GET /api/v1/lineage`` at depth 5 from a shared table, as admin and as one
   team (the store query plus the Marquez JSON shaping the endpoint returns), median and
   max of QUERIES repetitions.

``python -m benchmarks.lineage [DAGS] [RUNS] [HTTP_EVENTS] [QUERIES]``
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from devplatform.config import lineage_explorer_config
from devplatform.pg import PgServer
from devplatform.ports import free_port
from devplatform.standin import StandInServer

lineage_explorer_config()  # plugins/ on sys.path, as in Airflow's processes

from lineage_explorer.api import create_app, graph_json  # noqa: E402
from lineage_explorer.config import URL_PREFIX, Settings, transport_config  # noqa: E402
from lineage_explorer.ownership import OwnerResolver  # noqa: E402
from lineage_explorer.queries import Reader, Visibility  # noqa: E402
from lineage_explorer.store import LineageStore, RunEvent  # noqa: E402
from tests.lineage_explorer.events import DOMAINS, NAMESPACE, events_for, platform_dags  # noqa: E402


def main(dags_per_domain: int = 8, runs: int = 20, http_events: int = 2000, queries: int = 20) -> None:
    from datetime import UTC, datetime, timedelta

    dags = platform_dags(dags_per_domain)
    team_of = {d.dag_id: d.team for d in dags}
    start = datetime(2026, 11, 1, tzinfo=UTC)
    events = []
    for r in range(runs):
        events += events_for(dags, start + timedelta(hours=r))
    http_set: list[dict] = []
    while len(http_set) < http_events:  # runs not in the store yet (earlier days)
        http_set += events_for(dags, start - timedelta(days=1 + len(http_set)))
    http_set = http_set[:http_events]
    tmp = Path(tempfile.mkdtemp(prefix="bench-lineage-"))
    pg = PgServer(tmp / "pgdata", free_port())
    pg.start()
    pg.wait_ready()
    pg.ensure_database("lineage", "lineage", "bench")
    dsn = f"postgresql://lineage:bench@127.0.0.1:{pg.port}/lineage"

    def lookup(candidates: list[str]) -> dict[str, str | None]:
        return {c: team_of[c] for c in candidates if c in team_of}

    try:
        store = LineageStore(dsn)
        parsed = [RunEvent.parse(e) for e in events]
        owners = {}
        resolver = OwnerResolver(lookup=lookup, all_dag_ids=lambda: team_of)
        print(f"machine load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        t0 = time.perf_counter()
        for ev in parsed:
            owner = owners.get(ev.job_name) or owners.setdefault(ev.job_name, resolver.owner(ev))
            store.ingest(ev, owner)
        t_store = time.perf_counter() - t0
        print(f"event set: {len(dags)} DAGs in {len(DOMAINS)} domains, {len(parsed)} events "
              f"({runs} runs per DAG), {sum(len(d.tasks) for d in dags)} task jobs")
        print(f"1. store ingest, one transaction per event: {len(parsed) / t_store:,.0f} events/s "
              f"({t_store:.1f} s)")

        keys = {d: f"key-{d}" for d in DOMAINS}
        settings = Settings(dsn=dsn, ingest_keys=keys, platform_key="key-platform", retention_days=0, namespace=NAMESPACE)
        from fastapi import FastAPI
        from openlineage.client.transport.http import HttpConfig, HttpTransport

        app = FastAPI(title="bench")
        app.mount(URL_PREFIX, create_app(settings_factory=lambda: settings, resolver_factory=lambda s: OwnerResolver(
            lookup=lookup, all_dag_ids=lambda: team_of)))
        with StandInServer(app) as server:
            transports = {k: HttpTransport(HttpConfig.from_dict(transport_config(server.url, v)))
                          for k, v in {**keys, None: "key-platform"}.items()}
            t0 = time.perf_counter()
            for e in http_set:
                name = e["job"]["name"]
                team = team_of[name.split(".")[0]] if "." in name else None
                transports[team].emit(e)  # the transport serializes dicts as they are (Serde.to_dict)
            t_http = time.perf_counter() - t0
        print(f"2. HTTP ingest through the provider's http transport (team keys checked, one client): "
              f"{len(http_set) / t_http:,.0f} events/s ({len(http_set)} events, {t_http:.1f} s)")

        reader = Reader(store)
        everyone = frozenset(team_of)
        admin = Visibility(dag_ids=everyone, known_dag_ids=everyone, teams=frozenset(["", *DOMAINS]))
        referral = Visibility(dag_ids=frozenset(d for d, t in team_of.items() if t == "referral"),
                              known_dag_ids=everyone, teams=frozenset(["", "referral"]))
        node = next(d.tasks[2].outputs[0] for d in dags if d.team == "referral")
        for who, vis in (("admin", admin), ("referral_op", referral)):
            times, size = [], 0
            for _ in range(queries):
                t0 = time.perf_counter()
                g = graph_json(reader.graph(vis, "dataset", node.namespace, node.name, 5))
                times.append(time.perf_counter() - t0)
                size = len(g["graph"])
            print(f"3. lineage graph depth 5 from {node.name} as {who}: {size} nodes, "
                  f"median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms ({queries} queries)")
        print(f"machine load average after: {os.getloadavg()[0]:.1f}")
        store.close()
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
