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
