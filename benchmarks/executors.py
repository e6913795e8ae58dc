"""Benchmark (not a test): per-team Celery workers against the earlier LocalExecutor set-up.

One run starts a whole platform per set-up, one after the other, on its own ports and
state folder, and measures side by side: platform start wall time (cold: fresh database),
the platform's total resident memory once idle, trigger -> success of a 6-task DAG of
no-op tasks (3 runs, sequential), and trigger -> success of the referral sync
(``bullhorn_sync_optimized``) with no changes (2 runs after the first, loading sync), against
referral's own stand-ins moved to free ports (their settings' ports belong to `make start`).

``python -m benchmarks.executors``
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import psutil
import requests

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


def make(executor: str) -> LocalPlatform:
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
        bundle_paths={"referral": folder}, executor=executor,
        redis_ports={t: ports.pop() for t in teams}, flower_ports={t: ports.pop() for t in teams},
    )
    p = LocalPlatform(cfg, quiet=True)
    specs = [(d, spec) for d, spec in p.standin_specs() if d == "referral"]
    moved = {spec["name"]: port for (_, spec), port in zip(specs, free_ports(len(specs)), strict=True)}
    p.standin_specs = lambda: [(d, {**spec, "port": moved[spec["name"]]}) for d, spec in specs]
    p.referral_env = {"REFERRAL_BULLHORN_URL": f"http://127.0.0.1:{moved['bullhorn']}",
                      "REFERRAL_ML_SERVICE_URL": f"http://127.0.0.1:{moved['ml_service']}"}
    return p


def resident_mib(p: LocalPlatform) -> float:
    pids = set()
    for name in p.process_names():
        proc = p.proc(name).process()
        if proc:
            pids |= {proc.pid, *(c.pid for c in proc.children(recursive=True))}
    if p.pg.pid():
        pg = psutil.Process(p.pg.pid())
        pids |= {pg.pid, *(c.pid for c in pg.children(recursive=True))}
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def run_once(p: LocalPlatform, headers: dict, dag_id: str, timeout: float = 600) -> float:
    api = f"{p.config.api_url}/api/v2"
    t0 = time.monotonic()
    r = requests.post(f"{api}/dags/{dag_id}/dagRuns", json={"logical_date": None}, headers=headers, timeout=30)
    r.raise_for_status()
    run_id = r.json()["dag_run_id"]
    while time.monotonic() - t0 < timeout:
        state = requests.get(f"{api}/dags/{dag_id}/dagRuns/{run_id}", headers=headers, timeout=30).json()["state"]
        if state == "success":
            return time.monotonic() - t0
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
    return [run_once(p, headers, dag_id) for _ in range(runs)]


def measure(executor: str) -> dict:
    p = make(executor)
    saved = {k: os.environ.get(k) for k in p.referral_env}
    os.environ.update(p.referral_env)  # read by the settings' placeholders when the platform starts
    t0 = time.monotonic()
    try:
        p.start(wait_timeout=600)
        started = time.monotonic() - t0
        time.sleep(20)  # let every component settle before measuring memory
        rss = resident_mib(p)
        pw = p.logins()["admin"]
        token = requests.post(f"{p.config.api_url}/auth/token", json={"username": "admin", "password": pw}, timeout=30)
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        requests.patch(f"{p.config.api_url}/api/v2/dags/bench_six_tasks", json={"is_paused": False}, headers=headers,
                       timeout=30).raise_for_status()
        six = [run_once(p, headers, "bench_six_tasks") for _ in range(3)]
        sync = referral_sync(p, headers)
        return {"start_s": started, "rss_mib": rss, "six_s": six, "sync_s": sync}
    finally:
        p.stop()
        shutil.rmtree(p.config.state, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main() -> None:
    results = {mode: measure(mode) for mode in ("local", "celery")}
    load = os.getloadavg()[0]
    print(f"\nexecutors benchmark, {os.cpu_count()} cores, load average at the end {load:.1f}")
    print(f"{'':44s} {'LocalExecutor':>16s} {'Celery per team':>16s}")
    rows = [
        ("make-start equivalent, cold (s)", "start_s", "{:.1f}"),
        ("platform resident memory, idle (MiB)", "rss_mib", "{:.0f}"),
    ]
    for label, key, fmt in rows:
        print(f"{label:44s} {fmt.format(results['local'][key]):>16s} {fmt.format(results['celery'][key]):>16s}")
    med = {m: statistics.median(r["six_s"]) for m, r in results.items()}
    print(f"{'6-task DAG: trigger->success, median of 3 (s)':44s} {med['local']:>16.1f} {med['celery']:>16.1f}")
    print(f"  (all runs: local {[round(x, 1) for x in results['local']['six_s']]}, "
          f"celery {[round(x, 1) for x in results['celery']['six_s']]})")
    med = {m: statistics.median(r["sync_s"]) for m, r in results.items()}
    print(f"{'referral sync, no changes: trigger->success (s)':44s} {med['local']:>16.1f} {med['celery']:>16.1f}")
    print(f"  (all runs: local {[round(x, 1) for x in results['local']['sync_s']]}, "
          f"celery {[round(x, 1) for x in results['celery']['sync_s']]})")


if __name__ == "__main__":
    main()
