"""The local platform: embedded PostgreSQL, stand-ins, SMTP sink and Airflow 3.3.

``LocalPlatform(config).start()`` is what ``make start`` runs and what the platform tests
run on their own ports and state folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from devplatform import settings as domain_settings
from devplatform.config import PlatformConfig, domain_db_role
from devplatform.paths import ROOT
from devplatform.pg import DOMAIN_EXTENSIONS, PgServer
from devplatform.processes import Proc
from devplatform.tenants import TeamRuntime, can_switch_users

AIRFLOW_COMPONENTS = ("api-server", "dag-processor", "scheduler", "triggerer")
# In multi-team mode a triggerer runs only the triggers of its own team (or, without a
# team, of team-less DAGs): every team gets one, as it will get its own workers.


def _say(msg: str) -> None:
    print(f"[platform] {msg}", flush=True)


def venv_bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


class LocalPlatform:
    def __init__(self, config: PlatformConfig | None = None, quiet: bool = False) -> None:
        self.config = config or PlatformConfig()
        self.pg = PgServer(self.config.pgdata, self.config.pg_port)
        self.say = (lambda m: None) if quiet else _say

    # -- environment ----------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The caller's environment without any Airflow setting, plus the platform's own.

        An inherited ``AIRFLOW_CONN_*``/``AIRFLOW_VAR_*`` would be a global connection or
        variable that every team could read: the platform's configuration is only its own.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
        env.update(self.config.airflow_env())
        return env

    def proc(self, name: str) -> Proc:
        return Proc(name, self.config.run_dir, self.config.state / "logs")

    def standin_specs(self) -> list[tuple[str, dict]]:
        values = self.config.settings_vars()
        return [(d, s) for d in self.config.domains for s in domain_settings.load(d, values)["standins"]]

    def process_names(self) -> list[str]:
        names = ["smtp-sink"] + [f"standin-{d}-{s['name']}" for d, s in self.standin_specs()]
        names += [f"redis-{d}" for d in self.celery_teams()]
        return names + list(self.airflow_components()) + list(self.team_components())

    # -- per-team runtime (Celery) ---------------------------------------------------
    def celery_teams(self) -> list[str]:
        return self.config.domains if self.config.celery else []

    def team_runtime(self, team: str) -> TeamRuntime:
        return TeamRuntime(self.config, team)

    def team_components(self) -> dict[str, tuple[list[str], dict[str, str], str]]:
        """Process name -> (command, environment, team) of every team's worker and Flower."""
        out = {}
        for d in self.celery_teams():
            rt = self.team_runtime(d)
            out[f"worker-{d}"] = (rt.worker_command(), rt.worker_env(), d)
            out[f"flower-{d}"] = (rt.flower_command(), rt.flower_env(), d)
        return out

    def airflow_components(self) -> dict[str, list[str]]:
        """Process name -> airflow CLI arguments."""
        out = {c: [c] for c in AIRFLOW_COMPONENTS}
        out.update({f"triggerer-{d}": ["triggerer", "--team-name", d] for d in self.config.domains})
        return out

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
        if name in ("api-server", "scheduler"):
            env.update(self.config.token_signing_env())
        if name == "scheduler" and self.config.celery:
            env.update(self.config.scheduler_celery_env())
        return env

    def airflow(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [venv_bin("airflow"), *args], env=self.env(), cwd=ROOT, check=check, capture_output=True, text=True
        )

    # -- lifecycle ------------------------------------------------------------------
    def start(self, wait_timeout: float = 240) -> None:
        t0 = time.monotonic()
        cfg = self.config
        for sub in (cfg.state, cfg.run_dir, cfg.airflow_home, cfg.mail_dir, cfg.lineage_file.parent, cfg.state / "logs"):
            sub.mkdir(parents=True, exist_ok=True)
        Path(self.env()["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)
        secrets = cfg.secrets
        if cfg.celery and not can_switch_users():
            self.say("not root: every team's worker runs as this same OS user, so a task can read other "
                     "processes' /proc and state files of this user (run as root for per-team OS users)")
        airflow_up = all(self.proc(c).running() for c in self.airflow_components())

        self.say(f"PostgreSQL 18 (embedded) on 127.0.0.1:{cfg.pg_port}, data in {cfg.pgdata}")
        self.pg.start()
        self.pg.wait_ready()
        self.pg.ensure_database("airflow", "airflow", secrets.airflow_db_password)
        for d in cfg.domains:
            self.pg.ensure_database(d, domain_db_role(d), secrets.domain_db_passwords[d], DOMAIN_EXTENSIONS)
        if self.celery_teams() and can_switch_users():
            self.lock_state()  # after PostgreSQL, which opens the path to its data folder
        self.say(f"databases: airflow + one per domain ({', '.join(cfg.domains)}), one login role each")

        if not airflow_up:
            self.say("migrating the metadata database")
            self.airflow("db", "migrate")
            self.airflow("teams", "sync")
            self.say(f"teams: {', '.join(cfg.domains)}")
        counts = self.apply_settings()
        self.say(f"team-scoped settings applied: {counts}")

        self._start_proc(
            "smtp-sink",
            [sys.executable, "-m", "devplatform", "smtp-sink", "--port", str(cfg.smtp_port), "--dir", str(cfg.mail_dir)],
        )
        for d, spec in self.standin_specs():
            self._start_proc(
                f"standin-{d}-{spec['name']}",
                [sys.executable, "-m", "devplatform", "serve-standin", d, spec["name"]],
            )
        for d in self.celery_teams():
            rt = self.team_runtime(d)
            rt.prepare()
            self._start_proc(f"redis-{d}", rt.redis_command())
        self.write_local_data()
        for name, args in self.airflow_components().items():
            self._start_proc(name, [venv_bin("airflow"), *args], env=self.component_env(name))
        for name, (cmd, env, team) in self.team_components().items():
            user = self.team_runtime(team).user
            self._start_proc(name, cmd, env=env, user=(user.uid, user.gid) if user else None,
                             cwd=self.team_runtime(team).home)
        self.wait_ready(wait_timeout)
        self.say(f"ready in {time.monotonic() - t0:.1f} s")

    def write_local_data(self) -> None:
        """Each domain's ``local_data`` commands (its settings file): development data such as
        ecommerce_ml's raw drops, written as the team's OS user into the team's folder."""
        values = self.config.settings_vars()
        for d in self.config.domains:
            for args in domain_settings.load(d, values)["local_data"]:
                user = self.team_runtime(d).user if self.celery_teams() else None
                self.config.tenant_dir(d).mkdir(parents=True, exist_ok=True)
                if user:
                    os.chown(self.config.tenant_dir(d), user.uid, user.gid)
                out = subprocess.run([sys.executable, *args], env=self.env(), cwd=ROOT, capture_output=True, text=True,
                                     user=user.uid if user else None, group=user.gid if user else None)
                if out.returncode:
                    raise RuntimeError(f"{d} local data ({' '.join(args)}) failed: {out.stderr[-2000:]}")
                self.say(f"{d}: local data ready ({' '.join(args[:2])})")

    def lock_state(self) -> None:
        """As root: the platform's state folders are the platform's (mode 0700); team users
        may only pass through the state folder to their own tenant folder and the task logs."""
        state = self.config.state
        os.chmod(state, 0o711)
        shared = {"tenants", "tenant-python", self.config.task_log_dir.name}
        shared |= {p.relative_to(state).parts[0] for p in self.config.bundle_paths.values() if p.is_relative_to(state)}
        for child in state.iterdir():
            if child.is_dir() and not child.is_symlink() and child.name not in shared and child != self.config.pgdata:
                os.chmod(child, 0o700)

    def _start_proc(self, name: str, cmd: list[str], env: dict[str, str] | None = None,
                    user: tuple[int, int] | None = None, cwd: Path = ROOT) -> None:
        p = self.proc(name)
        if p.running():
            self.say(f"{name}: already running (pid {p.process().pid})")
            return
        pid = p.start(cmd, env or self.env(), cwd, user=user)
        self.say(f"{name}: started (pid {pid}), log {p.logfile}")

    def apply_settings(self) -> dict:
        out = subprocess.run(
            [sys.executable, "-m", "devplatform", "apply-settings", "--json"],
            env=self.env(),
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    def stop(self) -> list[str]:
        from concurrent.futures import ThreadPoolExecutor

        names = list(reversed(self.process_names()))
        # every process gets SIGTERM at once (a Celery worker may take seconds to shut down)
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            done = list(pool.map(lambda n: self.proc(n).stop(), names))
        stopped = [n for n, ok in zip(names, done, strict=True) if ok]
        # anything left from a stand-in that is no longer declared
        for pidfile in self.config.run_dir.glob("*.pid"):
            if self.proc(pidfile.stem).stop():
                stopped.append(pidfile.stem)
        if self.pg.pid():
            self.pg.stop()
            stopped.append("postgres")
        return stopped

    def status(self) -> dict[str, bool]:
        out = {name: self.proc(name).running() for name in self.process_names()}
        out["postgres"] = self.pg.pid() is not None
        return out

    # -- readiness ------------------------------------------------------------------
    def api_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.config.api_url}/api/v2/monitor/health", timeout=3) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def bundle_state(self) -> dict[str, dict]:
        """Per bundle: DAG files expected, files parsed into DAGs, import errors."""
        import psycopg2

        state = {}
        conn = psycopg2.connect(self.pg.admin_dsn("airflow"))
        try:
            with conn.cursor() as cur:
                for d in self.config.domains:
                    path = self.config.bundle_path(d)
                    expected = {str(p.relative_to(path)) for p in dag_files(path)}
                    cur.execute(
                        "SELECT DISTINCT relative_fileloc FROM dag WHERE bundle_name = %s AND is_stale = false", (d,)
                    )
                    parsed = {r[0] for r in cur.fetchall()}
                    cur.execute("SELECT filename, stacktrace FROM import_error WHERE bundle_name = %s", (d,))
                    errors = dict(cur.fetchall())
                    cur.execute("SELECT last_refreshed IS NOT NULL FROM dag_bundle WHERE name = %s", (d,))
                    row = cur.fetchone()
                    state[d] = {
                        "expected": expected,
                        "parsed": parsed,
                        "errors": errors,
                        "refreshed": bool(row and row[0]),
                    }
        finally:
            conn.close()
        return state

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.api_healthy():
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"API not healthy at {self.config.api_url}; see {self.config.state / 'logs'}")
            time.sleep(0.5)
        self.say(f"API healthy at {self.config.api_url}")
        while True:
            self._check_alive()
            state = self.bundle_state()
            errors = {d: s["errors"] for d, s in state.items() if s["errors"]}
            if errors:
                raise RuntimeError(f"import errors: {json.dumps(errors, indent=2)}")
            pending = {
                d: sorted(s["expected"] - s["parsed"]) for d, s in state.items() if not s["refreshed"] or s["expected"] - s["parsed"]
            }
            if not pending:
                for d, s in state.items():
                    self.say(f"bundle {d} (team {d}): {len(s['parsed'])} DAG file(s) parsed, 0 import errors")
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"bundles not parsed in time: {pending}")
            time.sleep(1)

    def _check_alive(self) -> None:
        for c in [*self.airflow_components(), *self.team_components()]:
            if not self.proc(c).running():
                log = self.proc(c).logfile
                tail = log.read_text()[-3000:] if log.exists() else ""
                raise RuntimeError(f"{c} exited; last log lines:\n{tail}")

    def logins(self) -> dict[str, str]:
        path = self.config.airflow_home / "simple_auth_manager_passwords.json.generated"
        deadline = time.monotonic() + 30
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        return json.loads(path.read_text()) if path.exists() else {}


def dag_files(folder: Path) -> list[Path]:
    """Python files in a bundle folder that the dag-processor would consider (safe mode)."""
    out = []
    for p in sorted(folder.rglob("*.py")):
        if "__pycache__" in p.parts or p.name.startswith("_"):
            continue
        text = p.read_text(errors="ignore")
        if "airflow" in text and "dag" in text.lower():
            out.append(p)
    return out
