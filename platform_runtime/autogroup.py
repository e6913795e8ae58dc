"""A process's CPU share on the local platform: one CFS autogroup per session (standard library only).

Linux's CFS scheduler with ``kernel.sched_autogroup_enabled = 1`` (the default of most
distributions' kernels) puts every session (``setsid``) in a task group of its own: groups
share the CPU by weight, one share per group, however many runnable processes a group holds;
inside a group its processes share the group's part. A group's weight is its *autogroup nice*
(``/proc/<pid>/autogroup``: ``/autogroup-123 nice 0``; nice 0 weighs 1024, nice 3 526, nice 19
15): anyone may raise the nice of their own session's group (only a negative nice needs
CAP_SYS_NICE). No root, no cgroup needed.

The local platform starts each of its processes in a session of its own (``devplatform/launch.py``,
the launcher supervisord runs), so a team's Celery worker with its pool and task processes, its
triggerer with its trigger runner, its DAG files' parse zygote (``platform_runtime.airflow_internals``)
each weigh one share whatever they run, and the control plane (scheduler, api-server,
dag-processor, PostgreSQL, Redis) is never outweighed by a tenant's many processes.

What this does not do: a team's own code can call ``setsid`` (``subprocess.Popen(start_new_session=
True)``, BashOperator) and so start a group of its own, and groups are not capped (an idle
platform lets one team use every core). It is the local stand-in for production's real bound:
each team's workers in pods (Astro worker queues) with CPU requests and limits (cgroups).
Where the platform may create cgroups (root, cgroup v1 ``cpu`` controller), the functions at the
end put all of a team's processes into one cgroup of the team's with that cap (``limits.cpu_cores``).

The launcher imports this file by path (``python -I -S``: nothing of the project's packages).
"""

from __future__ import annotations

import errno
import os
import time

SELF = "/proc/self/autogroup"
ENABLED = "/proc/sys/kernel/sched_autogroup_enabled"
MAX_NICE = 19


def enabled() -> bool:
    """Autogroups exist on this kernel and are switched on."""
    try:
        with open(ENABLED) as f:
            return f.read().strip() == "1" and os.path.exists(SELF)
    except OSError:
        return False


ROOT = ("/", 0)  # the root task group: init's session and every session never moved out of it


def read(pid: int | str = "self") -> tuple[str, int] | None:
    """``(group, nice)`` of a process, e.g. ``("/autogroup-123", 0)``; ``ROOT`` for a process in
    the root task group, which the kernel prints as an empty file (a session that kept init's
    group, as a container's or a CI runner's processes often do); None if unknown (no such
    process, no autogroups)."""
    try:
        with open(f"/proc/{pid}/autogroup") as f:
            text = f.read()
    except OSError:
        return None
    if not text.strip():
        return ROOT
    try:
        group, _, nice = text.split()
        return group, int(nice)
    except ValueError:
        return None


def own_nice() -> int:
    """This process's autogroup nice (0 where autogroups are off): the base of the groups it
    starts, so a platform started at low priority (``lowprio``) keeps its processes there."""
    got = read()
    return got[1] if got else 0


def nice_for(offset: int) -> int:
    """The nice of a group started from here ``offset`` above this process's own (at most 19)."""
    return max(0, min(MAX_NICE, own_nice() + offset))


def set_nice(nice: int, timeout: float = 10) -> None:
    """This process's group at ``nice``. Without CAP_SYS_ADMIN the kernel takes one such write
    every 100 ms, machine-wide, and answers EAGAIN meanwhile: tried again until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(SELF, "w") as f:
                f.write(str(nice))
            return
        except OSError as e:
            if e.errno != errno.EAGAIN or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def new_group(nice: int) -> None:
    """This process in a session (so an autogroup) of its own at ``nice``, keeping its pid.

    ``setsid`` refuses a process group leader, which every program of supervisord is (its spawn
    calls ``setpgrp``): the process first joins its parent's process group (same session, so
    allowed), then starts its session. Afterwards it again leads a process group of its own,
    numbered by its pid: supervisord's ``stopasgroup``/``killasgroup`` (``kill(-pid)``) and a
    ``killpg`` reach it and its children as before."""
    pid = os.getpid()
    if os.getsid(0) != pid:
        if os.getpgid(0) == pid:
            parent = os.getppid()
            if os.getsid(parent) != os.getsid(0) or os.getpgid(parent) == pid:
                raise OSError(errno.EPERM, "cannot leave this process group for a new session")
            os.setpgid(0, os.getpgid(parent))
        os.setsid()
    if enabled():
        set_nice(nice)


# -- a team's CPU limit on the local platform: a cgroup of the cpu controller (v1) ----------------
# A team's processes (its worker with its tasks, its triggerer, its Flower, its DAG files' parse
# zygote) in one cgroup: one CPU share for the whole team, not one per process group, and at most
# its ``limits.cpu_cores`` of CPU time (CFS bandwidth: quota per period), what a pod's CPU limit is
# in production. Where the platform may create none (no root, cgroup v2 only), autogroups alone.
# A process in such a cgroup is scheduled by it; its session's autogroup applies again once it is
# back in the root cgroup.
CGROUP_CPU = "/sys/fs/cgroup/cpu"
PERIOD_US = 100_000
# the kernel's weight of each nice level, -20 .. 19 (kernel/sched/core.c sched_prio_to_weight)
WEIGHTS = (88761, 71755, 56483, 46273, 36291, 29154, 23254, 18705, 14949, 11916, 9548, 7620, 6100, 4904, 3906,
           3121, 2501, 1991, 1586, 1277, 1024, 820, 655, 526, 423, 335, 272, 215, 172, 137, 110, 87, 70, 56,
           45, 36, 29, 23, 18, 15)


def weight(nice: int) -> int:
    """The CFS weight of ``nice`` (0: 1024, 3: 526, 19: 15): a cgroup's ``cpu.shares`` that weighs as
    an autogroup at that nice does."""
    return WEIGHTS[max(-20, min(MAX_NICE, nice)) + 20]


def cgroups_available(root: str = CGROUP_CPU) -> bool:
    """A cgroup v1 cpu controller with CFS bandwidth that this process may create cgroups in."""
    return (os.path.exists(os.path.join(root, "cpu.cfs_quota_us")) and os.access(root, os.W_OK)
            and os.access(os.path.join(root, "cgroup.procs"), os.W_OK))


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def make_cgroup(path: str, nice: int, cores: float | None, owner: tuple[int, int] | None = None) -> None:
    """The cgroup ``path`` (parents created), weighing as an autogroup at ``nice``, capped at ``cores``
    of CPU (None: no cap). ``owner`` (uid, gid): who may move its own processes into it (its
    ``cgroup.procs``, mode 0660); its settings stay the creator's."""
    os.makedirs(path, exist_ok=True)
    _write(os.path.join(path, "cpu.shares"), str(weight(nice)))
    set_cores(path, cores)
    if owner is not None:
        procs = os.path.join(path, "cgroup.procs")
        os.chown(procs, *owner)
        os.chmod(procs, 0o660)


def set_cores(path: str, cores: float | None) -> None:
    """The cgroup's cap: ``cores`` of CPU time per period, or none (None)."""
    _write(os.path.join(path, "cpu.cfs_period_us"), str(PERIOD_US))
    _write(os.path.join(path, "cpu.cfs_quota_us"), str(int(cores * PERIOD_US) if cores else -1))


def join_cgroup(path: str, pid: int = 0) -> None:
    """Process ``pid`` (0: this one) and every thread of it into the cgroup ``path``; what it forks
    afterwards is born there."""
    _write(os.path.join(path, "cgroup.procs"), str(pid))


def cgroup_pids(path: str) -> list[int]:
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def remove_cgroup(path: str) -> None:
    """Remove the cgroup ``path`` and its children (processes still in them go to the root cgroup)."""
    if not os.path.isdir(path):
        return
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            remove_cgroup(entry.path)
    for pid in cgroup_pids(path):
        try:
            join_cgroup(CGROUP_CPU, pid)
        except OSError:  # ended meanwhile
            pass
    try:
        os.rmdir(path)
    except OSError:
        pass
