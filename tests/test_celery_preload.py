"""platform_runtime/celery_preload.py: a team worker with the platform's settings imports it before
it forks its pool, and a process forked afterwards (a pool process, a task process) finds the
Task SDK's listener manager already built instead of building it for every task (issue 25)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from devplatform.config import PlatformConfig
from devplatform.paths import ROOT
from devplatform.tenants import TeamRuntime

# What `airflow celery worker` does before it starts its pool: Airflow's Celery app, then Celery's
# loader.init_worker() (the import_modules signal and the app's ``imports``). Then a fork, as
# the pool and the supervisor fork: the child builds nothing.
PROBE = """
import json, os, sys, time
from airflow.providers.celery.executors.celery_executor_utils import app
parent_before = "platform_runtime.celery_preload" in sys.modules
app.loader.init_worker()
from celery.signals import worker_ready
worker_ready.send(sender=None)  # the pool has forked: Airflow's receiver unfreezes, the platform's freezes again
from airflow.sdk.listener import get_listener_manager
built = get_listener_manager.cache_info().currsize
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    t = time.perf_counter()
    manager = get_listener_manager()
    import gc
    gc.collect()  # what a pool process's first full collection does to the pages it shares
    rollup = {l.split()[0]: int(l.split()[1]) for l in open("/proc/self/smaps_rollup") if l.split()[-1:] == ["kB"]}
    os.write(w, json.dumps({"cached": get_listener_manager.cache_info().hits > 0,
                            "seconds": time.perf_counter() - t,
                            "private_mib": (rollup["Private_Clean:"] + rollup["Private_Dirty:"]) / 1024,
                            "listeners": [type(p).__name__ for p in manager.pm.get_plugins()]}).encode())
    os._exit(0)
os.waitpid(pid, 0)
child = json.loads(os.read(r, 65536))
import gc
print(json.dumps({"imports": list(app.conf.imports), "before": parent_before, "built": built, "child": child,
                  "frozen": gc.get_freeze_count()}))
"""


def run_probe(tmp_path, worker_settings: str) -> dict:
    cfg = PlatformConfig(state=tmp_path, worker_settings=worker_settings)
    env = TeamRuntime(cfg, "referral").worker_env()
    env["AIRFLOW_HOME"] = str(tmp_path / "home")
    os.makedirs(env["AIRFLOW_HOME"], exist_ok=True)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_worker_builds_the_listener_manager_once_before_its_pool_forks(tmp_path):
    tuned = run_probe(tmp_path, "tuned")
    assert tuned["imports"] == ["platform_runtime.celery_preload"]
    assert tuned["before"] is False and tuned["built"] == 1  # built by init_worker, not before
    assert tuned["child"]["cached"] is True
    assert "OpenLineageListener" in tuned["child"]["listeners"]


def test_the_workers_objects_stay_frozen_so_a_forks_collection_leaves_its_pages_shared(tmp_path):
    """The worker's objects frozen by the preload and again once the worker is ready (after
    Airflow's own receiver unfroze them): a full collection in a fork (a pool process the
    autoscaler starts) walks none of them, so it copies next to none of the worker's pages
    (about 60 MiB copied without, measured with this probe)."""
    tuned = run_probe(tmp_path, "tuned")
    assert tuned["frozen"] > 100_000
    assert tuned["child"]["private_mib"] < 25, tuned["child"]


def test_without_the_setting_every_forked_process_builds_it_itself(tmp_path):
    previous = run_probe(tmp_path, "previous")
    assert previous["imports"] == [] and previous["built"] == 0
    assert previous["child"]["cached"] is False
    assert "OpenLineageListener" in previous["child"]["listeners"]
