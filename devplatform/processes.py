"""Start and stop a background process tracked by pid file: supervisord itself
(``devplatform.supervisor``), which starts and restarts every other platform process.

Each process runs in its own session (so its children, e.g. LocalExecutor workers, share
its process group). Its pid file records pid and start time; ``stop`` signals only a
process whose start time still matches (a recycled pid is not ours), so nothing else is
ever touched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class RunAs:
    """How a process started by root runs: an OS user, its group and no other, the capabilities
    it keeps (none, or e.g. ``("setuid", "setgid")`` for the processes that start team code as
    the team's user) and its umask.

    util-linux's ``setpriv`` applies it: the user switch, the capability sets (inheritable,
    ambient and bounding set reduced to ``caps``: nothing else can ever be regained) and
    no_new_privs (a set-uid program gives the process and its children nothing)."""

    uid: int
    gid: int
    caps: tuple[str, ...] = ()
    umask: int = 0o077

    def argv(self, cmd: list[str]) -> list[str]:
        from platform_runtime.team_env import setpriv_argv

        return setpriv_argv(self.uid, self.gid, cmd, self.caps, bounding=True)


class Proc:
    def __init__(self, name: str, run_dir: Path, log_dir: Path) -> None:
        self.name = name
        self.pidfile = run_dir / f"{name}.pid"
        self.logfile = log_dir / f"{name}.log"

    def _record(self) -> dict | None:
        if not self.pidfile.exists():
            return None
        try:
            return json.loads(self.pidfile.read_text())
        except ValueError:
            return None

    def process(self) -> psutil.Process | None:
        rec = self._record()
        if not rec:
            return None
        try:
            p = psutil.Process(rec["pid"])
            if abs(p.create_time() - rec.get("started", -1)) < 0.01 and p.status() != psutil.STATUS_ZOMBIE:
                return p
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
        return None

    def running(self) -> bool:
        return self.process() is not None

    def start(self, cmd: list[str], env: dict[str, str], cwd: Path, run_as: RunAs | None = None) -> int:
        """Start ``cmd``; with ``run_as`` (root only) as that user (:class:`RunAs`)."""
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.logfile, "ab")
        p = subprocess.Popen(
            run_as.argv(cmd) if run_as else cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, **({"umask": run_as.umask} if run_as else {}),
        )
        log.close()
        started = psutil.Process(p.pid).create_time()
        self.pidfile.write_text(json.dumps({"pid": p.pid, "started": started, "cmd": cmd}))
        return p.pid

    def stop(self, timeout: float = 20) -> bool:
        p = self.process()
        if p is None:
            self.pidfile.unlink(missing_ok=True)
            return False
        try:
            group = [p] + p.children(recursive=True)
        except psutil.NoSuchProcess:
            group = [p]
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        _, alive = psutil.wait_procs(group, timeout=timeout)
        for q in alive:
            try:
                q.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)
        self.pidfile.unlink(missing_ok=True)
        return True
