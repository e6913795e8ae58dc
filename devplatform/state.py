"""The local platform's state folder (``.local``): who owns what in it, as root.

The platform's user owns :data:`PLATFORM_OWNED`; the launcher (root) its process logs;
PostgreSQL's user ``pgdata``; each team user its ``tenants/<team>`` folder; task logs are
shared through the platform's group (``devplatform.tenants.TASK_LOG_DIR_MODE``).
"""

from __future__ import annotations

import os
from pathlib import Path

from devplatform.config import PlatformConfig, ensure_ed25519_key
from devplatform.users import OsUser

# What the platform's user owns in the state folder (the rest: root's launcher, PostgreSQL's
# user, the team users): Airflow's home (airflow.cfg, the UI's passwords file), the run folder
# (supervisord's socket, configuration and the processes' specs; the Kafka stand-in's address),
# the processes' logs (supervisord and each process's launcher write them), the mail sink's and
# the lineage file's folders, the Redis servers' configs, the secrets file and the signing key.
PLATFORM_OWNED = ("airflow", "run", "mail", "openlineage", "redis", "logs", "secrets.json", "jwt-ed25519.pem")


def own(user: OsUser | None, *paths: Path) -> None:
    """Give ``paths`` (and what is inside them) to ``user`` (nothing without one)."""
    if user is None:
        return
    for path in paths:
        if not path.exists():
            continue
        for p in (path, *(path.rglob("*") if path.is_dir() and not path.is_symlink() else ())):
            os.chown(p, user.uid, user.gid, follow_symlinks=False)


def lock_state(config: PlatformConfig, user: OsUser | None) -> None:
    """As root: the platform's state folders are the platform's (mode 0700, ``user``'s:
    :data:`PLATFORM_OWNED`, the rest root's); team users may only pass through the state
    folder to their own tenant folder and the task logs. The secrets file and the signing key
    exist before any process starts, so they are never the launcher's alone."""
    state = config.state
    os.chmod(state, 0o711)
    for sub in (config.airflow_home, config.run_dir, config.mail_dir, config.lineage_file.parent):
        sub.mkdir(parents=True, exist_ok=True)
    config.secrets  # noqa: B018 (created now, if missing)
    ensure_ed25519_key(config.jwt_private_key)
    own(user, *(state / name for name in PLATFORM_OWNED))
    share_task_logs(config, user)
    shared = {"tenants", "tenant-python", config.task_log_dir.name}
    shared |= {p.relative_to(state).parts[0] for p in config.bundle_paths.values() if p.is_relative_to(state)}
    for child in state.iterdir():
        if child.is_dir() and not child.is_symlink() and child.name not in shared and child != config.pgdata \
                and not child.name.startswith("tenant-python"):  # the team users' interpreters
            os.chmod(child, 0o700)


def share_task_logs(config: PlatformConfig, user: OsUser | None) -> None:
    """Task logs written before the platform had a user of its own (folders 0700, files 0600
    of the team users): given to the platform's group, as new ones are, so that the
    api-server still shows them."""
    logs = config.task_log_dir
    if user is None or not logs.is_dir():
        return
    for p in logs.rglob("*"):
        st = p.lstat()
        if st.st_gid == user.gid or p.is_symlink():
            continue
        os.chown(p, -1, user.gid)
        os.chmod(p, (st.st_mode & 0o7777) | (0o2770 if p.is_dir() else 0o660))
