"""Benchmark (not a test): ``make start``'s wall time, phase by phase.

Starts the whole platform as ``make start`` does (every stand-in, per-team Redis, Celery
workers and Flower, every Airflow component), cold (fresh state folder) on free ports, and
prints the time of each phase as ``LocalPlatform.start`` logs it; then stops it.

``python -m benchmarks.start_time [RUNS] [--no-standins] [--compare-late]``

``--compare-late``: RUNS rounds, each a start with the triggerers and Flower started once the
platform is ready (``START_AFTER_READY``, what ``make start`` does) and one that starts them
with the other components, alternated.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from devplatform import platform as platform_module
from devplatform.config import PlatformConfig
from devplatform.paths import domain_names
from devplatform.platform import LocalPlatform
from devplatform.ports import free_port_range, free_ports


def make(standins: bool = True) -> LocalPlatform:
    """A cold platform of its own; the stand-ins moved to free ports (their settings' ports
    belong to `make start`)."""
    teams = domain_names()
    state = Path(tempfile.mkdtemp(prefix="bench-start-"))
    os.chmod(state, 0o711)
    ports = free_ports(4 + 2 * len(teams))
    cfg = PlatformConfig(
        state=state, pg_port=ports.pop(), api_port=ports.pop(), smtp_port=ports.pop(), worker_log_port=ports.pop(),
        trigger_log_port=free_port_range(len(teams) + 1, exclude=ports),
        redis_ports={t: ports.pop() for t in teams}, flower_ports={t: ports.pop() for t in teams},
    )
    p = LocalPlatform(cfg, quiet=False)
    specs = p.standin_specs() if standins else []
    moved = free_ports(len(specs))
    p.standin_specs = lambda: [(d, {**s, "port": port}) for (d, s), port in zip(specs, moved, strict=True)]
    return p


def cpu_seconds(p: LocalPlatform) -> dict[str, float]:
    """CPU time (user + system, children included) each kind of process used until ready."""
    import psutil

    out: dict[str, float] = {}
    for name in p.process_names():
        proc = p.proc(name).process()
        if proc is None:
            continue
        kind = name.split("-")[0]
        for q in [proc, *proc.children(recursive=True)]:
            try:
                t = q.cpu_times()
                out[kind] = out.get(kind, 0.0) + t.user + t.system
            except psutil.NoSuchProcess:
                pass
    return out


def start_once(standins: bool) -> tuple[dict[str, float], dict[str, float]]:
    """One cold start: its phases (and ``wall``), and CPU seconds by kind of process."""
    p = make(standins)
    saved = os.environ.get("PLATFORM_STATE_DIR")
    os.environ["PLATFORM_STATE_DIR"] = str(p.config.state)  # for the apply-settings subprocess
    try:
        t0 = time.monotonic()
        p.start(wait_timeout=600)
        return {**getattr(p, "timings", {}), "wall": time.monotonic() - t0}, cpu_seconds(p)
    finally:
        p.stop()
        shutil.rmtree(p.config.state, ignore_errors=True)
        if saved is None:
            os.environ.pop("PLATFORM_STATE_DIR", None)
        else:
            os.environ["PLATFORM_STATE_DIR"] = saved


def report(title: str, results: list[dict[str, float]], cpu: dict[str, float]) -> None:
    print(f"\n{title}")
    for phase in results[0]:
        values = [r[phase] for r in results]
        print(f"  {phase:42s} median {statistics.median(values):6.1f} s   runs {[round(v, 1) for v in values]}")
    print("  CPU seconds until ready, by kind of process (first run):")
    for kind, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
        print(f"    {kind:40s} {seconds:6.1f}")


def main(runs: int = 1, standins: bool = True, compare_late: bool = False) -> None:
    late = platform_module.START_AFTER_READY
    variants = ({"triggerers and Flower after ready": True, "every component before ready": False}
                if compare_late else {"": late})
    results: dict[str, list] = {v: [] for v in variants}
    cpu: dict[str, dict] = {}
    for _ in range(runs):
        for label, value in variants.items():
            platform_module.START_AFTER_READY = value
            timings, used = start_once(standins)
            results[label].append(timings)
            cpu.setdefault(label, used)
    platform_module.START_AFTER_READY = late
    print(f"\nmake start, cold, {'with' if standins else 'without'} stand-ins, {os.cpu_count()} cores,"
          f" load average at the end {os.getloadavg()[0]:.1f}")
    for label in variants:
        report(label or "phases", results[label], cpu[label])


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(int(args[0]) if args else 1, "--no-standins" not in sys.argv, "--compare-late" in sys.argv)
