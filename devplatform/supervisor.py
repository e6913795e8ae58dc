"""The local platform's process manager: supervisord (``supervisor`` from PyPI).

``make start`` starts one supervisord, as the platform's OS user, and asks it to start every
platform process (PostgreSQL, stand-ins, mail sink, Redis servers, Airflow components, team
workers and Flower) in ``make start``'s order; supervisord restarts a process that dies, logs it
(``.local/logs/supervisord.log``: ``exited: worker-referral (terminated by SIGKILL; not
expected)`` then ``spawned: ...``; the process's own log gets a ``[supervisor] ... starting``
line) and backs off when a process dies again within :data:`START_SECONDS` of a start (1 s,
2 s, 3 s, ... then gives up: state ``FATAL``, after :data:`START_RETRIES` tries). Its event
listener, ``devplatform.alerts``, mails the platform's alert address about every unexpected
exit, a program given up on, a team's worker not running and a team's queue backing up.

Privileges. supervisord runs as the platform's user with only CAP_SETUID, CAP_SETGID,
CAP_SETPCAP and CAP_KILL (bounding set reduced to them, no_new_privs): enough to start each
process through the same ``setpriv`` argv ``make start`` used as root
(``devplatform.processes.RunAs``: a team's worker as ``tenant-<team>`` with no capability,
the dag-processor with CAP_SETUID/CAP_SETGID only, ...) and to stop a team's processes. So it
is trusted like the launcher, and it runs no code of a team. Its control socket is a Unix
socket in the platform's run folder (0700 of the platform's user).

Each program's command is ``python -I -S devplatform/launch.py <spec>``: the spec (JSON, 0600)
holds the argv, environment, umask and log of the process, written before its first start, so
that no secret sits in supervisord's configuration or on a command line. With the spec's
``autogroup_nice`` the launcher starts the process in a session, so a CPU share (CFS autogroup),
of its own (``platform_runtime.autogroup``); it still leads its own process group, which
``stopasgroup``/``killasgroup`` signal.
"""

from __future__ import annotations

import json
import os
import signal
import time
import xmlrpc.client
from pathlib import Path

from devplatform.paths import ROOT
from devplatform.processes import Proc, RunAs
from devplatform.users import OsUser

GROUP = "platform"
LISTENER = "platform-alerts"
# The capabilities supervisord keeps to start and stop every process as its own user.
SUPERVISOR_CAPS = ("setuid", "setgid", "setpcap", "kill")
# A process that dies within START_SECONDS of a start was not started: supervisord waits 1 s,
# 2 s, ... before each new try and gives up (FATAL, alerted) after START_RETRIES. One that dies
# later is restarted at once (the back-off restarts from 1 s).
START_SECONDS = 5
START_RETRIES = 5
# SIGTERM, then SIGKILL to the whole process group after this long (make stop, supervisorctl stop)
STOP_WAIT_SECONDS = 20
ALIVE = ("STARTING", "RUNNING")
# Programs in a group of their own, stopped after the platform's group (supervisord stops its
# groups one at a time, the highest priority first), with their own stop settings: PostgreSQL,
# which every other process uses until it stops (SIGINT is its fast shutdown: sessions cut, open
# transactions rolled back, a checkpoint; SIGTERM would wait for every session to end).
STOPPED_LAST = {"postgres": {"priority": 1, "stopsignal": "INT", "stopwaitsecs": 60}}


class _UnixTransport(xmlrpc.client.Transport):
    """XML-RPC over supervisord's Unix socket (the standard library's HTTP client on a Unix socket).

    Not supervisor's own ``supervisor.xmlrpc.SupervisorTransport``: it opens its socket with no
    timeout, so a stuck supervisord would hang ``make status``/``make stop`` and the alert
    listener; this one times out after ``timeout`` seconds."""

    def __init__(self, path: Path, timeout: float = 10) -> None:
        super().__init__()
        self.path, self.timeout = str(path), timeout

    def make_connection(self, host):
        import http.client
        import socket

        path, timeout = self.path, self.timeout

        class Conn(http.client.HTTPConnection):
            def connect(self):
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(path)

        return Conn("localhost")


class Supervisor:
    """One platform's supervisord: its configuration, its programs' specs, its XML-RPC API."""

    def __init__(self, run_dir: Path, log_dir: Path, autorestart: bool = True, owner: OsUser | None = None,
                 start_retries: int = START_RETRIES) -> None:
        """``owner``: supervisord's OS user (as root), who must read what is written here."""
        self.run_dir, self.log_dir, self.autorestart, self.owner = run_dir, log_dir, autorestart, owner
        self.start_retries = start_retries
        self.conf = run_dir / "supervisord.conf"
        self.socket = run_dir / "supervisor.sock"
        self.spec_dir = run_dir / "programs"
        self.proc = Proc("supervisord", run_dir, log_dir)
        self.proc.logfile = log_dir / "supervisord.out"  # its own output; supervisord.log is its log

    # -- configuration -----------------------------------------------------------------
    def spec_path(self, name: str) -> Path:
        return self.spec_dir / f"{name}.json"

    def write_config(self, names: list[str], python: str) -> None:
        """supervisord.conf: every program of the platform, none started by supervisord itself
        (``make start`` starts them in its order), all in one group (``make stop`` stops them at
        once) but those of :data:`STOPPED_LAST` (stopped after it), and the alert listener."""
        self.spec_dir.mkdir(parents=True, exist_ok=True)
        launch = ROOT / "devplatform" / "launch.py"
        lines = [
            "[unix_http_server]", f"file={self.socket}", "chmod=0700", "",
            "[supervisord]", f"logfile={self.log_dir / 'supervisord.log'}", "logfile_maxbytes=10MB",
            "logfile_backups=3", "loglevel=info", f"pidfile={self.run_dir / 'supervisord.daemon.pid'}",
            "nodaemon=true", "silent=true", "identifier=platform", f"childlogdir={self.log_dir}", "minfds=4096", "",
            "[rpcinterface:supervisor]", "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
            "[supervisorctl]", f"serverurl=unix://{self.socket}", "",
            f"[group:{GROUP}]", f"programs={','.join(n for n in names if n not in STOPPED_LAST)}", "",
        ]
        for name in names:
            stop = {"stopsignal": "TERM", "stopwaitsecs": STOP_WAIT_SECONDS, **STOPPED_LAST.get(name, {})}
            lines += [
                f"[program:{name}]", f"command={python} -I -S {launch} {self.spec_path(name)}",
                "autostart=false", f"autorestart={'true' if self.autorestart else 'false'}",
                f"startsecs={START_SECONDS}", f"startretries={self.start_retries}",
                *(f"{k}={v}" for k, v in stop.items()), "stopasgroup=true", "killasgroup=true",
                "stdout_logfile=NONE", "redirect_stderr=true", "",
            ]
        lines += [
            f"[eventlistener:{LISTENER}]", f"command={python} -I -S {launch} {self.spec_path(LISTENER)}",
            "events=PROCESS_STATE_EXITED,PROCESS_STATE_FATAL,TICK_5", "autostart=false", "autorestart=true",
            "buffer_size=200", "stdout_logfile=NONE", "stderr_logfile=NONE", "",
        ]
        fd = os.open(self.conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines))
        self._own(self.spec_dir, self.conf)

    def write_spec(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path, run_as: RunAs | None,
                   umask: int = 0o022, listener: bool = False, autogroup_nice: int | None = None,
                   cgroup: str | None = None) -> None:
        """What :mod:`devplatform.launch` execs for ``name``: ``cmd`` in ``cwd`` (``env --chdir``,
        inside the user switch: a team's folder is closed to the platform's user), as ``run_as``.
        ``autogroup_nice``: in a session, so a CPU share (CFS autogroup), of its own at that nice
        (``platform_runtime.autogroup``); None: in supervisord's session, with every such program.
        ``cgroup``: then into that cgroup (a team's: its CPU limit, ``PlatformConfig.team_cgroup``)."""
        inner = ["/usr/bin/env", f"--chdir={cwd}", *cmd]
        spec = {"name": name, "argv": run_as.argv(inner) if run_as else inner, "env": env,
                "umask": run_as.umask if run_as else umask, "log": str(self.log_dir / f"{name}.log"),
                "listener": listener, "autogroup_nice": autogroup_nice, "cgroup": cgroup}
        path = self.spec_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(spec, f)
        self._own(tmp)
        tmp.replace(path)

    def _own(self, *paths: Path) -> None:
        if self.owner is not None:
            for p in paths:
                os.chown(p, self.owner.uid, self.owner.gid)

    # -- supervisord -------------------------------------------------------------------
    def running(self) -> bool:
        return self.proc.running()

    def start(self, python: str, env: dict[str, str], run_as: RunAs | None, timeout: float = 30) -> int:
        """supervisord in the foreground of its own session (as ``run_as``), once it answers."""
        argv = [python, "-m", "supervisor.supervisord", "-c", str(self.conf)]
        pid = self.proc.start(argv, env, ROOT, run_as=run_as)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.rpc().supervisor.getState()["statename"] == "RUNNING":
                    return pid
            except (OSError, xmlrpc.client.Error):
                pass
            if not self.proc.running() or time.monotonic() > deadline:
                tail = self.proc.logfile.read_text(errors="replace")[-2000:] if self.proc.logfile.exists() else ""
                raise RuntimeError(f"supervisord did not start; {self.proc.logfile}:\n{tail}")
            time.sleep(0.1)

    def rpc(self, timeout: float = 10) -> xmlrpc.client.ServerProxy:
        return xmlrpc.client.ServerProxy("http://localhost", transport=_UnixTransport(self.socket, timeout))

    def start_program(self, name: str) -> None:
        """Start ``name`` (its spec written), not waiting for it: readiness is ``make start``'s."""
        try:
            self.rpc().supervisor.startProcess(self.qualified(name), False)
        except xmlrpc.client.Fault as e:
            if "ALREADY_STARTED" not in e.faultString:
                raise

    def stop_program(self, name: str) -> None:
        try:
            self.rpc(timeout=STOP_WAIT_SECONDS + 10).supervisor.stopProcess(self.qualified(name), True)
        except xmlrpc.client.Fault as e:
            if "NOT_RUNNING" not in e.faultString:
                raise

    @staticmethod
    def qualified(name: str) -> str:
        return name if name == LISTENER or name in STOPPED_LAST else f"{GROUP}:{name}"

    def states(self) -> dict[str, dict]:
        """Program name -> supervisord's info (``statename``, ``pid``, ...); {} when it is not running."""
        if not self.socket.exists() or not self.running():
            return {}
        try:
            return {i["name"]: i for i in self.rpc().supervisor.getAllProcessInfo()}
        except (OSError, xmlrpc.client.Error):
            return {}

    def stop(self) -> bool:
        """SIGTERM to supervisord: it stops every program (SIGTERM to each process group, SIGKILL
        after :data:`STOP_WAIT_SECONDS`) and exits."""
        return self.proc.stop(timeout=STOP_WAIT_SECONDS + 15)


class SupervisedProc:
    """A program of supervisord, seen as ``devplatform.processes.Proc`` is (``running``,
    ``process``, ``logfile``): what the readiness checks, ``make status`` and the tests use."""

    def __init__(self, supervisor: Supervisor, name: str) -> None:
        self.supervisor, self.name = supervisor, name
        self.logfile = supervisor.log_dir / f"{name}.log"

    def info(self) -> dict | None:
        return self.supervisor.states().get(self.name)

    def process(self):
        import psutil

        info = self.info()
        if not info or info["statename"] not in ALIVE or not info["pid"]:
            return None
        try:
            return psutil.Process(info["pid"])
        except psutil.NoSuchProcess:
            return None

    def running(self) -> bool:
        return self.process() is not None

    def kill(self, sig: int = signal.SIGKILL, tree: bool = True) -> int:
        """A fault: ``sig`` to the process and (``tree``) every process it started, whatever
        their process group or session (Airflow's task runner puts a task in a session of its
        own): what a dying container or an OOM kill of its cgroup does. Returns the pid."""
        import psutil

        p = self.process()
        if p is None:
            raise RuntimeError(f"{self.name} is not running")
        victims = [p, *p.children(recursive=True)] if tree else [p]
        for q in victims:
            try:
                q.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
        return p.pid
