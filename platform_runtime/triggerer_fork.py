"""The team triggerers forked from one parent: each team's supervisord program is a thin relay.

Each team's triggerer used to be a fresh interpreter importing Airflow (~158 MiB private each,
idle). The platform now runs one parent (``python -m platform_runtime.triggerer_fork parent``,
supervisord's ``triggerers`` program) that imports Airflow and the triggerer's
modules once and forks each team's triggerer; the team's program is this relay:

``python -I -S platform_runtime/triggerer_fork.py <the triggerer's own argv>``

- it connects to the parent's abstract Unix socket (:func:`address`, named after
  ``AIRFLOW_HOME``) and checks it (``SO_PEERCRED``): the platform's uid (its own) and at least
  the capabilities it holds itself, so it hands its environment to nothing less trusted;
- it sends the team's name, its fds 0-2 (the program's log) and one end of a socket pair, on
  which the forked triggerer (not the parent) reads its argv, environment, working folder,
  umask, CPU group (autogroup nice) and cgroup: the parent never holds a team's settings;
- then it forwards SIGINT/SIGTERM (supervisord's stop) to the parent, which signals the
  triggerer's process group, and exits with the triggerer's exit code (a signal re-raised);
- killed (SIGKILL, or any death), its connection closes and the parent kills the triggerer's
  process group at once; supervisord's restart asks for a new one, and the parent never runs two
  triggerers of one team (it kills and reaps the previous one before forking).

No parent listening (not started, another host, restarting for longer than
:data:`CONNECT_SECONDS`), a listener that fails the check, or no answer: it execs the argv
itself, today's fresh triggerer with the same environment and capabilities.

Standard library only (run isolated, ``-I -S``: ~5 MiB); ``platform_runtime.airflow_internals``
imports :func:`address`, :func:`peer_cred` and :func:`holds_caps` from here (one definition).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import struct
import sys
import time

CONNECT_SECONDS = 15  # the parent restarting (supervisord's back-off starts at 1 s)
ANSWER_SECONDS = 180  # the parent still importing Airflow on a loaded machine
REQUEST = b"triggerer "
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
CGROUP_CPU = "/sys/fs/cgroup/cpu"  # platform_runtime.autogroup.CGROUP_CPU


def address(airflow_home: str | None = None) -> str:
    """The parent's abstract Unix socket (no file): one per platform, named after its AIRFLOW_HOME."""
    home = airflow_home or os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return "\0platform-triggerers-" + hashlib.sha256(os.fsencode(home)).hexdigest()[:32]


def peer_cred(conn: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket (``SO_PEERCRED``, set by the kernel)."""
    return struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))


def caps(pid: int | str = "self") -> int:
    """The permitted capabilities of a process (``CapPrm``)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("CapPrm:"):
                return int(line.split()[1], 16)
    raise OSError(f"no CapPrm for {pid}")


def holds_caps(conn: socket.socket) -> bool:
    """The peer runs as this process's uid and holds every capability this process holds (so
    nothing handed over or started for it gives it more than it has)."""
    pid, uid, _gid = peer_cred(conn)
    try:
        theirs = caps(pid)
    except OSError:
        return False
    return uid == os.geteuid() and caps() & ~theirs == 0


def cpu_placement() -> dict:
    """Where launch.py put this program: its autogroup nice (when it leads a session of its own)
    and its cpu cgroup (v1), for the forked triggerer to take the same place."""
    out: dict = {"nice": None, "cgroup": None}
    if os.getsid(0) == os.getpid():
        try:
            with open("/proc/self/autogroup") as f:
                text = f.read().split()
            out["nice"] = int(text[-1]) if text and text[-2] == "nice" else None
        except (OSError, ValueError, IndexError):
            pass
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _n, controllers, path = line.rstrip("\n").split(":", 2)
                if "cpu" in controllers.split(",") and path not in ("", "/"):
                    out["cgroup"] = CGROUP_CPU + path
    except OSError:
        pass
    return out


def request(argv: list[str]) -> socket.socket | None:
    """Ask the parent for a triggerer running ``argv``; the connection once it forked one, else None."""
    team = argv[argv.index("--team-name") + 1] if "--team-name" in argv else ""
    deadline = time.monotonic() + CONNECT_SECONDS
    while True:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            conn.connect(address())
            break
        except (ConnectionRefusedError, FileNotFoundError) as e:
            conn.close()
            if time.monotonic() > deadline:
                print(f"[triggerer-relay] no triggerer parent listening ({e}): a triggerer of its own", flush=True)
                return None
            time.sleep(0.5)
    try:
        if not holds_caps(conn):
            raise PermissionError(f"the listener (pid {peer_cred(conn)[0]}) is not the platform's triggerer parent")
        mine, theirs = socket.socketpair()
        socket.send_fds(conn, [REQUEST + team.encode()], [0, 1, 2, theirs.fileno()])
        theirs.close()
        umask = os.umask(0)
        os.umask(umask)
        payload = {"argv": argv, "env": dict(os.environ), "cwd": os.getcwd(), "umask": umask, **cpu_placement()}
        mine.settimeout(ANSWER_SECONDS)
        mine.sendall(json.dumps(payload).encode())  # read by the forked triggerer
        mine.close()
        conn.settimeout(ANSWER_SECONDS)
        started = conn.recv(32)
        if not started.startswith(b"pid:"):
            raise ConnectionError(f"the parent did not start a triggerer ({started!r})")
    except OSError as e:
        conn.close()
        print(f"[triggerer-relay] not forked by the parent ({type(e).__name__}: {e}): a triggerer of its own", flush=True)
        return None
    conn.settimeout(None)
    print(f"[triggerer-relay] team {team}: triggerer pid {started[4:].decode()} forked by the parent "
          f"(pid {peer_cred(conn)[0]}); this relay forwards SIGINT/SIGTERM and exits with its code", flush=True)
    return conn


def relay(conn: socket.socket) -> None:
    """Signals to the parent (for the triggerer), then exit with the triggerer's code."""

    def forward(signum, _frame):
        try:
            conn.send(b"sig:%d" % signum)
        except OSError:
            pass

    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, forward)
    answer = conn.recv(16)
    code = int(answer) if answer.strip(b"-").isdigit() else 125  # the parent gone: no code
    if code - 128 in FORWARDED_SIGNALS:
        signal.signal(code - 128, signal.SIG_DFL)
        os.kill(os.getpid(), code - 128)
    os._exit(code)


def parent() -> None:
    """The parent (``python -m platform_runtime.triggerer_fork parent``): its address bound at
    once, before Airflow is imported (:func:`platform_runtime.airflow_internals.triggerer_parent`).
    Bound already (a parent of this platform runs): exits, and supervisord tries again."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(address())
    listener.listen(16)
    from platform_runtime.airflow_internals import triggerer_parent

    triggerer_parent(listener)


def main(argv: list[str]) -> None:
    if argv == ["parent"]:
        parent()
        return
    if not argv:
        raise SystemExit("usage: python -I -S triggerer_fork.py <triggerer argv> | python -m "
                         "platform_runtime.triggerer_fork parent")
    conn = request(argv)
    if conn is None:
        os.execve(argv[0], argv, dict(os.environ))
    relay(conn)


if __name__ == "__main__":
    main(sys.argv[1:])
