"""Benchmark (not a test): noisy neighbours (issue 26, item 2). Does one team's flood stall another?

One real platform (``tests/live_platform.py``'s, its own state folder and free ports; the two
teams involved: the flooding team ``aurora`` and the victim ``hss_workflow``), rounds
interleaved quiet / flood, medians per phase. In each round the victim does, at the same time:

- **due -> running**: a one-task DAG of the victim (``hss_workflow_noisy_probe``, the
  platform's defaults) triggered through REST, the due time being the trigger time; the wait
  is the task's ``start_date`` minus the trigger time (one machine, one clock);
- **comprehensive_analysis**: hss_workflow's DAG with the seed conf, trigger -> success;
- **file -> visible**: a new DAG file written into the victim's bundle, until
  ``GET /api/v2/dags/{dag_id}`` answers.

A flood round first floods, then measures: ``--flood-runs`` (500) runs of a DAG of ``aurora``
with ``--flood-tasks`` short mapped tasks each, written as a team may write it (no platform
defaults: Airflow's global pool, its default active runs), triggered through REST, and
``--slow-files`` DAG files in aurora's bundle whose top-level code burns ``--slow-seconds`` of
CPU. After the victim's measurement the flood is stopped (DAG paused, its queued and running
tasks drained, the slow files removed) before the next round.

``--limits off`` builds the platform with ``PLATFORM_TEAM_LIMITS=0`` (per-team limits off,
``platform_runtime.team_limits``); ``on`` (default) as ``make start`` does. ``--cpu-groups off``
starts every platform process in supervisord's one CPU group (``PLATFORM_CPU_GROUPS=0``,
``platform_runtime.autogroup``); ``on`` (default) each in its own. ``--parse-share off`` builds it
with ``PLATFORM_PARSE_SHARE=0`` (no bundle's share of the dag-processor's parse slots:
Airflow's one queue for every slot; ``platform_runtime.airflow_internals``). Run it alone on the machine
(``make bench-noisy`` holds ``/tmp/bench.lock``); one mode per call.

    python -m benchmarks.noisy_neighbours [--limits on|off] [--cpu-groups on|off] [--parse-share on|off] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import requests

FLOODER = "aurora"
VICTIM = "hss_workflow"
TEAMS = [FLOODER, VICTIM]

FLOOD = '''"""Noisy-neighbour flood (benchmark/test-only): many short mapped tasks, written without the
platform's defaults (Airflow's global pool, Airflow's default active runs)."""
from airflow.sdk import dag, task


@dag(dag_id="{team}_noisy_flood", schedule=None, tags=["{team}"], doc_md=__doc__)
def noisy_flood():
    @task(retries=0)
    def short(i: int) -> int:
        return i

    short.expand(i=list(range({tasks})))


noisy_flood()
'''
SLOW = '''"""Noisy-neighbour slow file (benchmark/test-only): its top-level code burns {seconds} s of CPU."""
import time

from airflow.sdk import DAG

_end = time.process_time() + {seconds}
while time.process_time() < _end:
    pass

with DAG("{team}_noisy_slow_{n}", schedule=None, tags=["{team}"], doc_md=__doc__):
    pass
'''
PROBE = '''"""Noisy-neighbour probe (benchmark/test-only): one task, the platform's defaults."""
from airflow.sdk import dag, task

from shared.dag_defaults import dag_kwargs


@dag(dag_id="{team}_noisy_probe", schedule=None, **dag_kwargs("{team}", doc_md=__doc__, max_active_runs=16))
def noisy_probe():
    @task
    def due() -> int:
        return 1

    due()


noisy_probe()
'''
NEW_FILE = '''"""Noisy-neighbour new file (benchmark/test-only): how long until it is visible."""
from airflow.sdk import DAG

with DAG("{dag_id}", schedule=None, tags=["{team}"], doc_md=__doc__):
    pass
'''


def plant() -> dict[str, str]:
    """Test-only files for every bundle (``make_platform(plant=...)``); the flood DAG is planted
    with the number of tasks filled in by :func:`make`."""
    return {"{team}_noisy_probe.py": PROBE}


def make(limits: bool, flood_tasks: int, cpu_groups: bool = True, parse_share: bool = True, **config):
    """A platform of its own with the two teams, the probe in every bundle and the flood DAG in
    the flooder's (paused, as every new DAG)."""
    from tests.live_platform import running_platform

    files = {**plant(), "{team}_noisy_flood.py": FLOOD.replace("{tasks}", str(flood_tasks))}
    return running_platform("celery", plant=files, domains=TEAMS, team_limits=limits, cpu_groups=cpu_groups,
                            parse_share=parse_share, **config)


def now() -> datetime:
    return datetime.now(UTC)


def wait_for(what: str, check, timeout: float, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


def metadata_db(platform):
    return closing(psycopg2.connect(platform.pg.admin_dsn("airflow")))


def ti_states(platform, dag_id: str) -> dict[str, int]:
    with metadata_db(platform) as conn, conn.cursor() as cur:
        cur.execute("SELECT coalesce(state, 'none'), count(*) FROM task_instance WHERE dag_id = %s GROUP BY 1", (dag_id,))
        return dict(cur.fetchall())


def run_states(platform, dag_id: str) -> dict[str, int]:
    with metadata_db(platform) as conn, conn.cursor() as cur:
        cur.execute("SELECT state, count(*) FROM dag_run WHERE dag_id = %s GROUP BY 1", (dag_id,))
        return dict(cur.fetchall())


class Victim:
    """What the victim team measures (one REST client as its op user)."""

    def __init__(self, user, platform) -> None:
        self.user = user
        self.platform = platform
        self.bundle = platform.config.bundle_path(VICTIM)
        self.conf = user.seed_confs()["comprehensive_analysis"]
        for dag_id in (f"{VICTIM}_noisy_probe", "comprehensive_analysis"):
            r = user.call(VICTIM, "PATCH", f"/dags/{dag_id}", json={"is_paused": False})
            assert r.status_code == 200, r.text

    def trigger(self, dag_id: str, conf: dict | None = None) -> tuple[datetime, str]:
        t0 = now()
        r = self.user.call(VICTIM, "POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, **({"conf": conf} if conf else {})})
        assert r.status_code == 200, r.text
        return t0, r.json()["dag_run_id"]

    def due_to_running(self) -> float:
        dag_id = f"{VICTIM}_noisy_probe"
        t0, run_id = self.trigger(dag_id)

        def started():
            r = self.user.call(VICTIM, "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/due")
            return r.json().get("start_date") if r.status_code == 200 else None

        # the figure is the task's own start_date (no poll step in it); polled every 0.1 s all the same
        start = wait_for("probe task started", started, 600, every=0.1)
        return (datetime.fromisoformat(start) - t0).total_seconds()

    def analysis(self) -> float:
        t0, run_id = self.trigger("comprehensive_analysis", self.conf)

        def finished():
            run = self.user.call(VICTIM, "GET", f"/dags/comprehensive_analysis/dagRuns/{run_id}").json()
            if run["state"] == "failed":
                raise RuntimeError(f"comprehensive_analysis {run_id} failed")
            return run["end_date"] if run["state"] == "success" else None

        # the figure is the run's own end_date (no poll step in it): polled once a second, so the
        # polls add no load to the api-server the run's tasks call
        end = wait_for("comprehensive_analysis succeeded", finished, 900, every=1)
        self.last_path = self.critical_path(run_id, t0)
        return (datetime.fromisoformat(end) - t0).total_seconds()

    def critical_path(self, run_id: str, t0: datetime) -> dict[str, float]:
        """Where a run's seconds went, along its critical path (from the task that ended last back
        through the upstream task that ended last): ``schedule`` = upstreams done (or the trigger)
        -> queued (the scheduler), ``dispatch`` = queued -> started (Celery, the worker's fork,
        the task's start-up), ``run`` = started -> ended."""
        tasks = self.user.call(VICTIM, "GET", "/dags/comprehensive_analysis/tasks").json()["tasks"]
        upstream: dict[str, list[str]] = {t["task_id"]: [] for t in tasks}
        for t in tasks:
            for d in t["downstream_task_ids"]:
                upstream[d].append(t["task_id"])
        with metadata_db(self.platform) as conn, conn.cursor() as cur:
            cur.execute("SELECT task_id, queued_dttm, start_date, end_date FROM task_instance "
                        "WHERE dag_id = 'comprehensive_analysis' AND run_id = %s", (run_id,))
            ti = {row[0]: row[1:] for row in cur.fetchall()}
        out = {"schedule": 0.0, "dispatch": 0.0, "run": 0.0}
        task = max(ti, key=lambda k: ti[k][2])
        while task is not None:
            queued, start, end = ti[task]
            before = max(upstream[task], key=lambda k: ti[k][2], default=None)
            ready = ti[before][2] if before else t0
            out["schedule"] += (queued - ready).total_seconds()
            out["dispatch"] += (start - queued).total_seconds()
            out["run"] += (end - start).total_seconds()
            task = before
        return out

    def file_visible(self, tag: str) -> float:
        dag_id = f"{VICTIM}_noisy_new_{tag}"
        path = self.bundle / f"{dag_id}.py"
        t0 = time.monotonic()
        path.write_text(NEW_FILE.format(dag_id=dag_id, team=VICTIM))
        os.chmod(path, 0o644)
        # polled every 0.1 s: the figure is about a second now (the dag-processor's loop turn + a parse)
        wait_for(f"{dag_id} visible", lambda: self.user.call(VICTIM, "GET", f"/dags/{dag_id}").status_code == 200, 600,
                 every=0.1)
        return time.monotonic() - t0

    def measure(self, tag: str) -> dict[str, float]:
        """The three at once: the file in a thread, the probe then the analysis in this one."""
        out: dict[str, float] = {}
        errors: list[BaseException] = []

        def file():
            try:
                out["file -> visible"] = self.file_visible(tag)
            except BaseException as e:  # re-raised below
                errors.append(e)

        t = threading.Thread(target=file)
        t.start()
        out["due -> running"] = self.due_to_running()
        out["comprehensive_analysis"] = self.analysis()
        for k, v in self.last_path.items():
            out[f"  its critical path: {k}"] = v
        t.join()
        if errors:
            raise errors[0]
        return out


class Flood:
    """The flooding team: ``runs`` queued runs of its flood DAG, ``slow_files`` slow DAG files."""

    def __init__(self, user, platform, runs: int, slow_files: int, slow_seconds: float) -> None:
        self.user = user
        self.platform = platform
        self.runs = runs
        self.slow_files = slow_files
        self.slow_seconds = slow_seconds
        self.dag_id = f"{FLOODER}_noisy_flood"
        self.bundle = platform.config.bundle_path(FLOODER)
        self.written: list[Path] = []

    def start(self, tag: str) -> float:
        """Slow files written, the runs triggered (paused: none starts before all exist), then
        unpaused; returns the seconds the triggering took."""
        for n in range(self.slow_files):
            path = self.bundle / f"{FLOODER}_noisy_slow_{tag}_{n}.py"
            path.write_text(SLOW.format(team=FLOODER, n=f"{tag}_{n}", seconds=self.slow_seconds))
            os.chmod(path, 0o644)
            self.written.append(path)
        t0 = time.monotonic()

        def one(_):
            for _ in range(3):  # a call may time out on a loaded machine: tried again
                try:
                    r = self.user.call(FLOODER, "POST", f"/dags/{self.dag_id}/dagRuns", json={"logical_date": None})
                    assert r.status_code == 200, r.text
                    return
                except requests.RequestException:
                    pass

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, range(self.runs)))
        took = time.monotonic() - t0
        r = self.user.call(FLOODER, "PATCH", f"/dags/{self.dag_id}", json={"is_paused": False})
        assert r.status_code == 200, r.text
        wait_for("flood tasks running", lambda: ti_states(self.platform, self.dag_id).get("success", 0) > 0, 300)
        return took

    def stop(self) -> None:
        """Paused, its queued and running tasks drained, its runs deleted, the slow files removed."""
        r = self.user.call(FLOODER, "PATCH", f"/dags/{self.dag_id}", json={"is_paused": True})
        assert r.status_code == 200, r.text
        for path in self.written:
            path.unlink(missing_ok=True)
        self.written.clear()
        # paused, its scheduled tasks stay scheduled; the queued and running ones finish
        wait_for("flood drained", lambda: not {"queued", "running"} & {
            s for s, n in ti_states(self.platform, self.dag_id).items() if n}, 600, every=1)
        # the runs themselves (paused, they would wait forever): deleted as the REST API does it
        with metadata_db(self.platform) as conn, conn.cursor() as cur:
            cur.execute("SELECT run_id FROM dag_run WHERE dag_id = %s", (self.dag_id,))
            run_ids = [row[0] for row in cur.fetchall()]

        def delete(run_id):
            for _ in range(3):  # a call may time out on a loaded machine: tried again
                try:
                    if self.user.call(FLOODER, "DELETE", f"/dags/{self.dag_id}/dagRuns/{run_id}").status_code in (204, 404):
                        return
                except requests.RequestException:
                    pass

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(delete, run_ids))


def zygote_team(proc) -> str | None:
    """The team of a dag-processor's parse zygote (``platform_runtime.airflow_internals``), else None."""
    import psutil

    try:
        if "zygote" in proc.cmdline():
            return proc.environ().get("_PLATFORM_TEAM")
    except psutil.Error:
        pass
    return None


def process_trees(platform) -> dict[str, list]:
    """Every platform process by supervisord program, each team's parse zygote (with its parses)
    apart from the dag-processor as ``zygote-<team>``."""
    import psutil

    out: dict[str, list] = {}

    def add(name: str, root) -> None:
        todo = [root]
        while todo:
            q = todo.pop()
            try:
                children = q.children()
            except psutil.Error:  # ended meanwhile
                continue
            out.setdefault(name, []).append(q)
            for c in children:
                team = zygote_team(c) if name == "dag-processor" else None
                if team:
                    add(f"zygote-{team}", c)
                else:
                    todo.append(c)

    for name in platform.process_names():
        proc = platform.proc(name).process()
        if proc is not None:
            add(name, proc)
    return out


def cpu_by_component(platform) -> dict[str, float]:
    """CPU seconds (user + system) every platform process tree has used so far (:func:`process_trees`):
    per tree, the sum over its live processes of their own time and that of their reaped children,
    so a task process that came and went counts in its worker's tree. The difference of two calls
    is what each used between them."""
    import psutil

    out: dict[str, float] = {}
    for name, procs in process_trees(platform).items():
        for q in procs:
            try:
                t = q.cpu_times()
            except psutil.Error:
                continue
            out[name] = out.get(name, 0.0) + t.user + t.system + t.children_user + t.children_system
    return out


def team_cpu_limit(platform, on: bool, cores: float | None = None) -> None:
    """The teams' CPU limit switched at run time (``--cpu-limit both``): every process of a team
    (worker, triggerer, Flower, parse zygote, and what they run) into the team's cgroup, as the
    platform starts them (on), or back into the root cgroup (off), where each again weighs one
    share per process group (its autogroup) and nothing caps the team: the build with
    ``PLATFORM_TEAM_CPU_LIMIT=0``. Twice: what was forked during the first move follows.
    ``cores``: every team's cap set to that many cores instead of its ``limits.cpu_cores``."""
    from platform_runtime.autogroup import CGROUP_CPU, cgroup_pids, join_cgroup, set_cores
    from platform_runtime.team_limits import team_limits

    if on:
        for team in TEAMS:
            set_cores(platform.config.team_cgroup(team), cores or float(team_limits(team)["cpu_cores"]))

    for _ in range(2):
        for team in TEAMS:
            path = platform.config.team_cgroup(team)
            if on:
                trees = process_trees(platform)
                pids = [q.pid for name, procs in trees.items() for q in procs
                        if name == f"zygote-{team}" or platform.team_of_process(name) == team]
            else:
                pids = cgroup_pids(path)
            for pid in pids:
                try:
                    join_cgroup(path if on else CGROUP_CPU, pid)
                except OSError:  # ended meanwhile
                    pass


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip().split("load average:")[-1].strip()


def median_table(title: str, results: dict[str, dict[str, list[float]]], cpu: dict[str, dict[str, list[float]]]) -> None:
    print(f"\n{title}")
    print(f"{'victim delay':<32} {'quiet':>8} {'flood':>8} {'ratio':>6}   values quiet | flood")
    for metric in results["quiet"]:
        q, f = statistics.median(results["quiet"][metric]), statistics.median(results["flood"][metric])
        print(f"{metric:<32} {q:>7.1f}s {f:>7.1f}s {f / q if q else float('nan'):>5.2f}x   "
              f"{' '.join(f'{v:.1f}' for v in results['quiet'][metric])} | {' '.join(f'{v:.1f}' for v in results['flood'][metric])}")
    print("CPU used during the victim's measurement, by platform process tree, in cores (CPU s / wall s; medians)")
    print(f"{'component':<32} {'quiet':>8} {'flood':>8}")
    for name in sorted(cpu["flood"], key=lambda n: -statistics.median(cpu["flood"][n])):
        q, f = (statistics.median(cpu[ph].get(name, [0.0])) for ph in ("quiet", "flood"))
        if max(q, f) >= 0.005:
            print(f"{name:<32} {q:>8.2f} {f:>8.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limits", choices=["on", "off"], default="on")
    ap.add_argument("--cpu-groups", choices=["on", "off"], default="on")
    ap.add_argument("--parse-share", choices=["on", "off"], default="on")
    ap.add_argument("--cpu-limit", choices=["on", "off", "both"], default="on",
                    help="the teams' CPU limit (cgroups, limits.cpu_cores); both: off and on side by side on one "
                         "platform, switched at run time in each phase (needs root)")
    ap.add_argument("--also-cores", default="",
                    help="with --cpu-limit both: more modes, each every team's cgroup capped at these cores "
                         "(comma-separated) instead of its limits.cpu_cores")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--flood-runs", type=int, default=500)
    ap.add_argument("--flood-tasks", type=int, default=50)
    ap.add_argument("--slow-files", type=int, default=4)
    ap.add_argument("--slow-seconds", type=float, default=20)
    ap.add_argument("--settle", type=float, default=15, help="seconds of flood before the victim measures")
    ap.add_argument("--switch-settle", type=float, default=8,
                    help="with --cpu-limit both: seconds after switching the CPU limit before the victim measures")
    args = ap.parse_args()
    # stopped with SIGTERM (or SIGINT, ignored in a background job): the platform is still stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    from tests.newcomer import Newcomer

    modes = ["off", "on"] if args.cpu_limit == "both" else [args.cpu_limit]
    if args.cpu_limit == "both":
        modes += [f"on@{float(c):g}" for c in args.also_cores.split(",") if c.strip()]
    print(f"[noisy] limits {args.limits}, CPU groups {args.cpu_groups}, parse share {args.parse_share}, "
          f"teams' CPU limit {args.cpu_limit}: starting a platform ({', '.join(TEAMS)}); "
          f"load {load()}", flush=True)
    results = {m: {"quiet": {}, "flood": {}} for m in modes}
    cpu = {m: {"quiet": {}, "flood": {}} for m in modes}
    loads: list[str] = []
    with make(args.limits == "on", args.flood_tasks, cpu_groups=args.cpu_groups == "on",
              parse_share=args.parse_share == "on", team_cpu_limit=args.cpu_limit != "off") as platform:
        if platform.config.cpu_groups:
            print(f"[noisy] a team's CPU groups at autogroup nice {platform.config.autogroup_nice(True)}, the control "
                  f"plane's at {platform.config.autogroup_nice(False)} (PLATFORM_TEAM_CPU_NICE); teams' cgroups "
                  f"{platform.config.cgroup_base}", flush=True)
        if args.cpu_limit != "off" and platform.config.cgroup_base is None:
            raise SystemExit("--cpu-limit on/both: no teams' cgroups on this machine (root and a cgroup v1 cpu controller)")
        user = Newcomer(platform)
        victim = Victim(user, platform)
        flood = Flood(user, platform, args.flood_runs, args.slow_files, args.slow_seconds)
        print(f"[noisy] warm-up: {victim.measure('warmup')}", flush=True)

        def measure(phase: str, mode: str, tag: str, extra: str = "") -> None:
            if len(modes) > 1:
                team_cpu_limit(platform, mode != "off", float(mode[3:]) if mode.startswith("on@") else None)
                time.sleep(args.switch_settle)
            cpu0, w0 = cpu_by_component(platform), time.monotonic()
            figures = victim.measure(f"{tag}_{mode}".replace("@", "_").replace(".", "_"))  # a valid dag_id
            wall = time.monotonic() - w0
            cpu1 = cpu_by_component(platform)
            loads.append(load())
            # each component's CPU during the victim's measurement, in cores (CPU s / wall s)
            for name, used in cpu1.items():
                cpu[mode][phase].setdefault(name, []).append((used - cpu0.get(name, 0.0)) / wall)
            for k, v in figures.items():
                results[mode][phase].setdefault(k, []).append(v)
            if phase == "flood":
                extra += f"; flood runs {run_states(platform, flood.dag_id)}"
            print(f"[noisy] {datetime.now(UTC):%H:%M:%S} round {tag} CPU limit {mode}: "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in figures.items()) + f"; load {loads[-1]}{extra}", flush=True)

        for i in range(args.rounds):
            order = modes if i % 2 == 0 else modes[::-1]  # which mode goes first alternates
            for mode in order:
                measure("quiet", mode, f"quiet{i}")
            took = flood.start(f"flood{i}")
            time.sleep(args.settle)
            for mode in order:
                measure("flood", mode, f"flood{i}", f" (triggered {args.flood_runs} runs in {took:.0f} s)")
            flood.stop()
    for mode in modes:
        median_table(f"noisy neighbours, limits {args.limits.upper()}, CPU groups {args.cpu_groups.upper()}, parse share "
                     f"{args.parse_share.upper()}, teams' CPU limit {mode.upper()} ({args.rounds} interleaved rounds, "
                     f"medians; victim {VICTIM}, flooder {FLOODER}: {args.flood_runs} runs x {args.flood_tasks} tasks, "
                     f"{args.slow_files} files parsing {args.slow_seconds:.0f} s CPU)", results[mode], cpu[mode])
    print(f"load averages at each measurement: {'; '.join(loads)}")


if __name__ == "__main__":
    main()
