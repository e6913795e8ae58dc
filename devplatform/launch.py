"""How supervisord starts one of the platform's processes: ``python -I -S launch.py SPEC``.

Run by supervisord (the platform's user) on every start and restart of a program. SPEC is a
JSON file (mode 0600, the platform's user's) that ``devplatform.supervisor`` writes before
the program's first start: the argv (already wrapped in ``setpriv`` when the process runs as
another OS user, see ``devplatform.processes.RunAs``), the whole environment, the umask and
the log file. This script appends a line to that log, points stdout/stderr at it (the process
writes its own log, as under the old pid-file launcher; supervisord copies nothing), and
execs the argv: the pid supervisord watches is the process itself.

Standard library only and run isolated (``-I -S``): it imports nothing of the project, and
the environment it hands on is only the spec's (plus supervisord's ``SUPERVISOR_*`` for an
event listener).
"""

import json
import os
import sys
import time


def main(spec_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    env = dict(spec["env"])
    env.update({k: v for k, v in os.environ.items() if k.startswith("SUPERVISOR_")})
    fd = os.open(spec["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    os.write(fd, f"[supervisor] {stamp} starting {spec['name']} (pid {os.getpid()})\n".encode())
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
