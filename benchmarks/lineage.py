"""Benchmark (not a test): the lineage explorer at platform scale, side by side in one run.

On one embedded PostgreSQL 18, platform-shaped events (tests/lineage_explorer/events.py
``platform_dags``: 5 domains x 8 DAGs x 6 tasks, cross-domain shared tables, HTTP services,
Kafka, Redis, lake files; the provider's event shapes; 560 events per round of runs):

1. depth-5 growth: the store is filled through the store's own batched ingest
   (``LineageStore.ingest_batch``, the path the endpoint takes) to each size in SIZES
   (default 10k, 100k, 1M events); at each size ``GET /api/v1/lineage`` at depth 5 from a
   shared table is timed as admin and as one team (the store query plus the Marquez JSON
   shaping), median and max of QUERIES repetitions;
2. store ingest, side by side on the full store, events newer than the stored history (as live
   ingest is): one transaction per event (``ingest``), STORE_EVENTS events; then 200 per
   transaction (``ingest_batch``) with each event of a batch on its own (``lineage_ingest_event``,
   before migration 0004) and set-based (``lineage_ingest_batch``), and late events (older than
   the stored history: the set-based call gives up, one event at a time), interleaved,
   STORE_EVENTS in all each, with PostgreSQL's CPU time per event;
3. HTTP ingest: the plugin's app served by uvicorn in its own process (as the api-server
   serves it, one worker), two of them up at once on the same store: before (the
   ``lineage_explorer`` package as committed on git revision BEFORE, default ``main``; its
   clients without ``NO_PROXY``, as the platform's workers were) and after (this work tree's;
   its clients with the ``NO_PROXY`` the platform now sets, ``PlatformConfig.no_proxy_env``);
   1, 8 and 32 concurrent clients, each a process (a worker), each posting whole DAG runs in
   order through the OpenLineage client's own ``http`` transport with its team's ingest key
   (DAG-level events: the platform key); HTTP_EVENTS events per step, before and after
   interleaved per step. After each step the store is checked: every event stored once, every
   run's state and state time those of its last event (nothing lost, duplicated or reordered).
   The CPU time per event of the clients, the server process and PostgreSQL is printed with
   each step (clients and server share the machine's cores), and the ceiling it sets on this
   machine: its cores / (client + server + PostgreSQL CPU time per event). Then each server's
   own capacity (32 keep-alive connections from one asyncio process sending requests encoded
   beforehand), and the clients' own ceiling: the same 1, 8 and 32 clients (with ``NO_PROXY``)
   against a do-nothing stub server (answers every request ``201`` at once);
4. retention at full size: ``purge`` of everything older than the median event time (half
   of the events), its run time, and the depth-5 query after it.

``python -m benchmarks.lineage [MAX_EVENTS] [HTTP_EVENTS] [STORE_EVENTS] [QUERIES] [BEFORE]``
(defaults 1000000 6000 5000 20 main; SIZES are 10k, 100k, ... up to MAX_EVENTS). About 10 minutes
for 1M events on 2 cores.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from devplatform.config import lineage_explorer_config
from devplatform.pg import PgServer
from devplatform.ports import free_port

lineage_explorer_config()  # plugins/ on sys.path, as in Airflow's processes

from lineage_explorer.api import graph_json  # noqa: E402
from lineage_explorer.ownership import OwnerResolver  # noqa: E402
from lineage_explorer.queries import Reader, Visibility  # noqa: E402
from lineage_explorer.store import RUN_STATES, LineageStore, RunEvent  # noqa: E402
from tests.lineage_explorer.events import DOMAINS, NAMESPACE, events_for, platform_dags  # noqa: E402

DAGS = platform_dags(8)
TEAM_OF = {d.dag_id: d.team for d in DAGS}
KEYS = {d: f"bench-key-{d}" for d in DOMAINS}
PLATFORM_KEY = "bench-key-platform"
CLIENTS = (1, 8, 32)


def lookup(candidates: list[str]) -> dict[str, str | None]:
    return {c: TEAM_OF[c] for c in candidates if c in TEAM_OF}


def rounds(first: datetime, step: timedelta = timedelta(hours=1)):
    """Rounds of runs of every DAG, ``step`` apart from ``first`` on (560 events each)."""
    t = first
    while True:
        yield events_for(DAGS, t)
        t += step


def key_of(event: dict) -> str:
    name = event["job"]["name"]
    return KEYS[TEAM_OF[name.split(".")[0]]] if "." in name else PLATFORM_KEY


# -- the server process ----------------------------------------------------------------
def serve(port: int, dsn: str) -> None:
    """The plugin's app mounted like the api-server mounts it, on uvicorn, one process (the
    ``lineage_explorer`` package first on ``PYTHONPATH``: see :func:`start_server`)."""
    import uvicorn
    from fastapi import FastAPI

    from lineage_explorer.api import create_app
    from lineage_explorer.config import URL_PREFIX, Settings

    print(f"benchmark server on port {port}: lineage_explorer from {Path(create_app.__code__.co_filename).parent}",
          flush=True)
    settings = Settings(dsn=dsn, ingest_keys=KEYS, platform_key=PLATFORM_KEY, retention_days=0, namespace=NAMESPACE)
    app = FastAPI(title="bench")
    app.mount(URL_PREFIX, create_app(settings_factory=lambda: settings, resolver_factory=lambda s: OwnerResolver(
        lookup=lookup, all_dag_ids=lambda: TEAM_OF)))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def serve_stub(port: int) -> None:
    """A do-nothing HTTP/1.1 server: every request answered ``201 {"stored": true}`` at once,
    on keep-alive connections (what a client costs with no server work behind it)."""
    import asyncio

    answer = b'HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 16\r\n\r\n{"stored": true}'

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(h.split(b":")[1]) for h in head.split(b"\r\n")
                               if h.lower().startswith(b"content-length")), 0)
                await reader.readexactly(length)
                writer.write(answer)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(connection, "127.0.0.1", port, backlog=256)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def plugin_at(rev: str, dest: Path) -> Path:
    """The ``lineage_explorer`` package as committed on git revision ``rev``, extracted under
    ``dest``; returns the folder to put first on ``PYTHONPATH``."""
    from devplatform.paths import ROOT

    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "plugins/lineage_explorer"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest / "plugins"


def start_server(dsn: str, plugins: Path | None = None, stub: bool = False) -> tuple[subprocess.Popen, str]:
    """The benchmark's server process: the plugin's app (``plugins``: the folder its
    ``lineage_explorer`` package is taken from, else this work tree's) or the stub."""
    import requests

    port = free_port()
    env = dict(os.environ)
    if plugins is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(plugins), *filter(None, [env.get("PYTHONPATH")])])
    args = ["serve-stub", str(port)] if stub else ["serve", str(port), dsn]
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.lineage", *args], env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.post(f"{url}/lineage-explorer/api/v1/lineage", json={}, timeout=2).status_code in (401, 201):
                return proc, url
        except requests.ConnectionError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("the benchmark's lineage server did not start")


# -- clients -------------------------------------------------------------------------
def client(url: str, events: list[dict], barrier, results, env: dict[str, str | None]) -> None:
    """One worker: the provider's http transport per key, its runs' events in order, with
    ``env`` set in its environment (None: unset)."""
    for k, v in env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    from openlineage.client.transport.http import HttpConfig, HttpTransport

    from lineage_explorer.config import transport_config

    transports = {k: HttpTransport(HttpConfig.from_dict(transport_config(url, k))) for k in [*KEYS.values(), PLATFORM_KEY]}
    errors = 0
    barrier.wait()
    cpu = time.process_time()
    for e in events:
        try:
            transports[key_of(e)].emit(e)  # dicts are serialized as they are (Serde.to_dict)
        except Exception:
            errors += 1
    results.put((len(events), errors, time.process_time() - cpu))
    results.close()
    results.join_thread()
    os._exit(0)  # no interpreter teardown (nothing of it is measured)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes and their children so far."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def http_step(url: str, clients: int, events: list[dict], env: dict[str, str | None]) -> tuple[float, int, float]:
    """Whole runs dealt to ``clients`` processes; returns (seconds, errors, the clients' CPU
    seconds while emitting). The clients are forked from a fork server that has only imported
    this module (not from this process, whose memory every child would otherwise copy)."""
    by_run: dict[str, list[dict]] = {}
    for e in events:
        root = ((e["run"].get("facets") or {}).get("parent") or {}).get("run", {}).get("runId") or e["run"]["runId"]
        by_run.setdefault(root, []).append(e)  # a DAG run and its tasks' runs go to one client
    shares: list[list[dict]] = [[] for _ in range(clients)]
    for i, run in enumerate(by_run.values()):
        shares[i % clients].extend(run)
    # the fork server preloads this module; each child then runs it again as __mp_main__, which
    # runpy warns about (harmless: nothing runs at import); the fork server and its children
    # take the filter from the environment at the server's start
    os.environ["PYTHONWARNINGS"] = "ignore::RuntimeWarning:runpy"
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["benchmarks.lineage"])
    barrier, results = ctx.Barrier(clients + 1), ctx.Queue()
    procs = [ctx.Process(target=client, args=(url, share, barrier, results, env)) for share in shares]
    for p in procs:
        p.start()
    barrier.wait()
    t0 = time.perf_counter()
    done = [results.get() for _ in procs]
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    return elapsed, sum(e for _, e, _ in done), sum(c for _, _, c in done)


def raw_step(url: str, connections: int, events: list[dict]) -> tuple[float, int, float]:
    """The server's own capacity: ``connections`` keep-alive HTTP/1.1 connections from one
    asyncio process sending requests encoded beforehand (no client library), each connection
    its whole runs in order, one request at a time. Returns (seconds, non-201 answers, the
    client's CPU seconds)."""
    import asyncio
    from urllib.parse import urlparse

    host, port = urlparse(url).hostname, urlparse(url).port
    by_run: dict[str, list[dict]] = {}
    for e in events:
        root = ((e["run"].get("facets") or {}).get("parent") or {}).get("run", {}).get("runId") or e["run"]["runId"]
        by_run.setdefault(root, []).append(e)
    shares: list[list[bytes]] = [[] for _ in range(connections)]
    for i, run in enumerate(by_run.values()):
        for e in run:
            body = json.dumps(e).encode()
            shares[i % connections].append(
                b"POST /lineage-explorer/api/v1/lineage HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                + f"Authorization: Bearer {key_of(e)}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    bad = 0

    async def connection(requests: list[bytes]) -> None:
        nonlocal bad
        reader, writer = await asyncio.open_connection(host, port)
        for req in requests:
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))
            await reader.readexactly(length)
            bad += not head.startswith(b"HTTP/1.1 201")
        writer.close()

    async def all_connections() -> None:
        await asyncio.gather(*(connection(share) for share in shares))

    cpu0, t0 = time.process_time(), time.perf_counter()
    asyncio.run(all_connections())
    return time.perf_counter() - t0, bad, time.process_time() - cpu0


def check_runs(store: LineageStore, events: list[dict]) -> str:
    """Every event stored once; each run's state and state time those of its last event."""
    expected: dict[str, tuple[str, datetime]] = {}
    for e in events:
        t = datetime.fromisoformat(e["eventTime"].replace("Z", "+00:00"))
        state = RUN_STATES.get(e["eventType"])
        if state and (e["run"]["runId"] not in expected or t >= expected[e["run"]["runId"]][1]):
            expected[e["run"]["runId"]] = (state, t)
    with store.connection() as conn, conn.cursor() as cur:
        ids = sorted(expected)
        cur.execute("SELECT count(*), count(DISTINCT (run_id, event_type, event_time)) FROM lineage_event"
                    " WHERE run_id = ANY(%s::uuid[])", (ids,))
        stored, distinct = cur.fetchone()
        cur.execute("SELECT run_id::text, state, state_time FROM lineage_run WHERE run_id = ANY(%s::uuid[])", (ids,))
        got = {r[0]: (r[1], r[2]) for r in cur.fetchall()}
        conn.rollback()
    wrong = sum(1 for r, v in expected.items() if got.get(r) != v)
    ok = stored == distinct == len(events) and not wrong
    return (f"{'ok' if ok else 'WRONG'}: {stored} of {len(events)} events stored, {stored - distinct} duplicates, "
            f"{wrong} of {len(expected)} runs with another state than their last event's")


# -- queries -------------------------------------------------------------------------
def depth5(reader: Reader, queries: int) -> dict[str, tuple[int, float, float]]:
    everyone = frozenset(TEAM_OF)
    admin = Visibility(dag_ids=everyone, known_dag_ids=everyone, teams=frozenset(["", *DOMAINS]))
    referral = Visibility(dag_ids=frozenset(d for d, t in TEAM_OF.items() if t == "referral"),
                          known_dag_ids=everyone, teams=frozenset(["", "referral"]))
    node = next(d.tasks[2].outputs[0] for d in DAGS if d.team == "referral")
    out = {}
    for who, vis in (("admin", admin), ("referral_op", referral)):
        times, size = [], 0
        for _ in range(queries):
            t0 = time.perf_counter()
            g = graph_json(reader.graph(vis, "dataset", node.namespace, node.name, 5))
            times.append(time.perf_counter() - t0)
            size = len(g["graph"])
        out[who] = (size, statistics.median(times) * 1000, max(times) * 1000)
    return out


BASE_ROUNDS = 18  # 10,080 events through the ingest path


def replicate(pg: PgServer, first: int, n: int) -> None:
    """Copies ``first`` .. ``first + n - 1`` of the BASE_ROUNDS ingested rounds, each shifted by
    BASE_ROUNDS hours per copy, with new run ids (md5 of the run id and the copy) in the rows and in
    the payloads: raw events, runs (with their dataset versions) and the writing runs' dataset
    versions, what ingesting those rounds would add (jobs, datasets, edges and facets are those of
    the same DAGs; their times are moved to the latest copy)."""
    import psycopg2

    conn = psycopg2.connect(pg.admin_dsn("lineage"))
    try:
        with conn.cursor() as cur:
            params = {"first": first, "last": first + n - 1, "hours": BASE_ROUNDS}
            cur.execute("CREATE TEMP TABLE base_event AS SELECT * FROM lineage_event WHERE id <= %(base)s",
                        {"base": BASE_ROUNDS * len(events_for(DAGS))})
            cur.execute(
                "INSERT INTO lineage_event (run_id, event_type, event_time, job_namespace, job_name, team, payload)"
                " SELECT md5(e.run_id::text || k)::uuid, e.event_type, e.event_time + k * %(hours)s * interval '1 hour',"
                "  e.job_namespace, e.job_name, e.team,"
                "  jsonb_set(CASE WHEN e.payload #> '{run,facets,parent,run,runId}' IS NULL THEN e.payload"
                "   ELSE jsonb_set(e.payload, '{run,facets,parent,run,runId}',"
                "     to_jsonb(md5((e.payload #>> '{run,facets,parent,run,runId}') || k)::uuid::text)) END,"
                "   '{run,runId}', to_jsonb(md5(e.run_id::text || k)::uuid::text))"
                "  || jsonb_build_object('eventTime', to_char((e.event_time + k * %(hours)s * interval '1 hour')"
                "     AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))"
                " FROM base_event e CROSS JOIN generate_series(%(first)s, %(last)s) k", params)
            cur.execute(
                "INSERT INTO lineage_dataset_version SELECT v.dataset_namespace, v.dataset_name,"
                "  md5(v.version::text || k)::uuid, v.job_namespace, v.job_name, md5(v.run_id::text || k)::uuid,"
                "  v.direction, v.fields, v.facets, v.lifecycle_state, v.created_at + k * %(hours)s * interval '1 hour',"
                "  v.updated_at + k * %(hours)s * interval '1 hour'"
                " FROM lineage_dataset_version v CROSS JOIN generate_series(%(first)s, %(last)s) k"
                " WHERE v.run_id IN (SELECT run_id FROM base_event)", params)
            cur.execute(
                "INSERT INTO lineage_run SELECT md5(r.run_id::text || k)::uuid, r.job_namespace, r.job_name, r.state,"
                "  r.state_time + k * %(hours)s * interval '1 hour', r.nominal_start_time + k * %(hours)s * interval '1 hour',"
                "  r.nominal_end_time + k * %(hours)s * interval '1 hour', r.started_at + k * %(hours)s * interval '1 hour',"
                "  r.ended_at + k * %(hours)s * interval '1 hour', r.facets, r.inputs, r.outputs,"
                "  r.created_at + k * %(hours)s * interval '1 hour', r.updated_at + k * %(hours)s * interval '1 hour',"
                "  r.job_version, r.input_versions,"
                "  (SELECT coalesce(jsonb_agg(jsonb_set(x, '{version}', to_jsonb(md5((x->>'version') || k)::uuid::text))),"
                "   '[]') FROM jsonb_array_elements(r.output_versions) x)"
                " FROM lineage_run r CROSS JOIN generate_series(%(first)s, %(last)s) k"
                " WHERE r.run_id IN (SELECT run_id FROM base_event)", params)
            shift = "%(last)s * %(hours)s * interval '1 hour'"
            for table in ("lineage_job", "lineage_dataset", "lineage_edge", "lineage_dataset_facet",
                          "lineage_job_version"):
                cur.execute(f"UPDATE {table} SET updated_at = updated_at + {shift}", params)
        conn.commit()
    finally:
        conn.close()


def count_events(store: LineageStore) -> int:
    with store.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM lineage_event")
        n = cur.fetchone()[0]
        conn.rollback()
    return n


def main(max_events: int = 1_000_000, http_events: int = 6000, store_events: int = 5000, queries: int = 20,
         before: str = "main") -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-lineage-"))
    pg = PgServer(tmp / "pgdata", free_port())
    pg.start()
    pg.wait_ready()
    pg.ensure_database("lineage", "lineage", "bench")
    dsn = f"postgresql://lineage:bench@127.0.0.1:{pg.port}/lineage"
    resolver = OwnerResolver(lookup=lookup, all_dag_ids=lambda: TEAM_OF)
    servers: dict[str, tuple[subprocess.Popen, str]] = {}
    table: list[tuple[str, str]] = []
    try:
        store = LineageStore(dsn)
        reader = Reader(store)
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
        print(f"event set: {len(DAGS)} DAGs in {len(DOMAINS)} domains, {sum(len(d.tasks) for d in DAGS)} task jobs, "
              f"{len(events_for(DAGS))} events per round of runs")

        # 1. fill, and the depth-5 query at each size: BASE rounds through the store's batched
        # ingest, then copies of them in SQL (see replicate), as ingesting more rounds would store
        history = rounds(datetime(2026, 1, 1, tzinfo=UTC))
        t0 = time.perf_counter()
        base = 0
        for _ in range(BASE_ROUNDS):
            batch = [RunEvent.parse(e) for e in next(history)]
            for i in range(0, len(batch), 200):
                results = store.ingest_batch([(ev, resolver.owner(ev), None) for ev in batch[i:i + 200]])
                assert all(r is True for r in results), results
            base += len(batch)
        fill_rate = base / (time.perf_counter() - t0)
        print(f"1. {base:,} events ingested (batched store ingest: {fill_rate:,.0f} events/s)", flush=True)
        sizes = [n for n in (10_000, 100_000, 1_000_000, 10_000_000) if n <= max_events] or [max_events]
        copies = 0
        for size in sizes:
            t0 = time.perf_counter()
            while base * (copies + 1) < size:
                n = min(50, -(-(size - base * (copies + 1)) // base))
                replicate(pg, copies + 1, n)
                copies += n
            took = time.perf_counter() - t0
            q = depth5(reader, queries)
            total = count_events(store)
            print(f"1. {total:>9,} events stored ({took:.0f} s to copy); depth-5 graph: admin {q['admin'][0]} nodes"
                  f" median {q['admin'][1]:.1f} ms (max {q['admin'][2]:.1f}), referral_op {q['referral_op'][0]} nodes"
                  f" median {q['referral_op'][1]:.1f} ms (max {q['referral_op'][2]:.1f})", flush=True)
            table.append((f"depth-5 at {total:,} events (admin / referral_op, median of {queries})",
                          f"{q['admin'][1]:.1f} ms / {q['referral_op'][1]:.1f} ms"))

        # 2. store ingest side by side: one transaction per event, and per batch. New events are
        # newer than the stored history, as live ingest is; "late" ones (older than every stored
        # row of their jobs: a backfill of old history) only for the batch's fallback
        fresh = rounds(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=BASE_ROUNDS * (copies + 1), days=1))
        old_history = rounds(datetime(2025, 6, 1, tzinfo=UTC))

        def take(n: int, source=fresh) -> list[dict]:
            out: list[dict] = []
            while len(out) < n:
                out += next(source)
            return out[:n]

        events = [RunEvent.parse(e) for e in take(store_events)]
        t0 = time.perf_counter()
        for ev in events:
            store.ingest(ev, resolver.owner(ev))
        single = len(events) / (time.perf_counter() - t0)
        batched: dict[str, list[float]] = {"one": [], "set": [], "late": []}
        for _ in range(2):  # interleaved: each event of the batch on its own (before 0004), set-based
            for mode in batched:
                LineageStore.SET_BASED_FROM = sys.maxsize if mode == "one" else 4
                events = [RunEvent.parse(e) for e in take(store_events // 2, old_history if mode == "late" else fresh)]
                cpu, t0 = cpu_seconds([pg.pid()]), time.perf_counter()
                for i in range(0, len(events), 200):
                    store.ingest_batch([(ev, resolver.owner(ev), None) for ev in events[i:i + 200]])
                batched[mode].append(len(events) / (time.perf_counter() - t0))
                batched[mode].append((cpu_seconds([pg.pid()]) - cpu) * 1000 / len(events))
        LineageStore.SET_BASED_FROM = 4
        rate = {m: len(v[0::2]) / sum(1 / r for r in v[0::2]) for m, v in batched.items()}
        pg_ms = {m: statistics.mean(v[1::2]) for m, v in batched.items()}
        print(f"2. store ingest, {store_events} events each: one transaction per event {single:,.0f} events/s;"
              f" 200 per transaction, each event on its own {rate['one']:,.0f} events/s (PostgreSQL"
              f" {pg_ms['one']:.2f} CPU ms per event), set-based {rate['set']:,.0f} events/s"
              f" ({pg_ms['set']:.2f} ms); late events, set-based call falling back {rate['late']:,.0f} events/s"
              f" ({pg_ms['late']:.2f} ms)", flush=True)
        table.append(("store ingest, one transaction per event", f"{single:,.0f} events/s"))
        table.append(("store ingest, 200 events per transaction, each event on its own (before)",
                      f"{rate['one']:,.0f} events/s, PostgreSQL {pg_ms['one']:.2f} CPU ms per event"))
        table.append(("store ingest, 200 events per transaction, set-based (migration 0004)",
                      f"{rate['set']:,.0f} events/s, PostgreSQL {pg_ms['set']:.2f} CPU ms per event"))
        table.append(("same, late events (older than their jobs' stored rows: one at a time after the set-based try)",
                      f"{rate['late']:,.0f} events/s, PostgreSQL {pg_ms['late']:.2f} CPU ms per event"))

        # 3. HTTP, 1 / 8 / 32 concurrent clients, against the server as committed on BEFORE (its
        # clients without NO_PROXY) and as in this work tree (with it), the two up at once, interleaved
        from devplatform.config import PlatformConfig

        no_proxy = PlatformConfig(state=tmp / "platform").no_proxy_env()
        client_env = {"before": {k: None for k in no_proxy}, "after": no_proxy}
        servers = {"before": start_server(dsn, plugin_at(before, tmp / "before")), "after": start_server(dsn)}
        label = {"before": f"before ({before})", "after": "after (this tree)"}
        cores = os.cpu_count() or 1

        def measure(mode: str, n: int | None) -> None:
            proc, url = servers[mode]
            step = take(http_events)
            server_cpu, pg_cpu = cpu_seconds([proc.pid]), cpu_seconds([pg.pid()])
            if n is None:
                elapsed, errors, client_cpu = raw_step(url, 32, step)
            else:
                elapsed, errors, client_cpu = http_step(url, n, step, client_env[mode])
            server_cpu, pg_cpu = cpu_seconds([proc.pid]) - server_cpu, cpu_seconds([pg.pid()]) - pg_cpu
            load = os.getloadavg()[0]
            verdict = check_runs(store, step) if mode != "stub" else "ok"
            what = (f"{n:>2} client(s), provider's http transport, team keys" if n else
                    "32 connections, pre-encoded requests (the server's capacity)")
            per = [x * 1000 / len(step) for x in (client_cpu, server_cpu, pg_cpu)]
            cpu = f"clients {per[0]:.2f}, server {per[1]:.2f}, PostgreSQL {per[2]:.2f}"
            ceiling = cores * 1000 / sum(per) if n else cores * 1000 / sum(per[1:])
            print(f"3. HTTP ingest, {label[mode]}, {what}: {len(step) / elapsed:,.0f} events/s ({len(step)} events,"
                  f" {elapsed:.1f} s, {errors} errors); CPU ms per event: {cpu}; ceiling on {cores} free cores"
                  f" {ceiling:,.0f} events/s; load average {load:.1f}; {verdict}", flush=True)
            table.append((f"HTTP ingest, {label[mode]}, " + (f"{n} concurrent client(s)" if n else
                          "32 connections, pre-encoded requests (server capacity)"),
                          f"{len(step) / elapsed:,.0f} events/s; CPU ms per event: {cpu}; ceiling {ceiling:,.0f}"
                          f" events/s; load {load:.1f}"
                          + ("" if verdict.startswith("ok") and not errors else f" ({verdict}, {errors} errors)")))

        for n in (*CLIENTS, None):
            for mode in ("before", "after"):
                measure(mode, n)
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
        # the clients' own ceiling: the same clients against a server that does nothing
        servers = {"stub": start_server(dsn, stub=True)}
        label["stub"] = "do-nothing stub server"
        client_env["stub"] = no_proxy
        for n in CLIENTS:
            measure("stub", n)
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
        servers = {}

        # 4. retention at full size
        with store.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY event_time) FROM lineage_event")
            cutoff = cur.fetchone()[0]
            conn.rollback()
        before = count_events(store)
        t0 = time.perf_counter()
        purged = store.purge_older_than(cutoff)
        took = time.perf_counter() - t0
        q = depth5(reader, queries)
        print(f"4. retention at {before:,} events: purge before {cutoff:%Y-%m-%d} in {took:.1f} s: "
              f"{json.dumps(purged)}; then depth-5 admin median {q['admin'][1]:.1f} ms, "
              f"{count_events(store):,} events left", flush=True)
        table.append((f"retention purge at {before:,} events ({purged['lineage_event']:,} deleted)", f"{took:.1f} s"))
        print(f"machine load average at the end: {os.getloadavg()[0]:.1f}")
        print("\n| measure | result |\n|---|---|")
        for k, v in table:
            print(f"| {k} | {v} |")
        store.close()
    finally:
        for proc, _ in servers.values():
            proc.terminate()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(int(sys.argv[2]), sys.argv[3])
    elif sys.argv[1:2] == ["serve-stub"]:
        serve_stub(int(sys.argv[2]))
    else:
        main(*(int(a) for a in sys.argv[1:5]), *sys.argv[5:6])
