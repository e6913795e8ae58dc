"""What a team's code gets when it runs inside a platform process: its OS user, its environment.

A team's DAG files are parsed (and its DAG callbacks run) in a child of the dag-processor;
``platform_runtime.airflow_internals`` runs that child as the team's OS user with the
environment built here, from scratch: no inherited secret can leak because none is copied.

- OS user: ``[platform] team_os_user`` (``AIRFLOW__PLATFORM__TEAM_OS_USER``), a pattern with
  ``{team}``, default ``tenant-{team}`` (the users ``make start`` creates for the workers; in
  an image, create them in the Dockerfile). Used only when the platform process may switch
  users (root, or the platform's user holding CAP_SETUID and CAP_SETGID, :func:`can_switch_users`);
  the child then starts through :func:`as_user_argv` and holds no capability. Otherwise the
  child keeps the process's user and only the environment is scrubbed, which ``make start``
  reports.
- Interpreter: ``[platform] team_python``, an interpreter the team user can execute (default:
  the platform's own).
- Environment: an allow-list. Plain settings every Python process needs (``PATH``,
  ``LANG``, ``TZ``, ``PYTHONPATH``); Airflow settings a parse needs and that hold no secret
  (:data:`AIRFLOW_SETTINGS`, the bundle list reduced to the team's own bundle); the team's
  own settings, by the naming rule every domain follows (``<TEAM>_*``, e.g.
  ``HSS_WORKFLOW_SONGS_ROOT``). Nothing else: no ``AIRFLOW__DATABASE__*``, no Fernet key,
  no ``AIRFLOW__API_AUTH__*``, no connection or variable, no broker, no lineage transport.
"""

from __future__ import annotations

import json
import os
import pwd
import re
from dataclasses import dataclass
from pathlib import Path

# Airflow settings a parse child may see: none of them holds a secret. Anything matching
# SECRET_NAME is dropped even if listed (a ``_CMD``/``_SECRET`` variant names where a secret is).
AIRFLOW_SETTINGS = (
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__CORE__MULTI_TEAM",
    "AIRFLOW__CORE__LOAD_EXAMPLES",
    "AIRFLOW__CORE__DEFAULT_TIMEZONE",
    "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT",
    "AIRFLOW__CORE__DAG_IGNORE_FILE_SYNTAX",
    "AIRFLOW__CORE__PARALLELISM",
    "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG",
    "AIRFLOW__PLATFORM__TEAM_LIMITS",
    "AIRFLOW__PLATFORM__TEAM_AUTOGROUP_NICE",
    "AIRFLOW__PLATFORM__TEAM_CPU_CGROUP",
    "AIRFLOW__CORE__MAX_TASK_RETRY_DELAY",
    "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT",
    "AIRFLOW__LOGGING__LOGGING_LEVEL",
    "AIRFLOW__OPENLINEAGE__NAMESPACE",
    "AIRFLOW__OPENLINEAGE__DISABLED",
    "AIRFLOW__OPENLINEAGE__EXTRACTORS",
)
PLAIN = ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE")
SECRET_NAME = re.compile(r"(_CMD|_SECRET|PASSWORD|SQL_ALCHEMY|FERNET|JWT|BROKER|BACKEND|TRANSPORT|KEY)$")


@dataclass(frozen=True)
class TeamUser:
    name: str
    uid: int
    gid: int
    home: str


def team_os_user(team: str) -> TeamUser | None:
    """The team's OS user, if it exists on this machine."""
    from airflow.configuration import conf

    name = (conf.get("platform", "team_os_user", fallback="") or "tenant-{team}").format(team=team)
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return None
    return TeamUser(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)


# Linux capability bits (linux/capability.h): what a platform process needs to start a team's
# child as the team's OS user, and nothing more.
CAP_SETGID, CAP_SETUID = 6, 7
SWITCH_CAPS = (1 << CAP_SETGID) | (1 << CAP_SETUID)


def effective_caps(status: str | None = None) -> int:
    """This process's effective capability set (``CapEff`` in ``/proc/self/status``)."""
    text = status if status is not None else Path("/proc/self/status").read_text()
    for line in text.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def can_switch_users() -> bool:
    """Whether this process may start a child as another OS user: root, or (the platform's
    dag-processor and triggerers, which run as the platform's user) CAP_SETUID and CAP_SETGID."""
    return os.geteuid() == 0 or effective_caps() & SWITCH_CAPS == SWITCH_CAPS


def setpriv_argv(uid: int, gid: int, argv: list[str], keep: tuple[str, ...] = (), bounding: bool = False) -> list[str]:
    """``argv`` run by util-linux's ``setpriv`` as ``uid``/``gid`` with no other group, no_new_privs
    (nothing it executes, a set-uid program, gives it a privilege back) and only the
    capabilities in ``keep`` in its inheritable and ambient sets (a non-root process keeps its
    capabilities across a user switch; these two carry them across ``exec``). ``bounding``:
    reduce the bounding set to ``keep`` too (needs CAP_SETPCAP: root's launcher only). The one
    way the platform starts a process as another OS user (``devplatform.processes.RunAs`` too)."""
    import shutil

    setpriv = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")
    if setpriv is None:
        raise RuntimeError("setpriv (util-linux) is needed to start a process as another OS user")
    caps = ",".join(["-all", *(f"+{c}" for c in keep)])
    return [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", f"--inh-caps={caps}",
            f"--ambient-caps={caps}", *([f"--bounding-set={caps}"] if bounding else []), "--no-new-privs", "--", *argv]


def as_user_argv(user: TeamUser, argv: list[str]) -> list[str]:
    """``argv`` run as the team's ``user`` with no capability left (:func:`setpriv_argv`). Used by
    every platform process that starts team code."""
    return setpriv_argv(user.uid, user.gid, argv)


def team_python() -> str:
    import sys

    from airflow.configuration import conf

    return conf.get("platform", "team_python", fallback="") or sys.executable


def own_bundles(team: str, bundle_config: str) -> str:
    """The bundle list with only the team's own bundles (names, paths and teams are not secrets,
    but another team's folder is none of its business)."""
    bundles = json.loads(bundle_config or "[]")
    return json.dumps([b for b in bundles if b.get("team_name") == team])


def team_env(team: str, parent: dict[str, str], home: Path) -> dict[str, str]:
    """The whole environment of a team's child, built from an allow-list of ``parent``."""
    prefix = re.sub(r"[^A-Z0-9]", "_", team.upper()) + "_"
    env = {k: parent[k] for k in PLAIN if k in parent}
    env.update({k: parent[k] for k in AIRFLOW_SETTINGS if k in parent and not SECRET_NAME.search(k)})
    env.update({k: v for k, v in parent.items()
                if k.startswith(prefix) and not SECRET_NAME.search(k) and not k.startswith("AIRFLOW")})
    env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = own_bundles(
        team, parent.get("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", "[]"))
    env.update({
        "HOME": str(home),
        "AIRFLOW_HOME": str(home),
        # no airflow.cfg: Airflow reads the settings above from the environment and writes no
        # generated file (with its generated secrets) anywhere
        "AIRFLOW_CONFIG": os.devnull,
        "PATH": env.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": env.get("LANG", "C.UTF-8"),
        "_PLATFORM_TEAM": team,
    })
    return env
