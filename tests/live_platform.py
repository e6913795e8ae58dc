"""One real platform for the tests that need one: api-server, scheduler, dag-processor,
triggerers, per-team Redis, Celery workers and Flower, every domain's real bundle, every
stand-in, started once per test session (``live_platform`` in tests/conftest.py) and shared by
tests/test_first_day.py and tests/test_isolation.py.

Per team a probe DAG (resolves the connection named in its conf), an attack probe, a
parse-time probe and a trigger probe (``tests/tenant_probe.py``, ``tests/trigger_probe.py``,
test-only) are planted in a copy of the team's bundle.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

from devplatform import settings as domain_settings
from devplatform.config import PlatformConfig
from devplatform.paths import bundle_dir, domain_names
from devplatform.platform import LocalPlatform
from devplatform.ports import free_port_range, free_ports
from devplatform.readiness import dag_files
from devplatform.standin import StandInServer, load_factory

TEAMS = domain_names()

PROBE = '''"""Isolation probe: resolves the connection named in the run's conf."""
from airflow.sdk import dag, task


@dag(dag_id="{team}_conn_probe", schedule=None, params={{"conn_id": "none"}}, tags=["{team}"], doc_md=__doc__)
def probe():
    @task(retries=0)
    def resolve(params=None):
        from airflow.sdk import BaseHook

        return BaseHook.get_connection(params["conn_id"]).conn_id

    resolve()


probe()
'''

ATTACK_PROBE = '''"""Attack probe (test-only): tries what a tenant's task must not reach; see tests/tenant_probe.py."""
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Asset, dag, task


@dag(dag_id="{team}_attack_probe", schedule=None, params={{"args": {{}}, "target": "none"}}, tags=["{team}"], doc_md=__doc__)
def attack_probe():
    # the team's own asset (tests/tenant_probe.py PROBE_ASSET): the other teams' probes go for it
    @task(retries=0, outlets=[Asset(name="{team}_probe_asset")])
    def attack(params=None, ti=None):
        import os
        import pwd

        from tests.tenant_probe import attack

        rows = attack(ti_id=str(ti.id), **params["args"])
        rows["runtime"] = {{"user": pwd.getpwuid(os.getuid()).pw_name, "airflow_home": os.environ.get("AIRFLOW_HOME"),
                           # the task runner itself sets the DB URL to a blocker ("airflow-db-not-allowed:///")
                           "env_keys": sorted(k for k, v in os.environ.items() if not v.startswith("airflow-db-not-allowed"))}}
        return rows

    attack()
    TriggerDagRunOperator(
        task_id="trigger_other_team", trigger_dag_id="{{{{ params.target }}}}", trigger_run_id="cross_team__{{{{ run_id }}}}",
        retries=0,
    )


attack_probe()
'''


EXECUTOR_PROBE = '''"""Executor probe (test-only): a team task naming a global executor must never parse."""
from airflow.sdk import dag, task


@dag(dag_id="{team}_executor_probe_{tag}", schedule=None, tags=["{team}"], doc_md=__doc__)
def executor_probe():
    @task(executor="{executor}", retries=0)
    def in_the_scheduler():
        import os
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name

    in_the_scheduler()


executor_probe()
'''
PARSE_PROBE = '''"""Parse-time probe (test-only): what a DAG file's top-level code reaches (tests/tenant_probe.py)."""
import json

from airflow.sdk import DAG
from tests.tenant_probe import code_attack

with DAG("{team}_parse_probe", schedule=None, tags=["{team}"], doc_md=json.dumps(code_attack(**{args!r}))):
    pass
'''
TRIGGER_PROBE = '''"""Trigger probe (test-only): what a trigger's code reaches in its team's triggerer (tests/trigger_probe.py)."""
from airflow.sdk import BaseOperator, dag


class DeferToAttack(BaseOperator):
    def execute(self, context):
        from tests.trigger_probe import AttackTrigger

        self.defer(trigger=AttackTrigger({args!r}), method_name="resume")

    def resume(self, context, event=None):
        return event


@dag(dag_id="{team}_trigger_probe", schedule=None, tags=["{team}"], doc_md=__doc__)
def trigger_probe():
    DeferToAttack(task_id="attack", retries=0)


trigger_probe()
'''
# per executor mode, the global executors a team task may try to name (issue 21: the executor escape)
EXECUTOR_PROBES = {"celery": {"local": "LocalExecutor", "global": "platform_runtime.executors.RefusingExecutor"},
                   "local": {}}


# The test platforms' development data (the settings' placeholders): aurora's generated app data
# (local.data), 500 users instead of make start's 2,000, so that ml_training_pipeline trains in
# about a minute on two cores and a platform that runs no aurora DAG starts sooner
DEV_DATA = {"AURORA_DEV_USERS": "500"}


def make_platform(executor: str = "celery", max_task_retry_delay: int | None = None,
                  plant: dict[str, str] | None = None, **config) -> LocalPlatform:
    """A platform of its own under a fresh folder that team users may traverse (mode 0711).

    ``plant``: more test-only DAG files for every team's bundle, file name -> text, both
    formatted with ``team``; ``config``: more :class:`PlatformConfig` fields."""
    state = Path(tempfile.mkdtemp(prefix="isolation-platform-"))
    os.chmod(state, 0o711)
    bundles = {}
    for team in TEAMS:
        folder = state / "bundles" / team
        folder.mkdir(parents=True)
        for f in dag_files(bundle_dir(team)):
            # a copy, not a symlink: Airflow records a DAG's file by its real path, and the cluster
            # policy finds the team of a task by the bundle folder that path is in
            shutil.copyfile(f, folder / f.name)
        (folder / f"{team}_conn_probe.py").write_text(PROBE.format(team=team))
        (folder / f"{team}_attack_probe.py").write_text(ATTACK_PROBE.format(team=team))
        for tag, name in EXECUTOR_PROBES[executor].items():
            (folder / f"{team}_executor_probe_{tag}.py").write_text(EXECUTOR_PROBE.format(team=team, tag=tag, executor=name))
        for name, text in (plant or {}).items():
            (folder / name.format(team=team)).write_text(text.format(team=team))
        bundles[team] = folder
    for path in (state / "bundles", *bundles.values(), *(f for b in bundles.values() for f in b.iterdir())):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    ports = free_ports(5 + 2 * len(TEAMS))
    pg, api, smtp, worker_log = ports[:4]
    cfg = PlatformConfig(
        state=state, pg_port=pg, api_port=api, smtp_port=smtp, worker_log_port=worker_log,
        domain_redis_port=ports[-1],
        bundle_paths=bundles, extra_users=("nobody:viewer",), executor=executor,
        trigger_log_port=free_port_range(len(TEAMS) + 1, exclude=ports),  # one per triggerer
        max_task_retry_delay=max_task_retry_delay,
        redis_ports=dict(zip(TEAMS, ports[4:4 + len(TEAMS)], strict=True)),
        flower_ports=dict(zip(TEAMS, ports[4 + len(TEAMS):4 + 2 * len(TEAMS)], strict=True)),
        **config,
    )
    for i, team in enumerate(TEAMS):  # top-level code of a DAG file, against the next team
        other = TEAMS[(i + 1) % len(TEAMS)]
        args = {"team": team, "other": other, "state": str(state), "pg_port": pg, "api_url": cfg.api_url,
                "other_bundle": str(bundles[other])}
        for kind, template in (("parse", PARSE_PROBE), ("trigger", TRIGGER_PROBE)):
            probe = bundles[team] / f"{team}_{kind}_probe.py"
            probe.write_text(template.format(team=team, args=args))
            os.chmod(probe, 0o644)
    platform = LocalPlatform(cfg, quiet=True)
    platform.expected_import_errors = {f"{t}_executor_probe_{tag}.py" for t in TEAMS for tag in EXECUTOR_PROBES[executor]}
    return platform


def standin_url_var(domain: str, name: str) -> str:
    """The settings' placeholder for a stand-in's URL: ``<DOMAIN>_<NAME>_URL`` (name without
    the domain's prefix), e.g. ``REFERRAL_BULLHORN_URL``, ``HSS_WORKFLOW_AUDIO_URL``."""
    return f"{domain.upper()}_{name.removeprefix(domain + '_').upper()}_URL"


def standin_ports(platform: LocalPlatform) -> dict[tuple[str, str], int]:
    """A free port for each declared stand-in (the settings' ports belong to `make start`)."""
    specs = [(d, s["name"]) for d, s in platform.standin_specs()]
    return dict(zip(specs, free_ports(len(specs)), strict=True))


def start_standins(platform: LocalPlatform, ports: dict[tuple[str, str], int]) -> dict[str, StandInServer]:
    """Every stand-in, in this process on its port, built from its settings as `make start`
    builds it (some keep their state in their domain's database: start them once it exists)."""
    values = platform.config.settings_vars()
    servers = {}
    for (domain, name), port in ports.items():
        spec = next(s for s in domain_settings.load(domain, values)["standins"] if s["name"] == name)
        app = load_factory(spec["app"])(**(spec.get("kwargs") or {}))
        servers[name] = StandInServer(app, port=port).__enter__()
    return servers


@contextmanager
def running_platform(executor: str = "celery", **kw) -> Iterator[LocalPlatform]:
    """A started platform with every stand-in; ``platform.standins``: name -> server."""
    p = make_platform(executor, **kw)
    ports = standin_ports(p)
    env = {standin_url_var(d, n): f"http://127.0.0.1:{port}" for (d, n), port in ports.items()}
    for (d, n), var in zip(ports, env, strict=True):  # the settings really read it
        assert "${" + var in (bundle_dir(d).parent / "settings.yaml").read_text(), (d, n, var)
    # A global connection in the starter's environment must not leak into the platform
    # (every team could read it): the cross-team probe of test_isolation.py would then succeed.
    stray = {f"AIRFLOW_CONN_{t.upper()}_POSTGRES": '{"conn_type": "postgres", "host": "leak"}' for t in TEAMS}
    env.update(DEV_DATA)
    p.standin_specs = lambda: []  # served here, on free ports
    p.standins = {}
    with mock.patch.dict(os.environ, {**stray, **env}):
        try:
            p.start(wait_timeout=400)
            p.standins = start_standins(p, ports)
            yield p
        finally:
            p.stop()
            for server in p.standins.values():
                server.__exit__(None, None, None)
            shutil.rmtree(p.config.state, ignore_errors=True)
