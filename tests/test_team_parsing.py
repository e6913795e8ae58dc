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
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.tenant_probe import sha

ROOT = Path(__file__).resolve().parents[1]
TEAMS = ("tpalpha", "tpbeta")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching to the team's OS user needs root")

ATTACK = '''
"""Parse-time attack probe (test only)."""
import json, os, glob
from airflow.sdk import DAG

def _attack():
    from tests.tenant_probe import Loot
    rows = {{}}
    loot = Loot()
    loot.scan_env(dict(os.environ), "environ")
    pids, pid = ["self"], os.getppid()
    while pid > 1:  # every ancestor: the zygote, the relay, the dag-processor, ...
        pids.append(str(pid))
        pid = int(open(f"/proc/{{pid}}/stat").read().rsplit(")", 1)[1].split()[1])
    for pid in pids:
        path = f"/proc/{{pid}}/environ"
        try:
            loot.scan_text(open(path, "rb").read().replace(b"\\0", b"\\n").decode(errors="replace"), path)
            rows.setdefault("environ_readable_uids", []).append(os.stat(f"/proc/{{pid}}").st_uid)
        except OSError:
            pass
    for path in {state_files!r}:
        try:
            loot.scan_text(open(path).read(), path)
            rows.setdefault("state_readable", []).append(path)
        except OSError:
            pass
    rows["found"] = loot.hashes()
    rows["uid"] = os.getuid()
    rows["env_keys"] = sorted(os.environ)
    try:
        os.listdir({other_bundle!r})
        rows["list_other_bundle"] = True
    except OSError:
        rows["list_other_bundle"] = False
    try:
        with open(os.path.join({other_bundle!r}, "planted.py"), "w") as f:
            f.write("# planted")
        rows["write_other_bundle"] = True
    except OSError:
        rows["write_other_bundle"] = False
    from airflow.sdk import Variable
    try:
        rows["other_variable"] = Variable.get({other_var!r})
    except Exception as e:
        rows["other_variable"] = None
    from airflow.sdk.execution_time.comms import GetVariableKeys, GetTaskStates
    from airflow.sdk.execution_time import task_runner
    try:
        rows["variable_keys"] = list(task_runner.SUPERVISOR_COMMS.send(GetVariableKeys()).keys)
    except Exception as e:
        rows["variable_keys"] = []
    try:
        r = task_runner.SUPERVISOR_COMMS.send(GetTaskStates(dag_id={other_dag!r}))
        rows["other_task_states"] = getattr(r, "task_states", None)
    except Exception as e:
        rows["other_task_states"] = None
    return rows

with DAG("tpalpha_parse_attack", schedule=None, doc_md=json.dumps(_attack())):
    pass
'''
PLAIN_DAG = '''
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG("{dag_id}", schedule=None):
    EmptyOperator(task_id="noop")
'''


@pytest.fixture(scope="module")
def two_teams(platform_tmp):
    """Teams, OS users and bundles (in a folder the team users can reach; each team's bundle
    readable by its own user only), plus each team's variable and a run of beta's DAG."""
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.team import Team
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    from devplatform.tenants import team_user

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
            bundle = session.get(DagBundleModel, f"{team}_bundle") or DagBundleModel(name=f"{team}_bundle")
            bundle.teams = [session.get(Team, team)]
            session.merge(bundle)
    with create_session() as session:
        for team in TEAMS:
            session.query(Variable).filter(Variable.key == f"{team}_secret_var").delete()
            session.add(Variable(key=f"{team}_secret_var", val=f"{team}-only-value", team_name=team))
    (bundles["tpbeta"] / "tpbeta_dag.py").write_text(PLAIN_DAG.format(dag_id="tpbeta_dag"))
    (bundles["tpalpha"] / "tpalpha_dag.py").write_text(PLAIN_DAG.format(dag_id="tpalpha_dag"))
    state_files = [str(p) for p in (platform_tmp / "airflow.cfg", platform_tmp / "webserver_config.py") if p.exists()]
    (bundles["tpalpha"] / "tpalpha_parse_attack.py").write_text(textwrap.dedent(ATTACK.format(
        state_files=state_files, other_bundle=str(bundles["tpbeta"]), other_var="tpbeta_secret_var",
        other_dag="tpbeta_dag")))
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

    from devplatform.tenants import tenant_python

    with create_session() as session:  # a fresh start: a DAG whose version is known is not written again
        session.execute(delete(DagModel).where(DagModel.dag_id.like("tp%")))
    (two_teams["bundles"]["tpbeta"] / "planted.py").unlink(missing_ok=True)
    bundles = [{"name": f"{t}_bundle", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(two_teams["bundles"][t])}, "team_name": t} for t in TEAMS]
    home.mkdir(exist_ok=True)
    env = {**os.environ, "AIRFLOW__CORE__MULTI_TEAM": "True",
           "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
           "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "1", "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
           "AIRFLOW__PLATFORM__TEAM_PYTHON": tenant_python(ROOT / ".local", create=True),
           "AIRFLOW__PLATFORM__TEAM_HOME": str(two_teams["base"] / "home-{team}"),
           "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
           "AIRFLOW__LOGGING__DAG_PROCESSOR_CHILD_PROCESS_LOG_DIRECTORY": str(home / "logs" / "dag_processor"),
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([*command, "dag-processor", "--num-runs", "2"], env=env, cwd=home,
                          capture_output=True, text=True, timeout=300)
    with create_session() as session:
        dags = {row.dag_id: row for row in session.query(SerializedDagModel).filter(SerializedDagModel.dag_id.like("tp%"))}
    Path("/tmp/dp-" + home.name + ".out").write_text(proc.stdout + "\n=====STDERR\n" + proc.stderr)
    logs = "".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted((home / "logs").rglob("*.log")))
    zygotes = "".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in two_teams["base"].glob("home-*/zygote.log"))
    assert "tpalpha_parse_attack" in dags, proc.stdout[-3000:] + proc.stderr[-3000:] + logs + zygotes
    doc = dags["tpalpha_parse_attack"].data["dag"].get("doc_md")
    return {"rows": json.loads(doc), "dags": set(dags), "output": proc.stdout + proc.stderr}


def forbidden(platform_tmp) -> set[str]:
    env = os.environ
    values = [env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], env["AIRFLOW__API_AUTH__JWT_SECRET"]]
    return {sha(v) for v in values}


def attempts(result: dict, two_teams, platform_tmp) -> dict[str, bool]:
    rows = result["rows"]
    users = two_teams["users"]
    return {
        "runs as root or the platform's user": rows["uid"] != (users["tpalpha"].uid if users["tpalpha"] else -1),
        "platform secrets in its environment, /proc or state files": bool(forbidden(platform_tmp) & set(rows["found"])),
        "reads the environment of a platform process (/proc/<pid>/environ)": any(
            uid != (users["tpalpha"].uid if users["tpalpha"] else -1) for uid in rows.get("environ_readable_uids", [])),
        "lists another team's bundle": rows["list_other_bundle"],
        "writes into another team's bundle": rows["write_other_bundle"]
        or (two_teams["bundles"]["tpbeta"] / "planted.py").exists(),
        "reads another team's variable": rows["other_variable"] == "tpbeta-only-value",
        "lists another team's variable keys": "tpbeta_secret_var" in rows["variable_keys"],
        "reads another team's task states": rows["other_task_states"] is not None,
    }


@needs_root
def test_parse_time_code_runs_as_its_team_with_nothing_of_the_platform(two_teams, platform_tmp, tmp_path):
    airflow = [str(Path(sys.executable).parent / "airflow")]
    before = attempts(run_dag_processor(airflow, two_teams, tmp_path / "stock"), two_teams, platform_tmp)
    after_run = run_dag_processor([sys.executable, "-m", "platform_runtime.airflow_internals"], two_teams,
                                  tmp_path / "platform")
    after = attempts(after_run, two_teams, platform_tmp)
    width = max(map(len, before))
    print("\nparse-time attack from a DAG file of team tpalpha: Airflow's dag-processor | the platform's")
    for name in before:
        print(f"{name:{width}s} | {'SUCCEEDED' if before[name] else 'refused':9s} | "
              f"{'SUCCEEDED' if after[name] else 'refused'}")
    print(f"{sum(before.values())} of {len(before)} succeeded before, {sum(after.values())} after")
    assert sum(before.values()) >= 7, before  # the attack is real on stock Airflow 3.3.2
    assert not any(after.values()), (after, after_run["rows"], after_run["output"][-3000:])
    assert {"tpalpha_dag", "tpbeta_dag", "tpalpha_parse_attack"} <= after_run["dags"]
    assert set(after_run["rows"]["env_keys"]) <= {
        "PATH", "LANG", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "HOME", "AIRFLOW_HOME", "AIRFLOW_CONFIG", "_PLATFORM_TEAM",
        "AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CORE__MULTI_TEAM", "AIRFLOW__CORE__LOAD_EXAMPLES",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", "AIRFLOW__LOGGING__LOGGING_LEVEL",
        "AIRFLOW__OPENLINEAGE__NAMESPACE", "AIRFLOW__OPENLINEAGE__EXTRACTORS", "_AIRFLOW_PROCESS_CONTEXT",
    }, after_run["rows"]["env_keys"]
    assert after_run["rows"]["variable_keys"] == ["tpalpha_secret_var"]
