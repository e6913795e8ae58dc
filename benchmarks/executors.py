"""Benchmark (not a test): per-team Celery workers against the earlier LocalExecutor set-up,
and the team workers' settings before and after issue 25, side by side in one run.

Set-ups: ``local`` (every task in the scheduler's LocalExecutor, the baseline), ``celery-before``
(team workers with the settings before issue 25, ``PLATFORM_WORKER_SETTINGS=previous``) and
``celery-after`` (today's, ``devplatform/tenants.py`` ``WORKER_TUNING``). Each round starts
every set-up in turn (the order rotated each round) as a whole platform on its own ports and
state folder, cold (fresh database), and measures: start wall time; idle memory as PSS per
process kind (``benchmarks/platform_memory.py``) once idle (every trigger runner started, no parse
in flight, the same processes in two samples 5 s apart; the count per kind printed); a 6-task chain of no-op
tasks, trigger -> success (the first run after start reported apart, then 2 timed runs); the
referral sync (``bullhorn_sync_optimized``) with no changes (after a first, loading sync),
against referral's own stand-ins moved to free ports. Then it stops that platform. Medians over
the rounds; the timeline of one 6-task run per set-up (where each task's seconds go).

``python -m benchmarks.executors [--rounds 3] [--setups local,celery-before,celery-after]``

Idle memory alone (``--memory-only``): per round, each set-up's platform started cold and
measured once idle. ``--in-place`` (set-ups that differ only in what runs while idle,
``PLATFORM_IDLE_SETTINGS``: ``celery-all-on``, every process started as before, against
``celery-after``): one cold platform per round, measured in one set-up, switched to the other
(the team-less triggerer and the Flowers stopped, or started and settled) and measured again,
the order alternated each round: half the starts, so 3 rounds fit one benchmark-lock hold.
``--save FILE`` appends each round's figures to FILE (JSON lines) and ``--report [LABEL=]FILE ...``
prints the medians over every round saved there (a long run split into one call per round; two
checkouts' files side by side, e.g. ``before=main.jsonl after=branch.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import requests

from benchmarks.platform_memory import Usage, idle_usage, memory_table, platform_roots, total
from devplatform.config import PlatformConfig
from devplatform.paths import bundle_dir, domain_names
from devplatform.platform import LocalPlatform
from devplatform.ports import free_port_range, free_ports
from devplatform.readiness import dag_files

SIX_TASKS = '''"""Benchmark DAG: six no-op tasks in a chain (trigger -> success latency)."""
from airflow.sdk import chain, dag, task


@dag(dag_id="bench_six_tasks", schedule=None, tags=["referral"], doc_md=__doc__)
def bench_six_tasks():
    @task(retries=0)
    def step(i: int) -> int:
        return i

    chain(*[step.override(task_id=f"step_{i}")(i) for i in range(6)])


bench_six_tasks()
'''


# set-up -> (executor, team workers' settings, what runs while idle); the default run's set-ups
SETUPS = {"local": ("local", "previous", "previous"), "celery-before": ("celery", "previous", "previous"),
          "celery-after": ("celery", "tuned", "lean"), "celery-all-on": ("celery", "tuned", "previous")}
DEFAULT_SETUPS = ("local", "celery-before", "celery-after")
# the programs PLATFORM_IDLE_SETTINGS=lean does not start (devplatform/platform.py): the team-less
# triggerer and, per team, Flower
IDLE_EXTRA = ("triggerer", "flower-")


def make(executor: str, worker_settings: str = "tuned", idle_settings: str = "lean") -> LocalPlatform:
    teams = domain_names()
    state = Path(tempfile.mkdtemp(prefix=f"bench-{executor}-"))
    os.chmod(state, 0o711)
    folder = state / "bundles" / "referral"
    folder.mkdir(parents=True)
    for f in dag_files(bundle_dir("referral")):
        (folder / f.name).symlink_to(f)
    (folder / "bench_six_tasks.py").write_text(SIX_TASKS)
    for p in (state / "bundles", folder):
        os.chmod(p, 0o755)
    os.chmod(folder / "bench_six_tasks.py", 0o644)
    ports = free_ports(5 + 2 * len(teams))
    cfg = PlatformConfig(
        state=state, pg_port=ports.pop(), api_port=ports.pop(), smtp_port=ports.pop(), worker_log_port=ports.pop(),
        domain_redis_port=ports.pop(),
        trigger_log_port=free_port_range(len(teams) + 1, exclude=ports),  # one per triggerer
        bundle_paths={"referral": folder}, executor=executor, worker_settings=worker_settings,
        idle_settings=idle_settings,
        redis_ports={t: ports.pop() for t in teams}, flower_ports={t: ports.pop() for t in teams},
    )
    p = LocalPlatform(cfg, quiet=True)
    specs = [(d, spec) for d, spec in p.standin_specs() if d == "referral"]
    moved = {spec["name"]: port for (_, spec), port in zip(specs, free_ports(len(specs)), strict=True)}
    p.standin_specs = lambda: [(d, {**spec, "port": moved[spec["name"]]}) for d, spec in specs]
    p.referral_env = {"REFERRAL_BULLHORN_URL": f"http://127.0.0.1:{moved['bullhorn']}",
                      "REFERRAL_ML_SERVICE_URL": f"http://127.0.0.1:{moved['ml_service']}"}
    return p


def run_once(p: LocalPlatform, headers: dict, dag_id: str, timeout: float = 600) -> tuple[float, str]:
    """Trigger -> success of one run of ``dag_id``: (seconds, run id)."""
    api = f"{p.config.api_url}/api/v2"
    t0 = time.monotonic()
    r = requests.post(f"{api}/dags/{dag_id}/dagRuns", json={"logical_date": None}, headers=headers, timeout=30)
    r.raise_for_status()
    run_id = r.json()["dag_run_id"]
    while time.monotonic() - t0 < timeout:
        try:
            state = requests.get(f"{api}/dags/{dag_id}/dagRuns/{run_id}", headers=headers, timeout=30).json()["state"]
        except requests.RequestException:  # an api-server slow to answer (a loaded machine): ask again
            continue
        if state == "success":
            return time.monotonic() - t0, run_id
        if state == "failed":
            raise RuntimeError(f"{dag_id} {run_id} failed")
        time.sleep(0.25)
    raise TimeoutError(dag_id)


def referral_sync(p: LocalPlatform, headers: dict, runs: int = 2) -> list[float]:
    """The first sync loads the stand-in's data (not timed); then ``runs`` syncs with no change."""
    api, dag_id = f"{p.config.api_url}/api/v2", "bullhorn_sync_optimized"
    requests.patch(f"{api}/dags/{dag_id}", json={"is_paused": False}, headers=headers, timeout=30).raise_for_status()
    started = time.monotonic()
    while True:  # unpausing may start the latest scheduled run: let it finish, else run a first sync
        listed = requests.get(f"{api}/dags/{dag_id}/dagRuns", headers=headers, timeout=30).json()["dag_runs"]
        if listed and all(r["state"] in ("success", "failed") for r in listed):
            break
        if not listed and time.monotonic() - started > 30:
            run_once(p, headers, dag_id)
            break
        if time.monotonic() - started > 600:
            raise TimeoutError(f"{dag_id}: the first sync did not finish")
        time.sleep(1)
    return [run_once(p, headers, dag_id)[0] for _ in range(runs)]



LOG_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z")


def _stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.rstrip("Z")).replace(tzinfo=UTC)


def log_events(path: Path, patterns: dict[str, str]) -> dict[str, datetime]:
    """{key: time of the last log line matching ``patterns[key]`` (a regex)} in a component's log
    (structlog lines starting with an ISO time)."""
    found = {}
    if not path.exists():
        return found
    compiled = {k: re.compile(v) for k, v in patterns.items()}
    for line in path.read_text(errors="replace").splitlines():
        m = LOG_STAMP.match(line)
        if not m:
            continue
        for key, rx in compiled.items():
            if rx.search(line):
                found[key] = _stamp(m.group(1))
    return found


def task_log_events(path: Path) -> dict[str, datetime]:
    """From a task's own log (JSON lines): the task process up (its first line), DAG file parsed,
    task body returned, and its last line (post-execute done: XCom, OpenLineage COMPLETE)."""
    out = {}
    if not path.exists():
        return out
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
    if not lines:
        return out
    out["proc_up"] = _stamp(lines[0]["timestamp"])
    out["last_line"] = _stamp(lines[-1]["timestamp"])
    for d in lines:
        if d.get("event") == "Worker startup parse complete":
            out["parsed"] = _stamp(d["timestamp"])
        if str(d.get("event", "")).startswith("Done. Returned value"):
            out["body_done"] = _stamp(d["timestamp"])
    return out


TIMELINE_COLUMNS = [
    ("sched>queued", "scheduler: scheduled -> queued (critical section, executor queue)"),
    ("queued>worker", "Celery: queued -> message received by the team's worker (send, broker, free pool process)"),
    ("worker>proc", "-> task process up (Celery: pool process runs the supervisor, forks; LocalExecutor: from queued)"),
    ("proc>parsed", "task process: startup details (Execution API run call), listeners, imports, DAG file parsed"),
    ("parsed>body", "task body (pre-execute incl. OpenLineage START, the callable)"),
    ("body>success", "post-execute (XCom push, OpenLineage COMPLETE) and the success call (Execution API)"),
    ("slot busy", "success -> the supervisor returns (pool/worker process free again)"),
    ("success>next", "success -> the next task scheduled (scheduler loop)"),
]


def timeline(p: LocalPlatform, dag_id: str, run_id: str) -> dict:
    """Where each task's seconds went in one run: metadata DB timestamps, the task logs and the
    worker's (Celery) or scheduler's (LocalExecutor) log."""
    with closing(psycopg2.connect(p.pg.admin_dsn("airflow"))) as conn, conn.cursor() as cur:
        cur.execute("SELECT task_id, id::text, scheduled_dttm, queued_dttm, start_date, end_date, external_executor_id "
                    "FROM task_instance WHERE dag_id = %s AND run_id = %s ORDER BY scheduled_dttm", (dag_id, run_id))
        tis = cur.fetchall()
        cur.execute("SELECT queued_at, start_date, end_date FROM dag_run WHERE dag_id = %s AND run_id = %s", (dag_id, run_id))
        run_queued, run_start, run_end = cur.fetchone()
    log_dir = p.config.state / "logs"
    component = log_dir / ("worker-referral.log" if p.config.celery else "scheduler.log")
    rows = []
    for i, (task_id, ti_id, sched, queued, start, end, celery_id) in enumerate(tis):
        ev = log_events(component, {
            "received": rf"execute_workload\[{celery_id}\] received" if celery_id else r"(?!)",
            "finished": rf"Workload finished.*workload_id={ti_id}",
        })
        ev.update(task_log_events(p.config.task_log_dir / f"dag_id={dag_id}" / f"run_id={run_id}"
                                  / f"task_id={task_id}" / "attempt=1.log"))
        nxt = tis[i + 1][2] if i + 1 < len(tis) else None

        def gap(a, b):
            return (b - a).total_seconds() if a and b else None

        picked = ev.get("received") if p.config.celery else queued
        rows.append({"task": task_id, "start_date": start, "values": [
            gap(sched, queued), gap(queued, ev.get("received")), gap(picked, ev.get("proc_up")),
            gap(ev.get("proc_up"), ev.get("parsed")), gap(ev.get("parsed"), ev.get("body_done")),
            gap(ev.get("body_done"), end), gap(end, ev.get("finished")), gap(end, nxt)]})
    return {"rows": rows, "created>first scheduled": (tis[0][2] - run_queued).total_seconds(),
            "last success>run success": (run_end - tis[-1][5]).total_seconds(),
            "run": (run_end - run_queued).total_seconds()}


def timeline_table(title: str, tl: dict) -> str:
    head = f"{'task':8s}" + "".join(f"{c:>14s}" for c, _ in TIMELINE_COLUMNS)
    lines = [title, head]
    sums = [0.0] * len(TIMELINE_COLUMNS)
    for row in tl["rows"]:
        cells = []
        for j, v in enumerate(row["values"]):
            cells.append(f"{'-':>14s}" if v is None else f"{v:>14.2f}")
            sums[j] += v or 0.0
        lines.append(f"{row['task']:8s}" + "".join(cells))
    lines.append(f"{'sum':8s}" + "".join(f"{v:>14.2f}" for v in sums))
    lines.append(f"  run created -> first task scheduled {tl['created>first scheduled']:.2f} s; last task's success -> run "
                 f"success {tl['last success>run success']:.2f} s; run queued -> success {tl['run']:.2f} s (metadata DB)")
    return "\n".join(lines)


def wait_settled(p: LocalPlatform, timeout: float = 240) -> float:
    """Seconds until the platform runs what it will run idle: every triggerer has started its
    trigger runner (a child process, tens of seconds after the triggerers, which start once the
    platform is ready), then 10 s more. Its memory is then read idle (:func:`idle_memory`)."""
    t0 = time.monotonic()
    names = [c for c in p.airflow_components() if c.startswith("triggerer")]
    while time.monotonic() - t0 < timeout:
        procs = [p.triggerer_process(n.removeprefix("triggerer-")) if n.startswith("triggerer-") else p.proc(n).process()
                 for n in names]
        if all(proc and proc.children() for proc in procs):
            break
        time.sleep(1)
    time.sleep(10)
    return time.monotonic() - t0


def idle_memory(p: LocalPlatform) -> tuple[dict, dict]:
    """The platform's memory per process kind once idle (``platform_memory.idle_usage``: no parse
    in flight, the same processes in two consecutive samples): measured earlier, the dag-processor's
    rows carried the parses in flight at that moment (~100 MiB between two rounds)."""
    usage, how = idle_usage(lambda: platform_roots(p), p.config.domains)
    print(f"[bench]   sampled {'idle' if how['idle'] else 'NOT idle (gave up)'} after {how['waited_s']:.0f} s, "
          f"{how['refused']} sample(s) refused (parses in flight or processes changing)", flush=True)
    return usage, how


@contextmanager
def running(p: LocalPlatform) -> Iterator[None]:
    """``p``'s referral placeholders in the environment (its settings read them when it starts)
    while the block runs; then the platform stopped, its state removed, the environment restored."""
    saved = {k: os.environ.get(k) for k in p.referral_env}
    os.environ.update(p.referral_env)
    try:
        yield
    finally:
        p.stop()
        shutil.rmtree(p.config.state, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def measure(setup: str, memory_only: bool = False) -> dict:
    """One round of one set-up: start its platform cold, measure, stop it."""
    executor, worker_settings, idle_settings = SETUPS[setup]
    p = make(executor, worker_settings, idle_settings)
    t0 = time.monotonic()
    with running(p):
        p.start(wait_timeout=600)
        started = time.monotonic() - t0
        settled = wait_settled(p)
        usage, how = idle_memory(p)
        if memory_only:
            return {"start_s": started, "settled_s": settled, "usage": usage, "idle": how, "load": os.getloadavg()}
        pw = p.logins()["admin"]
        token = requests.post(f"{p.config.api_url}/auth/token", json={"username": "admin", "password": pw}, timeout=30)
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        requests.patch(f"{p.config.api_url}/api/v2/dags/bench_six_tasks", json={"is_paused": False}, headers=headers,
                       timeout=30).raise_for_status()
        first, _ = run_once(p, headers, "bench_six_tasks")
        six = [run_once(p, headers, "bench_six_tasks") for _ in range(2)]
        tl = timeline(p, "bench_six_tasks", six[-1][1])
        sync = referral_sync(p, headers, runs=1)
        return {"start_s": started, "usage": usage, "first_six_s": first, "six_s": [s for s, _ in six],
                "timeline": tl, "sync_s": sync, "load": os.getloadavg()}


def switch_idle(p: LocalPlatform, idle_settings: str) -> float:
    """The running platform as ``PLATFORM_IDLE_SETTINGS=idle_settings`` would have started it: the
    team-less triggerer and every Flower stopped ("lean"), or started ("previous"); then settled
    (every triggerer's runner started, 10 s more). Seconds it took."""
    t0 = time.monotonic()
    if idle_settings == "lean":
        for name in p.process_names():
            if name == "triggerer" or name.startswith("flower-"):
                p.supervisor.stop_program(name)
        p.config.idle_settings = "lean"
        time.sleep(10)
    else:
        p.config.idle_settings = "previous"
        for name in p.process_names():
            if name == "triggerer" or name.startswith("flower-"):
                p.start_component(name)
        wait_settled(p)
    return time.monotonic() - t0


def measure_in_place(order: list[str]) -> dict[str, dict]:
    """One round of set-ups that differ only in what runs idle: one cold platform, started as
    ``order[0]``, measured, switched to each next set-up and measured; then stopped."""
    executor, worker_settings, first = SETUPS[order[0]]
    assert all(SETUPS[n][:2] == (executor, worker_settings) for n in order), order
    p = make(executor, worker_settings, first)
    # supervisord's configuration lists every program either set-up runs (it is written once, at start)
    every = [*p.airflow_components(), "triggerer", *(f"flower-{d}" for d in p.celery_teams())]
    p.process_names = lambda: list(dict.fromkeys([*LocalPlatform.process_names(p), *every]))
    out = {}
    t0 = time.monotonic()
    with running(p):
        p.start(wait_timeout=600)
        started = time.monotonic() - t0
        for i, name in enumerate(order):
            settled = wait_settled(p) if i == 0 else switch_idle(p, SETUPS[name][2])
            usage, how = idle_memory(p)
            out[name] = {"start_s": started, "settled_s": settled, "usage": usage, "idle": how, "load": os.getloadavg()}
        return out


def save_round(path: Path, results: dict[str, dict]) -> None:
    """Append one round ({set-up: figures}) to ``path`` as a JSON line."""
    row = {n: {**r, "usage": {k: asdict(u) for k, u in r["usage"].items()}} for n, r in results.items()}
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def load_rounds(path: Path) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        for n, r in json.loads(line).items():
            results.setdefault(n, []).append({**r, "usage": {k: Usage(**u) for k, u in r["usage"].items()}})
    return results


def median_round(rounds: list[dict]) -> dict:
    """The round whose idle PSS total is the median one (its per-kind figures are printed)."""
    ordered = sorted(rounds, key=lambda r: total(r["usage"]).pss)
    return ordered[(len(ordered) - 1) // 2]


def report(results: dict[str, list[dict]]) -> None:
    names = list(results)
    loads = [r["load"] for rs in results.values() for r in rs]
    print(f"\nexecutors benchmark, {os.cpu_count()} cores, {len(results[names[0]])} interleaved round(s); "
          f"1-min load average after each set-up's round: {[round(la[0], 1) for la in loads]}")
    print(f"{'':52s}" + "".join(f"{n:>16s}" for n in names))

    def row(label, values, fmt="{:.1f}"):
        print(f"{label:52s}" + "".join(f"{fmt.format(v):>16s}" for v in values))

    med = {n: {k: statistics.median([x for r in rs for x in (r[k] if isinstance(r[k], list) else [r[k]])])
               for k in ("start_s", "first_six_s", "six_s", "sync_s")} for n, rs in results.items()}
    row("start, cold (s, median)", [med[n]["start_s"] for n in names])
    row("idle PSS, whole platform (MiB, median)",
        [statistics.median([total(r["usage"]).pss / 2**20 for r in results[n]]) for n in names], "{:.0f}")
    row("idle RSS summed (MiB, median; double-counts)",
        [statistics.median([total(r["usage"]).rss / 2**20 for r in results[n]]) for n in names], "{:.0f}")
    row("6-task DAG, trigger->success (s, median)", [med[n]["six_s"] for n in names], "{:.2f}")
    row("6-task DAG, first run after start (s, median)", [med[n]["first_six_s"] for n in names], "{:.2f}")
    row("referral sync, no changes (s, median)", [med[n]["sync_s"] for n in names], "{:.2f}")
    if "local" in results:
        for n in names:
            if n != "local":
                print(f"  {n} / local: 6-task {med[n]['six_s'] / med['local']['six_s']:.2f}x, referral sync "
                      f"{med[n]['sync_s'] / med['local']['sync_s']:.2f}x")
    for n in names:
        print(f"  {n} runs: 6-task {[round(x, 2) for r in results[n] for x in r['six_s']]}, first after start "
              f"{[round(r['first_six_s'], 2) for r in results[n]]}, referral {[round(x, 2) for r in results[n] for x in r['sync_s']]}, "
              f"start {[round(r['start_s'], 1) for r in results[n]]}")
    print("\nidle memory per process kind (the round with the median PSS total of each set-up; MiB). PSS charges a page"
          "\nshared with processes outside the platform (the same .so files in another platform) partly to them.")
    print(memory_table({n: median_round(results[n])["usage"] for n in names}))
    print("\ntimeline of one 6-task run (the last round's second timed run) per set-up, seconds:")
    for c, text in TIMELINE_COLUMNS:
        print(f"  {c:14s} {text}")
    for n in names:
        print()
        print(timeline_table(f"{n}:", results[n][-1]["timeline"]))


def report_memory(results: dict[str, list[dict]]) -> None:
    names = list(results)
    print(f"\nidle memory, {len(results[names[0]])} interleaved round(s), each platform alone, measured once every "
          f"triggerer had started its trigger runner and then idle (no parse in flight, the same processes in two "
          f"samples 5 s apart); 1-min load average after each: "
          f"{[round(r['load'][0], 1) for rs in results.values() for r in rs]}")
    for n in names:
        hows = [r.get("idle") for r in results[n]]
        print(f"  {n}: sampled idle {[h['idle'] if h else 'not checked' for h in hows]}, after "
              f"{[round(h['waited_s']) if h else None for h in hows]} s")
    for n in names:
        print(f"  {n}: PSS {[round(total(r['usage']).pss / 2**20) for r in results[n]]} MiB, median "
              f"{statistics.median([total(r['usage']).pss / 2**20 for r in results[n]]):.0f}; RSS summed median "
              f"{statistics.median([total(r['usage']).rss / 2**20 for r in results[n]]):.0f}; start "
              f"{[round(r['start_s'], 1) for r in results[n]]} s")
    print("per process kind (the round with the median PSS total of each set-up; MiB):")
    print(memory_table({n: median_round(results[n])["usage"] for n in names}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--setups", default=",".join(DEFAULT_SETUPS), help="comma-separated, of: " + ", ".join(SETUPS))
    parser.add_argument("--memory-only", action="store_true", help="only start, settle and the idle PSS per kind")
    parser.add_argument("--in-place", action="store_true",
                        help="with --memory-only: one platform per round, switched between the set-ups")
    parser.add_argument("--first-round", type=int, default=1, help="the number of the first round (sets its order)")
    parser.add_argument("--save", type=Path, help="append each round's figures to this file (JSON lines)")
    parser.add_argument("--report", nargs="+", metavar="[LABEL=]FILE",
                        help="only print the idle memory of the rounds saved in these files (each set-up of a file "
                             "under LABEL, side by side: e.g. before=main.jsonl after=branch.jsonl)")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # each line as it is printed, also into a file
    if args.report:
        results = {}
        for entry in args.report:
            label, _, path = entry.rpartition("=")
            for n, rounds in load_rounds(Path(path)).items():
                results[f"{label} {n}".strip() if label else n] = rounds
        report_memory(results)
        return
    names = args.setups.split(",")
    results: dict[str, list[dict]] = {n: [] for n in names}
    if args.in_place:
        for r in range(args.first_round - 1, args.first_round - 1 + args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]  # the order rotated each round
            print(f"[bench] round {r + 1}: one platform, {' then '.join(order)}", flush=True)
            got = measure_in_place(order)
            for n, m in got.items():
                results[n].append(m)
                print(f"[bench]   {n}: start {m['start_s']:.1f} s, settled {m['settled_s']:.0f} s later, idle PSS "
                      f"{total(m['usage']).pss / 2**20:.0f} MiB, load {m['load'][0]:.1f}", flush=True)
            if args.save:
                save_round(args.save, got)
        report_memory(results)
        return
    for r in range(args.rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:  # the order rotated each round
            print(f"[bench] round {r + 1}/{args.rounds}: {n}", flush=True)
            results[n].append(m := measure(n, args.memory_only))
            if args.memory_only:
                print(f"[bench]   start {m['start_s']:.1f} s, settled {m['settled_s']:.0f} s later, idle PSS "
                      f"{total(m['usage']).pss / 2**20:.0f} MiB, load {m['load'][0]:.1f}", flush=True)
                continue
            print(f"[bench]   start {m['start_s']:.1f} s, idle PSS {total(m['usage']).pss / 2**20:.0f} MiB, 6-task "
                  f"{[round(x, 2) for x in m['six_s']]} (first {m['first_six_s']:.2f}), referral {m['sync_s']}, "
                  f"load {m['load'][0]:.1f}", flush=True)
        if args.memory_only:
            report_memory(results)
        elif r + 1 < args.rounds:  # what the rounds so far say, in case the run is cut short
            report(results)
    if args.memory_only:
        return
    print(f"\n[bench] all {args.rounds} rounds:")
    report(results)


if __name__ == "__main__":
    main()
