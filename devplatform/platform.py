"""The local platform: embedded PostgreSQL, stand-ins, SMTP sink and Airflow 3.3.

``LocalPlatform(config).start()`` is what ``make start`` runs and what the platform tests
run on their own ports and state folder.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import time
from functools import cached_property
from pathlib import Path

from devplatform import kafka_standin
from devplatform import settings as domain_settings
from devplatform.config import PlatformConfig, domain_db_role
from devplatform.domain_redis import DomainRedis, declared_services, redis_domains
from devplatform.local_commands import LOCAL_LOGS, DomainCommand
from devplatform.paths import ROOT
from devplatform.pg import DOMAIN_EXTENSIONS, PgServer
from devplatform.processes import Proc, RunAs
from devplatform.readiness import api_healthy, bundle_state
from devplatform.state import lock_state, own
from devplatform.supervisor import LISTENER, SUPERVISOR_CAPS, SupervisedProc, Supervisor
from devplatform.tenants import TASK_UMASK, TeamRuntime
from devplatform.users import OsUser, can_switch_users, platform_user, tenant_python

AIRFLOW_COMPONENTS = ("api-server", "dag-processor", "scheduler", "triggerer")
# The only privileges a platform process keeps: the dag-processor and the team triggerers start
# each team's parse zygote and trigger runner as the team's OS user (platform_runtime.team_env).
SWITCH_USER_CAPS = ("setuid", "setgid")
# Started once the platform is ready: the processes nothing waits for, the triggerers (each
# with its team's trigger runner, a second interpreter importing Airflow) and Flower. On two
# cores their start takes a third of the CPU the path to "ready" needs (benchmarks.start_time
# --compare-late); a task that defers meanwhile waits for its team's triggerer, seconds later.
START_AFTER_READY = True
# In multi-team mode a triggerer runs only the triggers of its own team (or, without a
# team, of team-less DAGs): every team gets one, as it will get its own workers. Every bundle
# here belongs to a team, so the team-less triggerer had no trigger to run (~190 MiB PSS idle
# with its runner): it runs only with PLATFORM_IDLE_SETTINGS=previous (and in the LocalExecutor
# baseline's benchmarks); a trigger without a team is alerted (devplatform/alerts.py).
# The team triggerers are forked from one parent that imported Airflow once (~158 MiB private per
# triggerer otherwise, idle): supervisord's ``triggerers`` program; each ``triggerer-<team>``
# program is a thin relay to its forked triggerer (platform_runtime/triggerer_fork.py).
TRIGGERER_PARENT = "triggerers"
TRIGGERER_RELAY = ROOT / "platform_runtime" / "triggerer_fork.py"


def _say(msg: str) -> None:
    print(f"[platform] {msg}", flush=True)


class LocalPlatform:
    def __init__(self, config: PlatformConfig | None = None, quiet: bool = False) -> None:
        self.config = config or PlatformConfig()
        self.pg = PgServer(self.config.pgdata, self.config.pg_port)
        self.say = (lambda m: None) if quiet else _say
        self.timings: dict[str, float] = {}  # the last start's phases, in seconds
        # DAG file names that must fail to parse (a test's planted policy violations): ready
        # once they are import errors, and they stop nothing
        self.expected_import_errors: set[str] = set()
        self._team_components: dict[str, tuple[list[str], dict[str, str], str]] | None = None
        self._programs: set[str] | None = None
        self._mark = time.monotonic()

    # -- who runs what ---------------------------------------------------------------
    @cached_property
    def platform_user(self) -> OsUser | None:
        """The OS user of every platform process (per-team set-up as root), else None: then they
        run as the user who runs ``make start``."""
        return platform_user() if self.celery_teams() else None

    def run_as(self, caps: tuple[str, ...] = ()) -> RunAs | None:
        """A platform process: as the platform's user, with ``caps`` and nothing else, umask 077
        (what it writes is its own: the UI's passwords file, trigger logs, which the api-server
        reads as the same user). A team's processes run with :data:`TASK_UMASK`."""
        u = self.platform_user
        return RunAs(u.uid, u.gid, caps) if u else None

    @property
    def python(self) -> str:
        """The interpreter of the platform's processes: one the platform's user can run."""
        return tenant_python(self.config.state, create=True) if self.platform_user else sys.executable

    def enforcement_gaps(self) -> list[str]:
        """What this ``make start`` cannot enforce, said at start (not root, or the baseline)."""
        if not self.config.celery:
            return ["PLATFORM_EXECUTOR=local: the pre-Celery baseline; every task runs inside the scheduler "
                    "with the platform's privileges (kept for benchmarks and the attack matrix only)"]
        if can_switch_users():
            return []
        return [
            "not root: every team's worker, DAG-file parse and trigger runs as this same OS user, so a team's "
            "code can read other processes' /proc and every state file of this user (secrets.json, the "
            "signing key, PostgreSQL's data and its trusted socket); run as root for per-team OS users",
            "not root: the platform's processes run as this OS user, not as a platform user of their own",
        ]

    def own(self, *paths: Path) -> None:
        own(self.platform_user, *paths)

    def lock_state(self) -> None:
        lock_state(self.config, self.platform_user)

    # -- environment ----------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The caller's environment without any Airflow setting, plus the platform's own.

        An inherited ``AIRFLOW_CONN_*``/``AIRFLOW_VAR_*`` would be a global connection or
        variable that every team could read: the platform's configuration is only its own.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
        env.update(self.config.airflow_env())
        if self.platform_user:  # root's home and runtime folder are not the platform user's
            env.update({"HOME": str(self.config.airflow_home), "XDG_RUNTIME_DIR": str(self.config.run_dir)})
        return env

    def standin_env(self) -> dict[str, str]:
        """A stand-in's environment: the platform's, plus the stand-ins' admin key (in the
        environment, not on the command line that ``ps`` shows)."""
        from devplatform.standin import ADMIN_KEY_ENV

        return {**self.env(), **self.state_env(), ADMIN_KEY_ENV: self.config.secrets.standin_admin_key}

    def state_env(self) -> dict[str, str]:
        """For a platform command that builds its own ``PlatformConfig`` (prepare-db, a stand-in):
        this platform's state folder and ports, not the defaults of ``make start``."""
        cfg = self.config
        return {"PLATFORM_STATE_DIR": str(cfg.state), "PLATFORM_PG_PORT": str(cfg.pg_port),
                # the domains' Redis port of this platform (its connections name it)
                "PLATFORM_DOMAIN_REDIS_PORT": str(cfg.domain_redis_port)}

    @cached_property
    def supervisor(self) -> Supervisor:
        """The platform's process manager (devplatform/supervisor.py): it starts, restarts and
        stops every process of :meth:`process_names`."""
        return Supervisor(self.config.run_dir, self.config.state / "logs", autorestart=self.config.autorestart,
                          owner=self.platform_user)

    def proc(self, name: str) -> Proc | SupervisedProc:
        """A platform process (a program of supervisord), or a log of ``make start``'s own
        commands (``setup-<d>``, ``generate-<d>``)."""
        if self._programs is None:
            self._programs = set(self.process_names())
        if name in self._programs or name == LISTENER:
            return SupervisedProc(self.supervisor, name)
        return Proc(name, self.config.run_dir, self.config.state / "logs")

    def standin_specs(self) -> list[tuple[str, dict]]:
        values = self.config.settings_vars()
        return [(d, s) for d in self.config.domains for s in domain_settings.load(d, values)["standins"]]

    def local_env(self, team: str) -> dict[str, str]:
        return self.team_runtime(team).local_env()

    def start_setups(self) -> list[tuple[str, subprocess.Popen]]:
        """Each domain's ``local.setup`` command (development files such as hss_workflow's
        sample song and training CSV or ecommerce_ml's raw drops), started in the background
        before PostgreSQL (see :meth:`domain_command`); :meth:`start` waits for them before
        it reports ready."""
        return [(d, cmd.start()) for d in self.config.domains if (cmd := self.domain_command(d, "setup"))]

    def domain_command(self, domain: str, hook: str, args: list[str] | tuple[str, ...] = ()) -> DomainCommand | None:
        """The domain's ``local.<hook>`` command from its settings file (``hook``: ``setup``
        or ``data``), None if it declares none. See :class:`DomainCommand` for how it runs."""
        values = self.config.settings_vars()
        local = domain_settings.load(domain, values)["local"]
        if not local[hook]:
            return None
        user = self.team_runtime(domain).user if self.celery_teams() else None
        home = self.config.tenant_dir(domain) / "local"
        home.mkdir(parents=True, exist_ok=True)
        if user:  # the team's folder and the command's home are the team user's (as its worker's)
            for path in (self.config.tenant_dir(domain), home):
                os.chown(path, user.uid, user.gid)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8",
               # Airflow writes a generated airflow.cfg into AIRFLOW_HOME when a command imports it
               # (aurora's generator reads its connection through PostgresHook): the team's own folder
               "HOME": str(home), "AIRFLOW_HOME": str(home), **local["env"]}
        if hook == "data":  # its own connections, in the global form (no task, so no team to scope by)
            conns = domain_settings.as_env([domain], values, team_scoped=False)
            env.update({k: v for k, v in conns.items() if k.startswith("AIRFLOW_CONN_")})
        python = tenant_python(self.config.state, create=True) if user else sys.executable
        return DomainCommand(domain, hook, [python, *local[hook], *args], env, user,
                             self.proc(f"{LOCAL_LOGS[hook]}-{domain}").logfile)

    def process_names(self) -> list[str]:
        names = ["postgres", "smtp-sink"] + [f"standin-{d}-{s['name']}" for d, s in self.standin_specs()]
        names += [f"redis-{d}" for d in self.celery_teams()]
        names += [n for n, on in (("redis-domains", self.redis_domains()), ("kafka-standin", self.kafka_domains())) if on]
        parent = [TRIGGERER_PARENT] if self.forks_triggerers() else []
        return names + list(self.airflow_components()) + parent + list(self.team_components())

    def forks_triggerers(self) -> bool:
        """Whether the team triggerers are forked from the ``triggerers`` parent (the platform's
        own triggerers, ``platform_runtime``'s; not the LocalExecutor baseline's plain ones)."""
        return self.config.celery and any(c.startswith("triggerer-") for c in self.airflow_components())

    def triggerer_process(self, team: str):
        """The team's triggerer process (psutil), the one running Airflow's ``triggerer``: forked
        by the ``triggerers`` parent (its program then is the relay), or the program itself (a
        relay that found no parent execs the triggerer); None while there is none."""
        import psutil

        program = self.proc(f"triggerer-{team}").process()
        parent = self.proc(TRIGGERER_PARENT).process() if self.forks_triggerers() else None
        for candidate in [*(parent.children() if parent else []), *([program] if program else [])]:
            try:
                argv = " ".join(candidate.cmdline()).split()  # a forked one's title is one string
            except psutil.Error:
                continue
            if "triggerer" in argv and "--team-name" in argv and argv[argv.index("--team-name") + 1] == team \
                    and str(TRIGGERER_RELAY) not in argv:
                return candidate
        return None

    # -- the domains' Redis and the Kafka stand-in ----------------------------------
    def redis_domains(self) -> list[str]:
        return redis_domains(self.config.domains)

    def kafka_domains(self) -> list[str]:
        return [d for d in self.config.domains if "kafka" in declared_services(d)]

    def domain_redis(self) -> DomainRedis:
        """One server; per domain that declares ``services: [redis]`` an ACL user on its prefix."""
        cfg = self.config
        users = {d: cfg.secrets.domain_redis_passwords[d] for d in self.redis_domains()}
        return DomainRedis(cfg.domain_redis_port, cfg.domain_redis_dir, cfg.secrets.domain_redis_admin_password, users)

    def start_domain_services(self) -> None:
        """Before the settings are applied: the Kafka connections need the stand-in's address."""
        cfg = self.config
        if self.redis_domains():
            r = self.domain_redis()
            r.prepare()
            self.own(r.folder)
            self._start_proc("redis-domains", r.command())
            r.wait_ready()
            self.say(f"domain Redis on 127.0.0.1:{r.port}, ACL users: {', '.join(sorted(r.users))}")
        if self.kafka_domains():
            proc = self.proc("kafka-standin")
            if not proc.running():
                cfg.kafka_bootstrap_file.unlink(missing_ok=True)
            self._start_proc("kafka-standin", kafka_standin.command(cfg.kafka_bootstrap_file, self.python))
            bootstrap = kafka_standin.wait_bootstrap(cfg.kafka_bootstrap_file, alive=proc.running)
            self.say(f"Kafka stand-in (librdkafka mock cluster) at {bootstrap}, for: {', '.join(self.kafka_domains())}")

    # -- per-team runtime (Celery) ---------------------------------------------------
    def celery_teams(self) -> list[str]:
        return self.config.domains if self.config.celery else []

    def team_runtime(self, team: str) -> TeamRuntime:
        return TeamRuntime(self.config, team)

    def team_components(self) -> dict[str, tuple[list[str], dict[str, str], str]]:
        """Process name -> (command, environment, team) of every team's worker and Flower: built
        once per instance (every team's settings file read), not on each readiness check."""
        if self._team_components is None:
            out = {}
            for d in self.celery_teams():
                rt = self.team_runtime(d)
                out[f"worker-{d}"] = (rt.worker_command(), rt.worker_env(), d)
                out[f"flower-{d}"] = (rt.flower_command(), rt.flower_env(), d)
            self._team_components = out
        return self._team_components

    def airflow_components(self) -> dict[str, list[str]]:
        """Process name -> airflow CLI arguments.

        The scheduler and the triggerers serve no logs (``--skip-serve-logs``), like the
        workers: every component writes into the one local log folder, which the api-server
        reads directly (trigger logs included), so a log server per process (each a process
        importing Airflow) would serve nothing the api-server cannot read itself."""
        out = {c: [c] for c in AIRFLOW_COMPONENTS if c != "triggerer" or self.config.idle_settings == "previous"}
        out.update({f"triggerer-{d}": ["triggerer", "--team-name", d] for d in self.config.domains})
        for name in out:
            if name == "scheduler" or name.startswith("triggerer"):
                out[name].append("--skip-serve-logs")
        return out

    def component_command(self, name: str, args: list[str]) -> list[str]:
        """The dag-processor and the team triggerers run through ``platform_runtime.airflow_internals``
        (each team's DAG files parsed, and its triggers run, as its OS user); every other
        component, and these in the pre-Celery baseline (``PLATFORM_EXECUTOR=local``), is plain
        ``airflow <args>``."""
        if name == TRIGGERER_PARENT:
            return [self.python, "-m", "platform_runtime.triggerer_fork", "parent"]
        if (name == "dag-processor" or name.startswith("triggerer-")) and self.config.celery:
            # PLATFORM_EXECUTOR=local: Airflow's own, the baseline
            argv = [self.python, "-m", "platform_runtime.airflow_internals", *args]
            # a team's triggerer: a relay asking the parent to fork it with this argv (or exec'ing it)
            return [self.python, "-I", "-S", str(TRIGGERER_RELAY), *argv] if name.startswith("triggerer-") else argv
        return [self.python, "-m", "airflow", *args]

    def component_caps(self, name: str) -> tuple[str, ...]:
        """The dag-processor and the team triggerers keep CAP_SETUID and CAP_SETGID (they start
        team code as the team's user); every other platform process keeps no capability."""
        switches = name in ("dag-processor", TRIGGERER_PARENT) or name.startswith("triggerer-")
        return SWITCH_USER_CAPS if switches else ()

    def component_env(self, name: str) -> dict[str, str]:
        """Per-process settings: each triggerer serves its logs on a port of its own.

        A team's triggerer also gets its team's connections, in the global form: Airflow
        3.3's triggerer resolves connections without a team (its in-process Execution API
        has no task to take the team from), and it runs only its own team's triggers.
        """
        env = self.env()
        triggerers = [c for c in self.airflow_components() if c.startswith("triggerer")]
        if name in triggerers:
            env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(self.config.trigger_log_port + triggerers.index(name))
        team = name.removeprefix("triggerer-") if name.startswith("triggerer-") else None
        if team:
            team_env = domain_settings.as_env([team], self.config.settings_vars(), team_scoped=False)
            env.update({k: v for k, v in team_env.items() if k.startswith("AIRFLOW_CONN_")})
            env.update(self.local_env(team))
            env["AIRFLOW__OPENLINEAGE__TRANSPORT"] = self.config.openlineage_transport(team)
        if name == "dag-processor":  # DAGs read e.g. their allowed roots while parsing (Params' schema)
            for d in self.config.domains:
                env.update(self.local_env(d))
        if (name in ("dag-processor", TRIGGERER_PARENT) or team) and self.config.celery:
            env.update(self.config.team_parsing_env())
        if name == "api-server":
            env.update(self.config.lineage_explorer_env())
        if name in ("api-server", "scheduler"):
            env.update(self.config.token_signing_env())
        if name == "scheduler" and self.config.celery:
            env.update(self.config.scheduler_celery_env())
        return env

    def airflow(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """An ``airflow`` CLI command, as the platform's user (it writes into Airflow's home)."""
        return self.run_platform_command([self.python, "-m", "airflow", *args], self.env(), check=check)

    def run_platform_command(self, argv: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
        run_as = self.run_as()
        return subprocess.run(run_as.argv(argv) if run_as else argv, env=env, cwd=ROOT, check=check,
                              capture_output=True, text=True, **({"umask": run_as.umask} if run_as else {}))

    # -- lifecycle ------------------------------------------------------------------
    def phase(self, name: str) -> None:
        """Log the time since the previous phase ended (``make start``'s timings, per phase)."""
        now = time.monotonic()
        self.timings[name] = now - self._mark
        self._mark = now
        self.say(f"{name}: {self.timings[name]:.1f} s")

    def start(self, wait_timeout: float = 240) -> None:
        t0 = self._mark = time.monotonic()
        self.timings = {}
        cfg = self.config
        for sub in (cfg.state, cfg.run_dir, cfg.airflow_home, cfg.mail_dir, cfg.lineage_file.parent, cfg.state / "logs"):
            sub.mkdir(parents=True, exist_ok=True)
        Path(self.env()["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)
        secrets = cfg.secrets
        for gap in self.enforcement_gaps():
            self.say(f"cannot enforce: {gap}")
        if self.platform_user:
            self.lock_state()
        self.start_supervisor()
        airflow_up = all(self.proc(c).running() for c in self.airflow_components())

        # What needs no metadata database starts first, while PostgreSQL starts and the
        # database is migrated (one process, mostly one core): each domain's local setup, the
        # mail sink, and per team its Redis, Celery worker and Flower (the stand-ins follow PostgreSQL).
        setups = self.start_setups()
        self._start_proc(
            "smtp-sink",
            [self.python, "-m", "devplatform", "smtp-sink", "--port", str(cfg.smtp_port), "--dir", str(cfg.mail_dir)],
        )
        for d in self.celery_teams():
            rt = self.team_runtime(d)
            rt.prepare()
            self._start_proc(f"redis-{d}", rt.redis_command())
        self.make_team_cgroups()
        for name in self.team_components():
            if not self.starts_after_ready(name):
                self.start_component(name)
        self.phase("mail sink, Redis, workers started")

        self.say(f"PostgreSQL 18 (embedded) on 127.0.0.1:{cfg.pg_port}, data in {cfg.pgdata}")
        self.start_postgres()
        self.pg.ensure_database("airflow", "airflow", secrets.airflow_db_password)
        for d in cfg.domains:
            self.pg.ensure_database(d, domain_db_role(d), secrets.domain_db_passwords[d], DOMAIN_EXTENSIONS)
        self.pg.ensure_database("lineage", "lineage", secrets.lineage_db_password)
        if self.platform_user:  # starting PostgreSQL opened the path to its data folder (o+rx)
            os.chmod(cfg.state, 0o711)
        self.say(f"databases: airflow, lineage + one per domain ({', '.join(cfg.domains)}), one login role each")
        self.phase("postgres and databases")
        # the stand-ins once PostgreSQL is up: some keep their state in their domain's database
        # (looklyy's API); they start while the metadata database is prepared
        for d, spec in self.standin_specs():
            self._start_proc(
                f"standin-{d}-{spec['name']}",
                [self.python, "-m", "devplatform", "serve-standin", d, spec["name"], "--port", str(spec["port"])],
                env=self.standin_env(),
            )

        self.start_domain_services()  # before the settings: the Kafka connections need its address
        # each domain's local.data, now that its database (and the Kafka stand-in its
        # connections name) exists, while the metadata database is prepared
        generators = [(d, g) for d in cfg.domains if (g := self.start_generator(d))]
        self.phase("domain Redis and Kafka stand-in")
        if not airflow_up:
            self.say("migrating the metadata database, creating the teams, applying the settings")
        counts = self.prepare_db(migrate=not airflow_up)
        self.say(f"teams: {', '.join(cfg.domains)}; team-scoped settings applied: {counts}")
        self.phase("metadata database prepared")

        for name in self.airflow_components():
            if not self.starts_after_ready(name):
                self.start_component(name)
        for (d, proc), hook in [*((s, "setup") for s in setups), *((g, "data") for g in generators)]:
            if proc.wait() != 0:
                raise RuntimeError(f"{d}'s local.{hook} command failed (exit {proc.returncode}); see "
                                   f"{self.proc(f'{LOCAL_LOGS[hook]}-{d}').logfile}")
            self.say(f"{d}'s local.{hook} done, {time.monotonic() - t0:.1f} s after start")
        self.phase("Airflow components started, local data ready")
        self.wait_ready(wait_timeout)
        for name in [*([TRIGGERER_PARENT] if self.forks_triggerers() else []), *self.airflow_components(),
                     *self.team_components()]:
            if self.starts_after_ready(name) and not self.on_demand(name):
                self.start_component(name)
        self.timings["total"] = time.monotonic() - t0
        self.say(f"ready in {self.timings['total']:.1f} s")

    def start_supervisor(self) -> None:
        """supervisord (as the platform's user, with only the capabilities it needs to start each
        process as its own user) and its alert listener, unless it is already running."""
        sv = self.supervisor
        logs = self.config.state / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.own(logs)  # supervisord and each process's launcher write the processes' logs
        if sv.running():
            self.say(f"supervisord: already running (pid {sv.proc.process().pid})")
            return
        self._programs = set(self.process_names())
        sv.write_config(sorted(self._programs), self.python)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": str(self.config.airflow_home),
               "PYTHONPATH": str(ROOT)}
        pid = sv.start(self.python, env, self.run_as(SUPERVISOR_CAPS))
        self.say(f"supervisord: started (pid {pid}), restarts a process that dies; log {sv.log_dir / 'supervisord.log'}"
                 + ("" if self.config.autorestart else " (autorestart OFF: PLATFORM_AUTORESTART=0)"))
        cfg = self.config
        alerts = {"to": cfg.alert_email, "smtp_port": cfg.smtp_port, "check_seconds": cfg.alert_check_seconds,
                  "queue_length": cfg.alert_queue_length, "queued_seconds": cfg.alert_queued_seconds,
                  "repeat_seconds": cfg.alert_repeat_seconds, "teams": self.celery_teams(),
                  "brokers": {d: cfg.broker_url(d, 0) for d in self.celery_teams()},
                  "db_url": cfg.airflow_env()["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
                  "supervisor_log": str(sv.log_dir / "supervisord.log")}
        sv.write_spec(LISTENER, [self.python, "-m", "devplatform.alerts"],
                      {**self.env(), "PLATFORM_ALERTS": json.dumps(alerts)}, ROOT, self.run_as(), listener=True,
                      autogroup_nice=self.config.autogroup_nice(False))
        sv.start_program(LISTENER)
        self.say(f"platform alerts: mailed to {cfg.alert_email} (log {sv.log_dir / (LISTENER + '.log')})")

    def start_postgres(self) -> None:
        """PostgreSQL as supervisord's ``postgres`` program (``postgres -D`` in the foreground, as
        the server's OS user): restarted like every platform process when it dies (a crash: a
        new start recovers from its write-ahead log), stopped last. A server that already runs
        (started by ``pg_ctl``, e.g. by an older ``make start``) is kept, its rules reloaded."""
        changed = self.pg.prepare()
        running = self.pg.pid() is not None
        if running:
            supervised = self.proc("postgres").running()
            self.say(f"postgres: already running{'' if supervised else ' outside supervisord'} (pid {self.pg.pid()})")
        else:  # (a server it starts reads the rules itself)
            user = self.pg.run_as().get("user")
            owner = pwd.getpwnam(user) if user else None
            self._start_proc("postgres", self.pg.server_argv(),
                             env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
                             run_as=RunAs(owner.pw_uid, owner.pw_gid) if owner else None, cwd=self.pg.datadir)
        self.pg.wait_ready(timeout=120)
        if running and changed:  # a server from before reads the new rules
            self.pg.reload()

    def make_team_cgroups(self) -> None:
        """Each team's cgroup (``PlatformConfig.team_cgroup``): the team's one CPU share (its
        processes' autogroup nice) and its CPU limit, ``limits.cpu_cores`` of its settings.yaml.
        Its processes move themselves in (the launcher, the parse zygote): the platform's user
        and the team's group may write its ``cgroup.procs``, nobody but root its limit."""
        from platform_runtime.autogroup import make_cgroup
        from platform_runtime.team_limits import team_limits

        if self.config.cgroup_base is None:
            if self.config.cpu_groups and self.config.team_cpu_limit:
                self.say("cannot enforce: a team's CPU limit (limits.cpu_cores) needs a cgroup v1 cpu controller "
                         "this user may write (root); each team process weighs one CPU share (autogroup) instead")
            return
        owner = self.platform_user
        for d in self.config.domains:
            user = self.team_runtime(d).user
            cores = team_limits(d)["cpu_cores"]
            make_cgroup(self.config.team_cgroup(d), self.config.autogroup_nice(True), cores,
                        owner=(owner.uid if owner else os.getuid(), user.gid if user else os.getgid()))
        limits = ", ".join(f"{d} {team_limits(d)['cpu_cores']} cores" for d in self.config.domains)
        self.say(f"teams' CPU limits: cgroups in {self.config.cgroup_base} ({limits})")

    def team_of_process(self, name: str) -> str | None:
        """The team whose code a platform process runs or serves (its worker, Flower, triggerer)."""
        if name in self.team_components():
            return self.team_components()[name][2]
        return name.removeprefix("triggerer-") if name.startswith("triggerer-") else None

    def is_team_process(self, name: str) -> bool:
        """A process that runs a team's code (its worker with its tasks, its triggerer with its
        trigger runner) or serves only that team (its Flower): its CPU group sits at the teams'
        nice (``PlatformConfig.autogroup_nice``); the control plane's at the platform's own."""
        return name in self.team_components() or name.startswith("triggerer-")

    def starts_after_ready(self, name: str) -> bool:
        """Started once the platform is ready (:data:`START_AFTER_READY`): triggerers and Flower."""
        return START_AFTER_READY and (name in ("triggerer", TRIGGERER_PARENT) or name.startswith(("triggerer-", "flower-")))

    def on_demand(self, name: str) -> bool:
        """Not started by ``make start``: a team's Flower, unless ``PLATFORM_IDLE_SETTINGS=previous``
        (a monitoring page nobody looks at most of the time, ~48 MiB PSS each idle); ``make
        flower TEAM=<team>`` starts it (:meth:`start_flower`), ``make flower-stop`` stops it."""
        return name.startswith("flower-") and self.config.idle_settings == "lean"

    def start_flower(self, team: str, timeout: float = 60) -> str:
        """Start ``team``'s Flower (supervisord restarts it if it dies, until ``make stop`` or
        :meth:`stop_flower`) and wait until it answers its team's login; its URL."""
        import requests

        if team not in self.celery_teams():
            raise ValueError(f"no team {team!r} with a Celery worker (teams: {', '.join(self.celery_teams())})")
        self.start_component(f"flower-{team}")
        url, auth = self.team_runtime(team).flower_url(), (team, self.config.secrets.flower_passwords[team])
        deadline = time.monotonic() + timeout
        while True:
            try:
                if requests.get(f"{url}/healthcheck", auth=auth, timeout=5).status_code == 200:
                    return url
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or self.states().get(f"flower-{team}") in ("FATAL", "EXITED", "STOPPED"):
                log = self.proc(f"flower-{team}").logfile
                raise RuntimeError(f"flower-{team} did not answer at {url}; last log lines:\n"
                                   + (log.read_text(errors="replace")[-2000:] if log.exists() else ""))
            time.sleep(0.5)

    def stop_flower(self, team: str) -> None:
        self.supervisor.stop_program(f"flower-{team}")

    def start_component(self, name: str) -> None:
        """An Airflow component, or a team's worker or Flower, as its OS user."""
        team_component = self.team_components().get(name)
        if team_component is not None:
            cmd, env, team = team_component
            user = self.team_runtime(team).user
            self._start_proc(name, cmd, env=env, run_as=RunAs(user.uid, user.gid, umask=TASK_UMASK) if user else None,
                             cwd=self.team_runtime(team).home)
            return
        self._start_proc(name, self.component_command(name, self.airflow_components().get(name, [])),
                         env=self.component_env(name), run_as=self.run_as(self.component_caps(name)))

    def _start_proc(self, name: str, cmd: list[str], env: dict[str, str] | None = None,
                    run_as: RunAs | None | bool = True, cwd: Path = ROOT) -> None:
        """``run_as``: True (default) the platform's user without capabilities, else as given."""
        p = self.proc(name)
        if p.running():
            self.say(f"{name}: already running (pid {p.process().pid})")
            return
        team = self.team_of_process(name)
        self.supervisor.write_spec(name, cmd, env or self.env(), cwd, self.run_as() if run_as is True else run_as,
                                   autogroup_nice=self.config.autogroup_nice(self.is_team_process(name)),
                                   cgroup=self.config.team_cgroup(team) if team else None)
        self.supervisor.start_program(name)
        info = p.info() or {}
        self.say(f"{name}: started (pid {info.get('pid')}), log {p.logfile}")

    def prepare_db(self, migrate: bool) -> dict:
        """Migrate, create the teams (``migrate``) and apply every domain's settings, in one
        process (``python -m devplatform prepare-db``): Airflow is imported once, not per step."""
        env = {**self.env(), **self.state_env()}
        out = self.run_platform_command(
            [self.python, "-m", "devplatform", "prepare-db", *(["--migrate"] if migrate else [])], env, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"prepare-db failed ({out.returncode}):\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    def generate_data(self, domain: str, args: list[str] | tuple[str, ...] = ()) -> bool:
        """Fill a domain's database with its generated dataset, if the domain declares one
        (``local.data``; the command does nothing when the same dataset is already loaded),
        and wait for it (``make aurora-data``). True if there was one."""
        cmd = self.domain_command(domain, "data", args)
        if cmd is None:
            return False
        self.say(f"{domain}: generating its dataset ({' '.join(cmd.argv[1:])})")
        for line in cmd.run().strip().splitlines():
            self.say(line)
        return True

    def start_generator(self, domain: str) -> subprocess.Popen | None:
        """``make start``: the domain's ``local.data`` in the background (log ``generate-<domain>``),
        while Airflow starts; :meth:`start` waits for it before it reports ready."""
        cmd = self.domain_command(domain, "data")
        if cmd is None:
            return None
        self.say(f"{domain}: generating its dataset in the background, log {cmd.log}")
        return cmd.start()

    def stop(self) -> list[str]:
        from concurrent.futures import ThreadPoolExecutor

        # supervisord stops every process at once (SIGTERM to each process group; a Celery worker
        # may take seconds to shut down), then exits
        states = self.supervisor.states()
        stopped = [n for n, i in states.items() if i["statename"] in ("STARTING", "RUNNING", "BACKOFF")]
        if self.supervisor.stop():
            stopped.append("supervisord")
        # processes of the pid-file launcher before supervisord (an older make start), or
        # anything left from a stand-in that is no longer declared
        pidfiles = [p for p in self.config.run_dir.glob("*.pid") if p.stem != "supervisord"]
        names = [p.stem for p in pidfiles]
        logs = self.config.state / "logs"
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            done = list(pool.map(lambda n: Proc(n, self.config.run_dir, logs).stop(), names))
        stopped += [n for n, ok in zip(names, done, strict=True) if ok]
        if self.pg.pid():
            self.pg.stop()
            stopped.append("postgres")
        if self.config.cgroup_base:  # the teams' cgroups, empty now
            from platform_runtime.autogroup import remove_cgroup

            remove_cgroup(self.config.cgroup_base)
        return stopped

    def status(self) -> dict[str, bool]:
        states = self.supervisor.states()
        out = {"supervisord": self.supervisor.running()}
        out.update({name: states.get(name, {}).get("statename") in ("STARTING", "RUNNING")
                    for name in [*self.process_names(), LISTENER]})
        out["postgres"] = self.pg.pid() is not None
        return out

    def states(self) -> dict[str, str]:
        """supervisord's state of each process (RUNNING, STARTING, BACKOFF, EXITED, FATAL, STOPPED)."""
        states = self.supervisor.states()
        return {name: states.get(name, {}).get("statename", "STOPPED") for name in [*self.process_names(), LISTENER]}

    # -- readiness ------------------------------------------------------------------
    def api_healthy(self) -> bool:
        return api_healthy(self.config.api_url)

    def bundle_state(self) -> dict[str, dict]:
        return bundle_state(self.pg, self.config)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.api_healthy():
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"API not healthy at {self.config.api_url}; see {self.config.state / 'logs'}")
            time.sleep(0.5)
        self.say(f"API healthy at {self.config.api_url}")
        self.phase("api-server healthy")
        while True:
            self._check_alive()
            state = self.bundle_state()
            for s in state.values():
                s["planted"] = {f for f in s["errors"] if Path(f).name in self.expected_import_errors}
                s["errors"] = {f: t for f, t in s["errors"].items() if f not in s["planted"]}
                s["parsed"] |= {Path(f).name for f in s["planted"]}  # planted files sit at the bundle's root
            errors = {d: s["errors"] for d, s in state.items() if s["errors"]}
            if errors:
                raise RuntimeError(f"import errors: {json.dumps(errors, indent=2)}")
            pending = {
                d: sorted(s["expected"] - s["parsed"]) for d, s in state.items() if not s["refreshed"] or s["expected"] - s["parsed"]
            }
            if not pending:
                for d, s in state.items():
                    self.say(f"bundle {d} (team {d}): {len(s['parsed'])} DAG file(s) parsed, 0 import errors")
                self.phase("bundles parsed")
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"bundles not parsed in time: {pending}")
            time.sleep(1)

        # a task triggered now runs at once: every team's Celery worker has connected
        waiting = [f"worker-{d}" for d in self.celery_teams()]
        while waiting:
            self._check_alive()
            waiting = [w for w in waiting if " ready." not in self.proc(w).logfile.read_text(errors="replace")]
            if waiting and time.monotonic() > deadline:
                raise TimeoutError(f"Celery workers not ready in time: {waiting}")
            time.sleep(0.5)
        if self.celery_teams():
            self.phase("Celery workers ready")

    def _check_alive(self) -> None:
        """A process that died while the platform starts stops ``make start`` (supervisord would
        retry it: a crash at start is a fault to see, not to hide)."""
        states = self.supervisor.states()
        for c in [*self.airflow_components(), *self.team_components()]:
            if not self.starts_after_ready(c) and states.get(c, {}).get("statename") not in ("STARTING", "RUNNING"):
                log = self.proc(c).logfile
                tail = log.read_text()[-3000:] if log.exists() else ""
                raise RuntimeError(f"{c} exited; last log lines:\n{tail}")

    def logins(self) -> dict[str, str]:
        path = self.config.airflow_home / "simple_auth_manager_passwords.json.generated"
        deadline = time.monotonic() + 30
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        return json.loads(path.read_text()) if path.exists() else {}
