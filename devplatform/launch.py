"""How supervisord starts one of the platform's processes: ``python -I -S launch.py SPEC``.

Run by supervisord (the platform's user) on every start and restart of a program. SPEC is a
JSON file (mode 0600, the platform's user's) that ``devplatform.supervisor`` writes before
the program's first start: the argv (already wrapped in ``setpriv`` when the process runs as
another OS user, see ``devplatform.processes.RunAs``), the whole environment, the umask and
the log file. This script appends a line to that log, points stdout/stderr at it (the process
writes its own log, as under the old pid-file launcher; supervisord copies nothing), and
execs the argv: the pid supervisord watches is the process itself.

With ``autogroup_nice`` in the spec the process first starts a session of its own, so a CFS
autogroup of its own at that nice (``platform_runtime/autogroup.py``, loaded by path): it and
everything it starts weigh one CPU share, whatever their number. It still leads a process group
numbered by its pid, which supervisord signals (``stopasgroup``/``killasgroup``). With ``cgroup``
(a team's process, where the platform could create its team's cgroup) it then joins that cgroup:
the team's one CPU share and its CPU limit (``limits.cpu_cores``).

Standard library only and run isolated (``-I -S``): it imports nothing of the project, and
the environment it hands on is only the spec's (plus supervisord's ``SUPERVISOR_*`` for an
event listener).
"""

import importlib.util
import json
import os
import sys
import time
from pathlib import Path


def _autogroup():
    """``platform_runtime/autogroup.py`` by path: nothing else of the project is imported."""
    path = Path(__file__).resolve().parent.parent / "platform_runtime" / "autogroup.py"
    spec = importlib.util.spec_from_file_location("platform_autogroup", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(spec_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    env = dict(spec["env"])
    env.update({k: v for k, v in os.environ.items() if k.startswith("SUPERVISOR_")})
    fd = os.open(spec["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    group = ""
    if spec.get("autogroup_nice") is not None:
        autogroup = _autogroup()
        try:
            autogroup.new_group(int(spec["autogroup_nice"]))
            got = autogroup.read()
            group = f", session {os.getsid(0)}, " + (f"autogroup {got[0]} nice {got[1]}" if got else "no autogroups (kernel)")
        except OSError as e:  # started all the same, in supervisord's group: said in its log
            group = f", no CPU group of its own ({e})"
        if spec.get("cgroup"):  # the team's CPU limit: its cgroup (platform_runtime/autogroup.py)
            try:
                autogroup.join_cgroup(spec["cgroup"])
                group += f", cgroup {spec['cgroup']}"
            except OSError as e:  # started all the same, without the team's limit: said in its log
                group += f", not in its team's cgroup {spec['cgroup']} ({e})"
    os.write(fd, f"[supervisor] {stamp} starting {spec['name']} (pid {os.getpid()}{group})\n".encode())
    # an event listener talks to supervisord on stdin/stdout: only its stderr goes to the log
    os.dup2(fd, 2)
    if not spec.get("listener"):
        os.dup2(fd, 1)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
    os.close(fd)
    os.umask(spec["umask"])
    os.execve(spec["argv"][0], spec["argv"], env)


if __name__ == "__main__":
    main(sys.argv[1])
