"""The one place that decides how the local platform's Airflow is configured.

Every component (api-server, scheduler, dag-processor, triggerer, the CLI, tests) is
started with ``airflow_env(...)``. The Astro image sets the same switches in the
``Dockerfile``; ``tests/test_astro_project.py`` keeps the two in step. Values that must be
the same everywhere (the OpenLineage namespace) are read from the ``Dockerfile``'s ``ENV``,
their one source.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shlex
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

from devplatform.paths import ROOT, bundle_dir, domain_names, platform_domains, state_dir
from platform_runtime import AUTH_MANAGER, GLOBAL_EXECUTOR

DEFAULT_PG_PORT = 54320
DEFAULT_API_PORT = 8080
DEFAULT_SMTP_PORT = 1025
DEFAULT_TRIGGER_LOG_PORT = 8794
DEFAULT_WORKER_LOG_PORT = 8793  # Airflow's own default
DEFAULT_REDIS_PORT = 16390
DEFAULT_FLOWER_PORT = 5560
WORKER_SETTINGS = ("tuned", "previous")  # PlatformConfig.worker_settings
IDLE_SETTINGS = ("lean", "previous")  # PlatformConfig.idle_settings
DEFAULT_DOMAIN_REDIS_PORT = 16379  # the domains' Redis (devplatform.domain_redis), not Redis' 6379
# A team's processes' autogroup nice above the control plane's (PlatformConfig.team_cpu_nice): a
# team's group weighs 526 against a control-plane process's 1024 (the kernel's nice-to-weight
# table), so the scheduler, api-server and PostgreSQL, which every team needs, come first.
TEAM_CPU_NICE = 3


def dockerfile_env(text: str | None = None) -> dict[str, str]:
    """The ``ENV key=value ...`` pairs of the project's ``Dockerfile``, as Docker reads them
    (continuation lines joined, quotes removed)."""
    text = (ROOT / "Dockerfile").read_text() if text is None else text
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    env: dict[str, str] = {}
    for line in "\n".join(lines).replace("\\\n", " ").splitlines():
        if line.split(maxsplit=1)[:1] in (["ENV"], ["env"]):
            for word in shlex.split(line)[1:]:
                key, sep, value = word.partition("=")
                if not sep:
                    raise ValueError(f"Dockerfile: ENV {word!r} is not key=value")
                env[key] = value
    return env


def openlineage_namespace() -> str:
    """The OpenLineage namespace of every job: the image's ``AIRFLOW__OPENLINEAGE__NAMESPACE``
    (the key the OpenLineage provider reads), so local, test and deployed events agree."""
    return dockerfile_env()["AIRFLOW__OPENLINEAGE__NAMESPACE"]


def openlineage_extractors() -> str:
    """The image's ``AIRFLOW__OPENLINEAGE__EXTRACTORS`` (``shared.lineage``'s TaskFlow extractor)."""
    return dockerfile_env()["AIRFLOW__OPENLINEAGE__EXTRACTORS"]


HEARTBEAT_KEYS = (
    "AIRFLOW__WORKERS__EXECUTION_API_RETRIES",
    "AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MIN",
    "AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MAX",
    "AIRFLOW__WORKERS__MAX_FAILED_HEARTBEATS",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT",
)
# ``[workers] execution_api_timeout`` (one request's timeout): Airflow's default, which the image
# leaves alone. ``min_heartbeat_interval`` (a task's heartbeats at most this often): Airflow's
# default 5 s is used as the bound here; the team workers run with 1 s (tenants.WORKER_TUNING),
# which only widens the margin the check below proves.
EXECUTION_API_TIMEOUT = 5.0
MIN_HEARTBEAT_INTERVAL = 5.0


@dataclass(frozen=True)
class HeartbeatBudget:
    """How long a task rides out an api-server outage, against the scheduler's heartbeat timeout.

    The task SDK retries every Execution API call (tenacity: ``stop_after_attempt(retries)``,
    ``wait_random_exponential(min=wait_min, max=wait_max)``: each wait drawn between
    ``wait_min`` and ``max(wait_min, min(2 ** (n - 1), wait_max))``); its supervisor sends a
    heartbeat call at most every ``MIN_HEARTBEAT_INTERVAL`` and kills the task after
    ``max_failed_heartbeats`` calls that gave up."""

    retries: int
    wait_min: float
    wait_max: float
    max_failed_heartbeats: int
    heartbeat_timeout: float

    @property
    def outage_tolerance(self) -> float:
        """The longest api-server outage every call outlives, whatever the random waits."""
        return (self.retries - 1) * self.wait_min

    @property
    def give_up_after(self) -> float:
        """The longest a call can take before it gives up: every wait at its maximum and every
        attempt at the request timeout (an api-server that accepts but does not answer)."""
        waits = sum(max(self.wait_min, min(2 ** (n - 1), self.wait_max)) for n in range(1, self.retries))
        return waits + self.retries * EXECUTION_API_TIMEOUT

    def problems(self) -> list[str]:
        """Why these settings would let the scheduler fail (and retry) a try that still runs."""
        out = []
        if self.max_failed_heartbeats != 1:
            out.append(f"max_failed_heartbeats is {self.max_failed_heartbeats}: a task that cannot heartbeat goes on for "
                       f"{self.max_failed_heartbeats} whole retry budgets; 1 stops it after the first")
        latest = self.give_up_after + MIN_HEARTBEAT_INTERVAL
        if self.heartbeat_timeout <= latest:
            out.append(f"task_instance_heartbeat_timeout {self.heartbeat_timeout:g} s is not above the longest a task "
                       f"can go on without a heartbeat before its supervisor stops it ({latest:g} s): the scheduler "
                       "would fail and retry a try that still runs (and may write its output again)")
        return out


def heartbeat_settings(env: dict[str, str] | None = None) -> dict[str, str]:
    """The image's Execution API retry and heartbeat settings (the ``Dockerfile``'s ``ENV``, their
    one source), for the scheduler and every team's worker; refused if they break the invariant
    of :class:`HeartbeatBudget`."""
    env = dockerfile_env() if env is None else env
    values = {k: env[k] for k in HEARTBEAT_KEYS}
    budget = heartbeat_budget(values)
    if problems := budget.problems():
        raise ValueError("Dockerfile heartbeat settings: " + "; ".join(problems))
    return values


def heartbeat_budget(values: dict[str, str]) -> HeartbeatBudget:
    return HeartbeatBudget(
        retries=int(values["AIRFLOW__WORKERS__EXECUTION_API_RETRIES"]),
        wait_min=float(values["AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MIN"]),
        wait_max=float(values["AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MAX"]),
        max_failed_heartbeats=int(values["AIRFLOW__WORKERS__MAX_FAILED_HEARTBEATS"]),
        heartbeat_timeout=float(values["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"]),
    )


def lineage_explorer_config():
    """``plugins/lineage_explorer/config.py``: plugins/ is on every Airflow process's
    sys.path (Airflow appends it); the platform's own commands append it the same way."""
    import importlib
    import sys

    plugins = str(ROOT / "plugins")
    if plugins not in sys.path:
        sys.path.append(plugins)
    return importlib.import_module("lineage_explorer.config")


def _env_int(name: str, default: int):
    """A dataclass default read from the environment when an instance is made."""
    return field(default_factory=lambda: int(os.environ.get(name, default)))


def bundle_config(root: Path = ROOT, domains: list[str] | None = None, paths: dict[str, Path] | None = None) -> list[dict]:
    """One LocalDagBundle per domain, owned by the team of the same name."""
    paths = paths or {}
    return [
        {
            "name": d,
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(paths.get(d, bundle_dir(d, root)))},
            "team_name": d,
        }
        for d in (domains or domain_names())
    ]


def simple_auth_users(domains: list[str] | None = None, extra: tuple[str, ...] = ()) -> str:
    """One admin, then per team an ``op`` user and a ``viewer`` user."""
    users = ["admin:admin", *extra]
    for d in domains or domain_names():
        users += [f"{d}_op:op:{d}", f"{d}_viewer:viewer:{d}"]
    return ",".join(users)


def checked_shared_assets(raw: str) -> str:
    """``PLATFORM_SHARED_ASSETS`` as ``[platform] shared_assets`` wants it, refused at start
    when it is not (the api-server would fail every asset request)."""
    data = json.loads(raw)
    if not isinstance(data, dict) or not all(
            isinstance(v, list) and all(isinstance(t, str) for t in v) for v in data.values()):
        raise ValueError('PLATFORM_SHARED_ASSETS must be a JSON object {"<asset name or URI>": ["team", ...]}')
    return raw


def domain_db_role(domain: str) -> str:
    return domain


@dataclass
class Secrets:
    """Generated on first start, kept in the ignored state folder, never committed."""

    fernet_key: str
    airflow_db_password: str
    domain_db_passwords: dict[str, str] = field(default_factory=dict)
    # Per team: the password of its own Redis (Celery broker + result backend) and of its Flower.
    redis_passwords: dict[str, str] = field(default_factory=dict)
    flower_passwords: dict[str, str] = field(default_factory=dict)
    # The domains' Redis (devplatform.domain_redis): its admin (``default`` user) password and
    # each domain's ACL user's password.
    domain_redis_admin_password: str = ""
    domain_redis_passwords: dict[str, str] = field(default_factory=dict)
    # Only the pre-Celery set-up (``PLATFORM_EXECUTOR=local``) signs task tokens with a
    # shared secret; the Celery set-up signs with an Ed25519 key (``jwt_private_key``).
    jwt_secret: str = ""
    # The lineage explorer (plugins/lineage_explorer): its database role's password, one
    # ingest key per team (its workers' OpenLineage transport) and the platform's key
    # (scheduler, dag-processor, api-server: DAG-level events of every team).
    lineage_db_password: str = ""
    lineage_ingest_keys: dict[str, str] = field(default_factory=dict)
    lineage_platform_key: str = ""
    # The stand-ins' admin routes (/_standin/faults, /_standin/calls): header X-Standin-Admin-Key.
    standin_admin_key: str = ""

    @classmethod
    def load_or_create(cls, path: Path, domains: list[str]) -> Secrets:
        data = json.loads(path.read_text()) if path.exists() else {}
        changed = not data
        data.setdefault("fernet_key", base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
        data.setdefault("airflow_db_password", secrets.token_urlsafe(24))
        for key in ("lineage_db_password", "lineage_platform_key", "domain_redis_admin_password",
                    "standin_admin_key"):
            if not data.get(key):
                data[key] = secrets.token_urlsafe(32)
                changed = True
        for key in ("domain_db_passwords", "redis_passwords", "flower_passwords", "lineage_ingest_keys",
                    "domain_redis_passwords"):
            pw = data.setdefault(key, {})
            for d in domains:
                if d not in pw:
                    pw[d] = secrets.token_urlsafe(24)
                    changed = True
        if changed:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(json.dumps(data, indent=2))
        return cls(**data)

    def with_jwt_secret(self, path: Path) -> str:
        """The legacy shared task-token secret (LocalExecutor set-up only), made once."""
        if not self.jwt_secret:
            data = json.loads(path.read_text())
            self.jwt_secret = data.setdefault("jwt_secret", secrets.token_urlsafe(64))
            path.write_text(json.dumps(data, indent=2))
        return self.jwt_secret


def ensure_ed25519_key(path: Path) -> Path:
    """The api-server's task-token signing key (PEM, mode 0600), generated once."""
    if not path.exists():
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
    return path


@dataclass
class PlatformConfig:
    """Ports and folders of one local platform instance (make start, or a test's own).

    Fields not given are read from the environment (``PLATFORM_STATE_DIR``,
    ``PLATFORM_PG_PORT``, ``PLATFORM_API_PORT``, ``PLATFORM_SMTP_PORT``,
    ``PLATFORM_TRIGGER_LOG_PORT``, the first of one port per triggerer, ``PLATFORM_DOMAIN_REDIS_PORT``, and
    ``PLATFORM_WORKER_LOG_PORT``, the scheduler's LocalExecutor log server; ``PLATFORM_DOMAINS``,
    the domains to start, all by default) when the instance is made, so configs built with
    different environments can live side by side in one process.
    """

    state: Path = field(default_factory=state_dir)
    pg_port: int = _env_int("PLATFORM_PG_PORT", DEFAULT_PG_PORT)
    api_port: int = _env_int("PLATFORM_API_PORT", DEFAULT_API_PORT)
    smtp_port: int = _env_int("PLATFORM_SMTP_PORT", DEFAULT_SMTP_PORT)
    domains: list[str] = field(default_factory=platform_domains)  # PLATFORM_DOMAINS: a subset
    bundle_paths: dict[str, Path] = field(default_factory=dict)
    extra_users: tuple[str, ...] = ()
    trigger_log_port: int = _env_int("PLATFORM_TRIGGER_LOG_PORT", DEFAULT_TRIGGER_LOG_PORT)
    # The log server of the global LocalExecutor (the PLATFORM_EXECUTOR=local baseline); in Celery
    # mode the global RefusingExecutor runs nothing and team workers serve no logs.
    worker_log_port: int = _env_int("PLATFORM_WORKER_LOG_PORT", DEFAULT_WORKER_LOG_PORT)
    # ``[core] parallelism``: how many tasks the whole platform runs or queues at once (the
    # scheduler's cap across all executors, and each executor's own). None: 16 with per-team
    # Celery workers (their concurrency bounds what really runs; at 4, one team's queued tasks
    # held every slot and the other teams' ready tasks waited, "Executor parallelism limit
    # reached"), 4 with the LocalExecutor baseline, which forks that many workers at start.
    parallelism: int | None = None
    # Airflow's ``[core] max_task_retry_delay``: the longest wait between two tries of a task
    # (the scheduler caps every exponential backoff with it). None: Airflow's default (a day;
    # the DAGs' own cap, 15 minutes, applies). Tests that wait for retries set a few seconds.
    max_task_retry_delay: int | None = None
    # "celery": each team's tasks on its own Celery workers (issue 11). "local": the earlier
    # set-up, every task inside the scheduler (LocalExecutor, shared JWT secret): kept as
    # the baseline of the benchmarks and of the attack matrix, it isolates nothing at runtime.
    executor: str = field(default_factory=lambda: os.environ.get("PLATFORM_EXECUTOR", "celery"))
    # The team workers' settings (devplatform/tenants.py WORKER_TUNING and the pool's autoscale):
    # "tuned", or "previous", the settings before issue 25 (PLATFORM_WORKER_SETTINGS): the
    # before/after switch of `make bench-executors`.
    worker_settings: str = field(default_factory=lambda: os.environ.get("PLATFORM_WORKER_SETTINGS", "tuned"))
    # What runs while the platform idles (issue 25): "lean" starts no team-less triggerer (every
    # bundle belongs to a team, so it had no trigger to run; a trigger without a team is alerted,
    # devplatform/alerts.py) and no Flower at start (each team's on demand: `make flower
    # TEAM=<team>`); "previous" (PLATFORM_IDLE_SETTINGS) starts both, as before: the before/after
    # switch of `python -m benchmarks.executors --memory-only --in-place`.
    idle_settings: str = field(default_factory=lambda: os.environ.get("PLATFORM_IDLE_SETTINGS", "lean"))
    redis_ports: dict[str, int] = field(default_factory=dict)
    flower_ports: dict[str, int] = field(default_factory=dict)
    # The domains' Redis (one server, one ACL user per domain; devplatform/domain_redis.py).
    domain_redis_port: int = _env_int("PLATFORM_DOMAIN_REDIS_PORT", DEFAULT_DOMAIN_REDIS_PORT)
    # ``[platform] shared_assets`` (README "Assets"): {"<asset name or URI>": ["team", ...]},
    # set by the platform's operators (``PLATFORM_SHARED_ASSETS``); "" shares nothing.
    shared_assets: str = field(default_factory=lambda: os.environ.get("PLATFORM_SHARED_ASSETS", ""))
    # supervisord restarts a platform process that dies (devplatform/supervisor.py); "0"
    # (PLATFORM_AUTORESTART=0) switches that off: the build the fault tests must fail on.
    autorestart: bool = field(default_factory=lambda: os.environ.get("PLATFORM_AUTORESTART", "1") != "0")
    # The platform's alerts (devplatform/alerts.py): the address, and when a team's queue
    # counts as backed up; PLATFORM_ALERT_* in the environment, or given by a test.
    alert_email: str = field(default_factory=lambda: os.environ.get("PLATFORM_ALERT_EMAIL", "platform-alerts@platform.local"))
    alert_check_seconds: float = _env_int("PLATFORM_ALERT_CHECK_SECONDS", 30)
    alert_queue_length: int = _env_int("PLATFORM_ALERT_QUEUE_LENGTH", 50)
    alert_queued_seconds: float = _env_int("PLATFORM_ALERT_QUEUED_SECONDS", 300)
    alert_repeat_seconds: float = _env_int("PLATFORM_ALERT_REPEAT_SECONDS", 600)
    # Per-team limits (platform_runtime.team_limits: a team's pools, its share of the scheduler's
    # parallelism, its ceiling on active runs, its parse-time limit); "0" (PLATFORM_TEAM_LIMITS=0)
    # switches them off: the build the noisy-neighbour benchmark and tests compare against.
    team_limits: bool = field(default_factory=lambda: os.environ.get("PLATFORM_TEAM_LIMITS", "1") != "0")
    # One of them: a bundle's share of the dag-processor's parse slots (``[platform]
    # bundle_parse_share``, platform_runtime.airflow_internals FairDagFileProcessorManager); "0"
    # (PLATFORM_PARSE_SHARE=0) switches off that one alone: Airflow's one queue for every slot.
    parse_share: bool = field(default_factory=lambda: os.environ.get("PLATFORM_PARSE_SHARE", "1") != "0")
    # Per-team CPU shares (platform_runtime.autogroup): every platform process in a session, so a
    # CFS autogroup, of its own; a team's worker, Flower, triggerer and parse zygote at autogroup
    # nice ``team_cpu_nice`` (PLATFORM_TEAM_CPU_NICE) above the control plane's. "0"
    # (PLATFORM_CPU_GROUPS=0) starts them all in supervisord's one group, as before.
    cpu_groups: bool = field(default_factory=lambda: os.environ.get("PLATFORM_CPU_GROUPS", "1") != "0")
    team_cpu_nice: int = _env_int("PLATFORM_TEAM_CPU_NICE", TEAM_CPU_NICE)
    # A team's CPU limit (platform_runtime.autogroup cgroups; README "Per-team limits"): every
    # process of a team (worker with its tasks, triggerer, Flower, parse zygote) in one cgroup of
    # the team's, one CPU share for the team and at most its ``limits.cpu_cores``, where the platform
    # may create cgroups (root, cgroup v1 cpu controller) and the CPU groups are on. "0"
    # (PLATFORM_TEAM_CPU_LIMIT=0) switches it off alone: a share per process group, no cap.
    team_cpu_limit: bool = field(default_factory=lambda: os.environ.get("PLATFORM_TEAM_CPU_LIMIT", "1") != "0")

    def __post_init__(self) -> None:
        if self.worker_settings not in WORKER_SETTINGS:
            raise ValueError(f"PLATFORM_WORKER_SETTINGS must be one of {WORKER_SETTINGS}, not {self.worker_settings!r}")
        if self.idle_settings not in IDLE_SETTINGS:
            raise ValueError(f"PLATFORM_IDLE_SETTINGS must be one of {IDLE_SETTINGS}, not {self.idle_settings!r}")

    def bundle_path(self, domain: str) -> Path:
        return self.bundle_paths.get(domain, bundle_dir(domain))

    @property
    def airflow_home(self) -> Path:
        return self.state / "airflow"

    @property
    def pgdata(self) -> Path:
        return self.state / "pgdata"

    @property
    def mail_dir(self) -> Path:
        return self.state / "mail"

    @property
    def lineage_file(self) -> Path:
        return self.state / "openlineage" / "events.jsonl"

    @property
    def lineage_dsn(self) -> str:
        """The lineage explorer's database (role ``lineage``): only the api-server gets it."""
        return f"postgresql://lineage:{self.secrets.lineage_db_password}@127.0.0.1:{self.pg_port}/lineage"

    def openlineage_transport(self, team: str | None = None) -> str:
        """``AIRFLOW__OPENLINEAGE__TRANSPORT``: the provider's ``http`` transport to the
        api-server's lineage explorer, with the team's ingest key (``None``: the platform's).
        ``PLATFORM_OPENLINEAGE=file`` writes JSON lines to ``lineage_file`` instead (debugging)."""
        if os.environ.get("PLATFORM_OPENLINEAGE") == "file":
            path = self.lineage_file if team is None else self.tenant_dir(team) / "openlineage.jsonl"
            return json.dumps({"type": "file", "log_file_path": str(path), "append": True})
        transport_config = lineage_explorer_config().transport_config
        s = self.secrets
        key = s.lineage_platform_key if team is None else s.lineage_ingest_keys[team]
        return json.dumps(transport_config(self.api_url, key))

    def no_proxy_env(self) -> dict[str, str]:
        """``NO_PROXY``/``no_proxy`` of every process that emits OpenLineage events or calls the
        api-server (Airflow's components, the teams' workers): the entries already set in this
        process's environment (either spelling), plus the api-server's host, which also serves
        the lineage explorer. The provider's ``http`` transport (requests) then takes its
        no-proxy branch for every event instead of reading the proxy settings from the
        environment on each call (about 15 % of its CPU time per event), and never sends the
        events, or the Execution API's calls, through a proxy set for the outside world."""
        entries: list[str] = []
        for key in ("no_proxy", "NO_PROXY"):
            for entry in os.environ.get(key, "").split(","):
                if entry.strip() and entry.strip() not in entries:
                    entries.append(entry.strip())
        host = urlsplit(self.api_url).hostname
        if host and host not in entries:
            entries.append(host)
        value = ",".join(entries)
        return {"NO_PROXY": value, "no_proxy": value}

    def lineage_explorer_env(self) -> dict[str, str]:
        """The api-server's ``[lineage_explorer]`` settings (database, every ingest key)."""
        s = self.secrets
        return {
            "AIRFLOW__LINEAGE_EXPLORER__SQL_ALCHEMY_CONN": self.lineage_dsn,
            "AIRFLOW__LINEAGE_EXPLORER__INGEST_KEYS": json.dumps({d: s.lineage_ingest_keys[d] for d in self.domains}),
            "AIRFLOW__LINEAGE_EXPLORER__PLATFORM_INGEST_KEY": s.lineage_platform_key,
        }

    @property
    def run_dir(self) -> Path:
        return self.state / "run"

    @property
    def celery(self) -> bool:
        return self.executor == "celery"

    def redis_port(self, domain: str) -> int:
        base = int(os.environ.get("PLATFORM_REDIS_PORT", DEFAULT_REDIS_PORT))
        return self.redis_ports.get(domain, base + self.domains.index(domain))

    @property
    def domain_redis_dir(self) -> Path:
        return self.state / "redis" / "_domains"

    @property
    def kafka_bootstrap_file(self) -> Path:
        """Where the Kafka stand-in publishes the address librdkafka chose for it."""
        return self.run_dir / "kafka-bootstrap"

    def kafka_bootstrap(self) -> str | None:
        path = self.kafka_bootstrap_file
        return path.read_text().strip() or None if path.exists() else None

    def flower_port(self, domain: str) -> int:
        base = int(os.environ.get("PLATFORM_FLOWER_PORT", DEFAULT_FLOWER_PORT))
        return self.flower_ports.get(domain, base + self.domains.index(domain))

    def broker_url(self, domain: str, db: int = 0) -> str:
        """The team's own Redis: database 0 is the Celery broker, 1 the result backend."""
        return f"redis://:{self.secrets.redis_passwords[domain]}@127.0.0.1:{self.redis_port(domain)}/{db}"

    @property
    def jwt_private_key(self) -> Path:
        return self.state / "jwt-ed25519.pem"

    @property
    def task_log_dir(self) -> Path:
        """Task logs: written by the workers (one OS user per team), read by the api-server."""
        return self.state / "task-logs"

    def tenant_dir(self, domain: str) -> Path:
        """The only state folder a team's worker and Flower can read or write."""
        return self.state / "tenants" / domain

    @cached_property
    def secrets(self) -> Secrets:
        return Secrets.load_or_create(self.state / "secrets.json", self.domains)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def settings_vars(self) -> dict[str, str]:
        """Values that ``${...}`` placeholders in the domains' settings files resolve to."""
        s = self.secrets
        from devplatform.users import EMBED_VENV, tenant_python

        out = {"PLATFORM_PG_HOST": "127.0.0.1", "PLATFORM_PG_PORT": str(self.pg_port),
               # the heavy model environment's interpreter, as the team users can run it
               "PLATFORM_EMBED_PYTHON": tenant_python(self.state, source=EMBED_VENV)}
        for d, pw in s.domain_db_passwords.items():
            out[f"{d.upper()}_DB_PASSWORD"] = pw
        for d in self.domains:  # the team's data (e.g. hss_workflow's songs), readable by its worker
            out[f"{d.upper()}_DATA_DIR"] = str(self.tenant_dir(d) / "data")
        out["PLATFORM_REDIS_HOST"] = "127.0.0.1"
        out["PLATFORM_REDIS_PORT"] = str(self.domain_redis_port)
        for d, pw in s.domain_redis_passwords.items():
            out[f"{d.upper()}_REDIS_PASSWORD"] = pw
        bootstrap = self.kafka_bootstrap()
        if bootstrap:
            for d in self.domains:
                out[f"{d.upper()}_KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
        for d in self.domains:  # a domain's lake (object storage) on the local platform: its tenant folder
            out[f"{d.upper()}_LAKE_URL"] = f"file://{self.tenant_dir(d)}/lake"
        return out

    def airflow_env(self) -> dict[str, str]:
        """Environment for every Airflow process of this platform instance."""
        from platform_runtime.team_limits import parsing_processes

        s = self.secrets
        env = {
            "AIRFLOW_HOME": str(self.airflow_home),
            "PYTHONPATH": str(ROOT),
            "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", f"/tmp/platform-runtime-{os.getuid()}"),
            "AIRFLOW__CORE__MULTI_TEAM": "True",
            "AIRFLOW__CORE__EXECUTOR": self.executor_setting(),
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism or self.default_parallelism()),
            **self.team_limits_env(),
            **self.cpu_groups_env(),
            **self.cpu_limit_env(),
            **({"AIRFLOW__CORE__MAX_TASK_RETRY_DELAY": str(self.max_task_retry_delay)} if self.max_task_retry_delay else {}),
            # the scheduler's heartbeat timeout and the workers' Execution API retries: the image's (Dockerfile)
            **heartbeat_settings(),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # plugins/: the api-server's tenant guard (platform_runtime.tenant_guard)
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__FERNET_KEY": s.fernet_key,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            # the simple auth manager, assets scoped by team (platform_runtime.auth, .asset_scope)
            "AIRFLOW__CORE__AUTH_MANAGER": AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": simple_auth_users(self.domains, self.extra_users),
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (
                f"postgresql+psycopg2://airflow:{s.airflow_db_password}@127.0.0.1:{self.pg_port}/airflow"
            ),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
                bundle_config(domains=self.domains, paths=self.bundle_paths)
            ),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.task_log_dir),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.worker_log_port),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            # a parse slot per bundle (platform_runtime.team_limits.parsing_processes)
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": str(parsing_processes(self.domains)),
            "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "True",
            "AIRFLOW__OPENLINEAGE__NAMESPACE": openlineage_namespace(),
            "AIRFLOW__OPENLINEAGE__EXTRACTORS": openlineage_extractors(),
            "AIRFLOW__OPENLINEAGE__TRANSPORT": self.openlineage_transport(),
            **self.no_proxy_env(),
            # Platform-owned global connection: the SMTP sink (the platform's mail relay).
            "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(
                {
                    "conn_type": "smtp",
                    "host": "127.0.0.1",
                    "port": self.smtp_port,
                    "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "airflow@platform.local"},
                }
            ),
        }
        if self.shared_assets:
            env["AIRFLOW__PLATFORM__SHARED_ASSETS"] = checked_shared_assets(self.shared_assets)
        if self.celery:
            for d in self.domains:
                # Per-team settings do not fall back to the global ones.
                env[f"AIRFLOW__{d.upper()}___CORE__EXECUTION_API_SERVER_URL"] = f"{self.api_url}/execution/"
        else:
            env["AIRFLOW__API_AUTH__JWT_SECRET"] = s.with_jwt_secret(self.state / "secrets.json")
        return env

    def default_parallelism(self) -> int:
        """``[core] parallelism`` unless given: with per-team limits, every team's pool slots
        together (``platform_runtime.team_limits.platform_parallelism``); else 16 with per-team
        Celery workers, 4 with the LocalExecutor baseline (it forks that many workers)."""
        if not self.celery:
            return 4
        if self.team_limits:
            from platform_runtime.team_limits import platform_parallelism

            return platform_parallelism(self.domains)
        return 16

    def team_limits_env(self) -> dict[str, str]:
        """``[platform] team_limits`` and the platform's default ``[core] max_active_runs_per_dag``
        (the Dockerfile sets the same)."""
        if not self.team_limits:
            return {"AIRFLOW__PLATFORM__TEAM_LIMITS": "False"}
        from platform_runtime.team_limits import DEFAULT_MAX_ACTIVE_RUNS_PER_DAG

        return {"AIRFLOW__PLATFORM__TEAM_LIMITS": "True",
                "AIRFLOW__PLATFORM__BUNDLE_PARSE_SHARE": str(self.parse_share),
                "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": str(DEFAULT_MAX_ACTIVE_RUNS_PER_DAG)}

    def cpu_groups_env(self) -> dict[str, str]:
        """``[platform] team_autogroup_nice``: where the dag-processor starts a team's parse zygote,
        in a CPU group of the team's own at this nice (``platform_runtime.airflow_internals``);
        unset (``PLATFORM_CPU_GROUPS=0``), in the dag-processor's."""
        if not self.cpu_groups:
            return {}
        from platform_runtime.autogroup import nice_for

        return {"AIRFLOW__PLATFORM__TEAM_AUTOGROUP_NICE": str(nice_for(self.team_cpu_nice))}

    @cached_property
    def cgroup_base(self) -> str | None:
        """The folder of this platform's team cgroups (one per state folder: several platforms may
        run side by side), or None where the teams' CPU limit is off or cannot be had."""
        from platform_runtime import autogroup

        if not (self.cpu_groups and self.team_cpu_limit and autogroup.cgroups_available()):
            return None
        import hashlib

        return f"{autogroup.CGROUP_CPU}/airflow-platform-{hashlib.sha256(str(self.state.resolve()).encode()).hexdigest()[:12]}"

    def team_cgroup(self, team: str) -> str | None:
        """The team's cgroup (its CPU limit, ``limits.cpu_cores``), None without."""
        return f"{self.cgroup_base}/{team}" if self.cgroup_base else None

    def cpu_limit_env(self) -> dict[str, str]:
        """``[platform] team_cpu_cgroup``: the cgroup (``{team}`` filled in) a team's parse zygote
        joins (``platform_runtime.airflow_internals``); unset, it stays in its autogroup."""
        return {"AIRFLOW__PLATFORM__TEAM_CPU_CGROUP": f"{self.cgroup_base}/{{team}}"} if self.cgroup_base else {}

    def autogroup_nice(self, team_process: bool) -> int | None:
        """The autogroup nice of a platform process started now (None: no group of its own): the
        starting process's own (0, or 19 under ``lowprio``), plus :attr:`team_cpu_nice` for a team's."""
        if not self.cpu_groups:
            return None
        from platform_runtime.autogroup import nice_for

        return nice_for(self.team_cpu_nice if team_process else 0)

    def executor_setting(self) -> str:
        """``[core] executor``: the global executor multi-team mode requires first, then one
        CeleryExecutor per team. The global one is ``RefusingExecutor``, which runs nothing:
        a team task that names it (or reaches it otherwise) fails instead of running inside
        the scheduler. The pre-Celery baseline (``PLATFORM_EXECUTOR=local``) keeps every task
        in the scheduler's LocalExecutor."""
        if not self.celery:
            return "LocalExecutor"
        return ";".join([GLOBAL_EXECUTOR, *(f"{d}=CeleryExecutor" for d in self.domains)])

    def scheduler_celery_env(self) -> dict[str, str]:
        """Only the scheduler (which sends the tasks) holds every team's broker URL."""
        env = {}
        for d in self.domains:
            team = d.upper()
            env[f"AIRFLOW__{team}___CELERY__BROKER_URL"] = self.broker_url(d, 0)
            env[f"AIRFLOW__{team}___CELERY__RESULT_BACKEND"] = self.broker_url(d, 1)
        return env

    def team_parsing_env(self) -> dict[str, str]:
        """For the dag-processor and the team triggerers (``platform_runtime.airflow_internals``):
        the interpreter the team users can run (``tenant_python``) and each team's home for its
        parse zygote and trigger runner, inside its own tenant folder."""
        from devplatform.users import tenant_python

        return {
            "AIRFLOW__PLATFORM__TEAM_PYTHON": tenant_python(self.state),
            "AIRFLOW__PLATFORM__TEAM_HOME": str(self.state / "tenants" / "{team}" / "parsing"),
        }

    def token_signing_env(self) -> dict[str, str]:
        """For the api-server (signs and checks tokens) and the scheduler (signs the tokens
        its executors hand to the workers): the Ed25519 private key, nothing shared."""
        if not self.celery:
            return {}
        return {
            "AIRFLOW__API_AUTH__JWT_PRIVATE_KEY_PATH": str(ensure_ed25519_key(self.jwt_private_key)),
            "AIRFLOW__API_AUTH__JWT_ALGORITHM": "EdDSA",
        }
