"""A domain's local development commands (settings.yaml ``local.setup`` / ``local.data``):
domain code, run like the team's worker (its OS user, an environment from scratch)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from devplatform.paths import ROOT
from devplatform.processes import RunAs
from devplatform.users import OsUser

# A domain's local command (settings.yaml ``local.<hook>``) -> the name of its log.
LOCAL_LOGS = {"setup": "setup", "data": "generate"}


@dataclass(frozen=True)
class DomainCommand:
    """One of a domain's local development commands (settings.yaml ``local.setup`` or
    ``local.data``): domain code, so it runs like the team's worker, never with the platform's
    environment.

    - interpreter and OS user: as root with per-team workers (Celery), the team's OS user
      (no extra groups, umask 077) with the interpreter the team users can run; otherwise the
      platform's user and interpreter;
    - environment, built from scratch: ``PATH``, ``PYTHONPATH``, ``LANG``, ``HOME`` and
      ``AIRFLOW_HOME`` (the team's own ``tenants/<d>/local`` folder), the domain's
      ``local.env``, and for ``local.data`` only the domain's own connections
      (``AIRFLOW_CONN_<D>_*``). No metadata database URL, Fernet key, lineage key, nothing
      of another team;
    - output: :meth:`start` (background) appends it to ``log``; :meth:`run` (blocking) returns it
      (``make aurora-data`` prints it).
    """

    domain: str
    hook: str
    argv: list[str]
    env: dict[str, str]
    user: OsUser | None
    log: Path

    def _popen_args(self) -> tuple[list[str], dict]:
        """The command line and ``Popen`` arguments: as the team's user, through the one user
        switch every team process goes through (``RunAs``: no capability, no_new_privs)."""
        u = self.user
        run_as = RunAs(u.uid, u.gid, umask=0o077) if u else None
        args = {"env": self.env, "cwd": ROOT, "stdin": subprocess.DEVNULL, **({"umask": run_as.umask} if run_as else {})}
        return (run_as.argv(self.argv) if run_as else self.argv), args

    def start(self) -> subprocess.Popen:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        argv, args = self._popen_args()
        with open(self.log, "ab") as f:
            return subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, **args)

    def run(self) -> str:
        """Run to the end; its standard output. A failure raises with the end of its output."""
        argv, args = self._popen_args()
        out = subprocess.run(argv, capture_output=True, text=True, **args)
        if out.returncode != 0:
            raise RuntimeError(f"{self.domain}'s local.{self.hook} command failed (exit {out.returncode}):\n"
                               f"{out.stdout[-1000:]}{out.stderr[-3000:]}")
        return out.stdout
