"""DAG-file top-level code runs as its team: a real dag-processor, before and after.

Two teams' bundles are parsed by a real ``airflow dag-processor`` on the session's metadata
database. One DAG file of team ``tpalpha`` attacks from its top-level code (the way a DAG
author would: it runs inside the dag-processor's child) and publishes what it got through its
own ``doc_md``, which lands in the serialized DAG. Run by Airflow's own command, every attack
succeeds (the test proves that); run by ``python -m platform_runtime.airflow_internals
dag-processor`` (the platform's), every one fails, and both teams' DAGs still parse.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.tenant_probe import sha

ROOT = Path(__file__).resolve().parents[1]
TEAMS = ("tpalpha", "tpbeta")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching to the team's OS user needs root")

ATTACK = '''
"""Parse-time attack probe (test only): tests/tenant_probe.py code_attack, from top-level code."""
import json

from airflow.sdk import DAG
from tests.tenant_probe import code_attack

with DAG("tpalpha_parse_attack", schedule=None, doc_md=json.dumps(code_attack(**{args!r}))):
    pass
'''
PLAIN_DAG = '''
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG("{dag_id}", schedule=None):
    EmptyOperator(task_id="noop")
'''


@pytest.fixture(scope="module")
def two_teams(platform_tmp, pg):
    """Teams, OS users and bundles (in a folder the team users can reach; each team's bundle
    readable by its own user only), plus each team's variable and a run of beta's DAG."""
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.team import Team
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    from devplatform.users import team_user

    base = Path("/tmp") / f"team-parsing-{uuid.uuid4().hex[:8]}"
    base.mkdir(mode=0o711)
    bundles, users = {}, {}
    for team in TEAMS:
        users[team] = team_user(team)
        folder = base / team
        folder.mkdir(mode=0o750)
        if users[team]:
            os.chown(folder, 0, users[team].gid)
        bundles[team] = folder
    with create_session() as session:
        for team in TEAMS:
            if session.get(Team, team) is None:
                session.add(Team(name=team))
        session.flush()
        for team in TEAMS:
            bundle = session.get(DagBundleModel, f"{team}_bundle")
            if bundle is None:
                bundle = DagBundleModel(name=f"{team}_bundle")
                session.add(bundle)
            bundle.teams = [session.get(Team, team)]
    with create_session() as session:
        for team in TEAMS:
            session.query(Variable).filter(Variable.key == f"{team}_alert_emails").delete()
            session.add(Variable(key=f"{team}_alert_emails", val=f"{team}-only-value", team_name=team))
    (bundles["tpbeta"] / "tpbeta_dag.py").write_text(PLAIN_DAG.format(dag_id="tpbeta_conn_probe"))
    (bundles["tpalpha"] / "tpalpha_dag.py").write_text(PLAIN_DAG.format(dag_id="tpalpha_dag"))
    args = {"team": "tpalpha", "other": "tpbeta", "state": str(platform_tmp), "pg_port": pg.port,
            "api_url": "http://127.0.0.1:9", "other_bundle": str(bundles["tpbeta"])}
    (bundles["tpalpha"] / "tpalpha_parse_attack.py").write_text(ATTACK.format(args=args))
    for team in TEAMS:
        for f in bundles[team].iterdir():
            os.chmod(f, 0o640)
            if users[team]:
                os.chown(f, 0, users[team].gid)
    yield {"base": base, "bundles": bundles, "users": users}
    shutil.rmtree(base, ignore_errors=True)


def run_dag_processor(command: list[str], two_teams, home: Path) -> dict:
    """Run a dag-processor over both bundles until each file was parsed; the attack's rows."""
    from airflow.models.dag import DagModel
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    from devplatform.users import tenant_python

    with create_session() as session:  # a fresh start: a DAG whose version is known is not written again
        session.execute(delete(DagModel).where(DagModel.dag_id.like("tp%")))
    (two_teams["bundles"]["tpbeta"] / "planted_by_another_team.py").unlink(missing_ok=True)
    bundles = [{"name": f"{t}_bundle", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(two_teams["bundles"][t])}, "team_name": t} for t in TEAMS]
    home.mkdir(exist_ok=True)
    env = {**os.environ, "AIRFLOW__CORE__MULTI_TEAM": "True",
           "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
           "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "1",
           "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "1",
           "AIRFLOW__PLATFORM__TEAM_PYTHON": tenant_python(ROOT / ".local", create=True),
           "AIRFLOW__PLATFORM__TEAM_HOME": str(two_teams["base"] / "home-{team}"),
           "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
           "AIRFLOW__LOGGING__DAG_PROCESSOR_CHILD_PROCESS_LOG_DIRECTORY": str(home / "logs" / "dag_processor"),
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([*command, "dag-processor", "--num-runs", "2"], env=env, cwd=home,
                          capture_output=True, text=True, timeout=300)
    with create_session() as session:
        dags = {row.dag_id: row for row in session.query(SerializedDagModel).filter(SerializedDagModel.dag_id.like("tp%"))}
    logs = "".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted((home / "logs").rglob("*.log")))
    zygotes = "".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in two_teams["base"].glob("home-*/zygote.log"))
    assert "tpalpha_parse_attack" in dags, proc.stdout[-3000:] + proc.stderr[-3000:] + logs + zygotes
    doc = dags["tpalpha_parse_attack"].data["dag"].get("doc_md")
    return {"rows": json.loads(doc), "dags": set(dags), "output": proc.stdout + proc.stderr}


def forbidden() -> set[str]:
    env = os.environ
    return {sha(v) for v in (env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], env["AIRFLOW__API_AUTH__JWT_SECRET"])}


def attempts(result: dict, two_teams) -> dict[str, bool]:
    """{attempt: succeeded}: the probe's rows, secrets judged against the platform's real ones."""
    from tests.tenant_probe import CODE_ATTEMPTS

    rows = result["rows"]
    user = two_teams["users"]["tpalpha"]
    out = {"runs as another OS user than its team's": rows["runtime"]["uid"] != (user.uid if user else -1)}
    for name in CODE_ATTEMPTS:
        out[name] = rows[name]["succeeded"] or bool(forbidden() & set(rows[name].get("found", [])))
    out["write into another team's bundle folder"] |= (two_teams["bundles"]["tpbeta"] / "planted_by_another_team.py").exists()
    return out


@needs_root
def test_parse_time_code_runs_as_its_team_with_nothing_of_the_platform(two_teams, platform_tmp, tmp_path):
    airflow = [str(Path(sys.executable).parent / "airflow")]
    before = attempts(run_dag_processor(airflow, two_teams, tmp_path / "stock"), two_teams)
    after_run = run_dag_processor([sys.executable, "-m", "platform_runtime.airflow_internals"], two_teams,
                                  tmp_path / "platform")
    after = attempts(after_run, two_teams)
    width = max(map(len, before))
    print("\nparse-time attack from a DAG file of team tpalpha: Airflow's dag-processor | the platform's")
    for name in before:
        print(f"{name:{width}s} | {'SUCCEEDED' if before[name] else 'refused':9s} | "
              f"{'SUCCEEDED' if after[name] else 'refused'}")
    print(f"{sum(before.values())} of {len(before)} succeeded before, {sum(after.values())} after")
    assert sum(before.values()) >= 8, before  # the attack is real on stock Airflow 3.3.2
    assert not any(after.values()), (after, after_run["rows"], after_run["output"][-3000:])
    assert {"tpalpha_dag", "tpbeta_conn_probe", "tpalpha_parse_attack"} <= after_run["dags"]
    assert set(after_run["rows"]["runtime"]["env_keys"]) <= {
        "PATH", "LANG", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "HOME", "AIRFLOW_HOME", "AIRFLOW_CONFIG", "_PLATFORM_TEAM",
        "AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CORE__MULTI_TEAM", "AIRFLOW__CORE__LOAD_EXAMPLES",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", "AIRFLOW__LOGGING__LOGGING_LEVEL",
        "AIRFLOW__OPENLINEAGE__NAMESPACE", "AIRFLOW__OPENLINEAGE__EXTRACTORS", "_AIRFLOW_PROCESS_CONTEXT",
    }, after_run["rows"]["runtime"]["env_keys"]
