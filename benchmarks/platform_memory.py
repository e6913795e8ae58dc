"""The platform's memory as PSS, per process kind (issue 25), for ``benchmarks/executors.py``.

RSS summed over processes counts every page shared between forks (a Celery worker and its
pool, the dag-processor's zygotes and their children, PostgreSQL's backends and its shared
buffers) once per process. PSS (``/proc/<pid>/smaps_rollup``) charges a shared page to each
process that maps it by its share, so the sum over processes is the memory they take together.
USS (private pages only) is what stopping the process would give back.

Caveat, said where the figures are printed: a page shared with processes outside the platform
(the same ``.so`` files mapped by another platform on the machine) is charged partly to them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

KIB = 1024


def parse_smaps_rollup(text: str) -> dict[str, int]:
    """``/proc/<pid>/smaps_rollup``'s ``Key:   123 kB`` lines as {key: bytes}."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].endswith(":") and parts[2] == "kB":
            out[parts[0][:-1]] = int(parts[1]) * KIB
    return out


def smaps_rollup(pid: int) -> dict[str, int] | None:
    """The process's rollup in bytes, or None when it is gone or not ours to read."""
    try:
        return parse_smaps_rollup(Path(f"/proc/{pid}/smaps_rollup").read_text())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


@dataclass
class Usage:
    """One kind's processes: how many, and their PSS, USS and RSS summed (bytes)."""

    count: int = 0
    pss: int = 0
    uss: int = 0
    rss: int = 0
    pids: list[int] = field(default_factory=list)

    def add(self, pid: int, rollup: dict[str, int]) -> None:
        self.count += 1
        self.pids.append(pid)
        self.pss += rollup.get("Pss", 0)
        self.uss += rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0)
        self.rss += rollup.get("Rss", 0)


def program_kind(program: str, teams: list[str]) -> str:
    """A supervisord program's kind, its team folded in: ``worker-aurora`` -> ``worker-<team>``."""
    for team in sorted(teams, key=len, reverse=True):
        for prefix in ("worker-", "flower-", "redis-", "triggerer-"):
            if program == prefix + team:
                return prefix + "<team>"
        if program.startswith(f"standin-{team}-"):
            return "stand-in"
    return program


# What the dag-processor runs while it parses (none of it is there once parsing is idle): Airflow's
# per-file child of the manager, and the fork of a team's zygote that parses the file as the team.
PARSE_CHILD = "dag-processor child"
PARSE_FORK = "dag-processor parse in flight (a zygote's fork)"
PARSE_KINDS = frozenset({PARSE_CHILD, PARSE_FORK})
ZYGOTE = "dag-processor parse zygote (per team)"


def child_kind(parent_kind: str, cmdline: list[str], parent: str | None = None) -> str:
    """The kind of a process started by a platform process (any depth below it); ``parent`` the
    kind of the process that started it (a zygote's parse fork keeps the zygote's command line)."""
    text = " ".join(cmdline)
    if parent_kind == "worker-<team>":
        return "worker-<team> pool process" if "ForkPoolWorker" in text else "worker-<team> other child"
    if parent_kind == "dag-processor":
        if "trigger-runner" in text:  # a team's trigger runner, forked from its parse zygote
            return "trigger runner (forked from the team's zygote)"
        if " zygote" in text:
            return PARSE_FORK if parent == ZYGOTE else ZYGOTE
        return PARSE_CHILD
    if parent_kind == "triggerers":  # the parent of the team triggerers (platform_runtime/triggerer_fork.py)
        if "trigger-runner-relay" in text or "trigger-runner" in text:
            return child_kind("triggerer-<team>", cmdline)
        return "triggerer-<team>" if "--team-name" in text else "triggerers child"
    if parent_kind.startswith("triggerer"):  # its runner exec'd, or the relay of one its zygote forked
        return f"{parent_kind} runner relay" if "trigger-runner-relay" in text else f"{parent_kind} trigger runner"
    if parent_kind == "postgres":
        return "postgres"
    return f"{parent_kind} child"


def census(roots: dict[str, int], teams: list[str]) -> dict[int, str]:
    """{pid: kind} of the processes under ``roots`` ({program name: pid}): each root and its
    descendants down to (not into) another root, so each process is counted once, under the
    nearest root (supervisord's programs under their own names, not supervisord's)."""
    out: dict[int, str] = {}
    root_pids = set(roots.values())
    for program, pid in roots.items():
        kind = program_kind(program, teams)
        todo: list[tuple[int, str | None, str | None]] = [(pid, kind, None)]
        while todo:
            current, k, parent = todo.pop()
            try:
                proc = psutil.Process(current)
                k = k or child_kind(kind, proc.cmdline(), parent)
                if current == pid and kind == "triggerer-<team>" and "triggerer_fork.py" in " ".join(proc.cmdline()):
                    k = "triggerer-<team> program (relay)"  # its triggerer is the parent's child
                todo += [(c.pid, None, k) for c in proc.children() if c.pid not in root_pids]
            except psutil.NoSuchProcess:
                continue
            out[current] = k
    return out


def usage_of(processes: dict[int, str]) -> dict[str, Usage]:
    """{kind: Usage} of a :func:`census` (a process gone meanwhile is left out)."""
    kinds: dict[str, Usage] = {}
    for pid, kind in processes.items():
        rollup = smaps_rollup(pid)
        if rollup is not None:
            kinds.setdefault(kind, Usage()).add(pid, rollup)
    return kinds


def tree_usage(roots: dict[str, int], teams: list[str]) -> dict[str, Usage]:
    """{kind: Usage} of the processes under ``roots`` (:func:`census`)."""
    return usage_of(census(roots, teams))


def platform_roots(p) -> dict[str, int]:
    """{program: pid} of a running ``LocalPlatform``: supervisord (itself only: its programs are
    roots of their own), every program it runs, the alert listener, and PostgreSQL."""
    from devplatform.supervisor import LISTENER

    roots = {}
    sv = p.supervisor.proc.process()
    if sv:
        roots["supervisord"] = sv.pid
    for name in [*p.process_names(), LISTENER]:
        proc = p.proc(name).process()
        if proc:
            roots[name] = proc.pid
    if p.pg.pid():
        roots["postgres"] = p.pg.pid()
    return roots


def platform_usage(p) -> dict[str, Usage]:
    """The running platform's processes by kind."""
    return tree_usage(platform_roots(p), p.config.domains)


def parsing(processes: dict[int, str]) -> int:
    """How many of a census's processes are parses in flight."""
    return sum(kind in PARSE_KINDS for kind in processes.values())


def idle_usage(roots, teams: list[str], timeout: float = 300, interval: float = 5.0) -> tuple[dict[str, Usage], dict]:
    """The processes under ``roots()`` ({program: pid}, read anew each time: supervisord restarts
    programs) by kind, sampled idle: no parse in flight (no per-file child of the dag-processor,
    no zygote's parse fork) and the same processes in two consecutive censuses ``interval``
    seconds apart, and still the same ones once their memory is read (a parse started
    meanwhile: sampled again). ``(usage, how)``: ``how`` says how long it took, how many samples
    were refused, and whether it gave up after ``timeout`` seconds (``idle`` False: the last
    sample as it was, parses in flight included)."""
    t0 = time.monotonic()
    refused = 0
    previous = census(roots(), teams)
    while True:
        time.sleep(interval)
        now = census(roots(), teams)
        if now == previous and not parsing(now):
            usage = usage_of(now)
            if census(roots(), teams) == now and sum(u.count for u in usage.values()) == len(now):
                return usage, {"idle": True, "waited_s": time.monotonic() - t0, "refused": refused}
        refused += 1
        if time.monotonic() - t0 > timeout:
            return usage_of(now), {"idle": False, "waited_s": time.monotonic() - t0, "refused": refused}
        previous = now


def total(usage: dict[str, Usage]) -> Usage:
    out = Usage()
    for u in usage.values():
        out.count += u.count
        out.pss += u.pss
        out.uss += u.uss
        out.rss += u.rss
    return out


def memory_table(columns: dict[str, dict[str, Usage]]) -> str:
    """One row per kind, per column "n  PSS MiB": ``columns`` = {title: {kind: Usage}}."""
    kinds = sorted({k for c in columns.values() for k in c},
                   key=lambda k: -max(c.get(k, Usage()).pss for c in columns.values()))
    width = max(len(k) for k in [*kinds, "total (RSS summed, for comparison)"]) + 2
    head = f"{'process kind':{width}s}" + "".join(f"{t:>24s}" for t in columns)
    sub = f"{'':{width}s}" + "".join(f"{'n   PSS MiB  USS MiB':>24s}" for _ in columns)
    lines = [head, sub]

    def cell(u: Usage | None) -> str:
        return f"{'-':>24s}" if not u or not u.count else f"{u.count:>6d} {u.pss / 2**20:>8.0f} {u.uss / 2**20:>8.0f}"

    for k in kinds:
        lines.append(f"{k:{width}s}" + "".join(cell(c.get(k)) for c in columns.values()))
    lines.append(f"{'total':{width}s}" + "".join(cell(total(c)) for c in columns.values()))
    lines.append(f"{'total (RSS summed, for comparison)':{width}s}"
                 + "".join(f"{total(c).rss / 2**20:>24.0f}" for c in columns.values()))
    return "\n".join(lines)


if __name__ == "__main__":  # the running `make start` platform
    from devplatform.platform import LocalPlatform

    platform = LocalPlatform(quiet=True)
    print(f"make start's platform, load average {os.getloadavg()[0]:.1f}")
    print(memory_table({"now": platform_usage(platform)}))
