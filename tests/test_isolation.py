"""Team isolation through a real api-server, scheduler, dag-processor and per-team Celery workers.

The session's platform (``tests/live_platform.py``: state folder and ports of its own) runs
every domain's real bundle plus, per team, a probe DAG that resolves a connection named in its
conf and an attack probe (``tests/tenant_probe.py``) that tries, from a task, everything a
tenant must not reach. One platform start serves this module and tests/test_first_day.py,
which runs first (its name sorts first); this module's last tests stop it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from unittest import mock

import pytest
import requests

from devplatform.supervisor import LISTENER
from tests.live_platform import DEV_DATA, TEAMS, make_platform


@pytest.fixture(scope="module")
def platform(live_platform):
    """The session's platform (tests/live_platform.py), shared with tests/test_first_day.py."""
    return live_platform


@pytest.fixture(scope="module")
def tokens(platform) -> dict[str, str]:
    out = {}
    for user, pw in platform.logins().items():
        r = requests.post(f"{platform.config.api_url}/auth/token", json={"username": user, "password": pw}, timeout=10)
        r.raise_for_status()
        out[user] = r.json()["access_token"]
    return out


def api(platform, token, method, path, **kw):
    return requests.request(method, f"{platform.config.api_url}/api/v2{path}",
                            headers={"Authorization": f"Bearer {token}"}, timeout=30, **kw)


def dag_ids(platform, token) -> set[str]:
    return {d["dag_id"] for d in api(platform, token, "GET", "/dags", params={"limit": 1000}).json()["dags"]}


def test_each_team_op_sees_only_its_own_dags(platform, tokens):
    everything = dag_ids(platform, tokens["admin"])
    assert {f"{t}_conn_probe" for t in TEAMS} <= everything
    for team in TEAMS:
        own = dag_ids(platform, tokens[f"{team}_op"])
        assert f"{team}_conn_probe" in own
        assert not any(d.endswith("_conn_probe") and d != f"{team}_conn_probe" for d in own)
        assert own == dag_ids(platform, tokens[f"{team}_viewer"])


def test_every_dag_is_registered_under_its_bundle_and_team(platform, tokens):
    import psycopg2

    with psycopg2.connect(platform.pg.admin_dsn("airflow")) as conn, conn.cursor() as cur:
        cur.execute("SELECT dag_bundle_name, team_name FROM dag_bundle_team")
        assert dict(cur.fetchall()) == {t: t for t in TEAMS}
        cur.execute("SELECT dag_id, bundle_name FROM dag WHERE NOT is_stale")
        by_bundle = {}
        for dag_id, bundle in cur.fetchall():
            by_bundle.setdefault(bundle, set()).add(dag_id)
    for team in TEAMS:
        assert by_bundle[team] == dag_ids(platform, tokens[f"{team}_op"])
    assert "bullhorn_sync_optimized" in by_bundle["referral"]
    assert "looklyy_crawler_pipeline" in by_bundle["looklyy"]


def test_a_viewer_without_a_team_sees_nothing(platform, tokens):
    assert dag_ids(platform, tokens["nobody"]) == set()


def other_team_requests(other: str) -> list[tuple[str, str, dict]]:
    probe = f"{other}_conn_probe"
    return [
        ("GET", f"/dags/{probe}", {}),
        ("GET", f"/dags/{probe}/dagRuns", {}),
        ("POST", f"/dags/{probe}/dagRuns", {"json": {"logical_date": None}}),
        ("PATCH", f"/dags/{probe}", {"json": {"is_paused": False}}),
        ("GET", f"/connections/{other}_postgres", {}),
        ("GET", f"/variables/{other}_alert_emails", {}),
        ("GET", f"/pools/{other}_default", {}),
    ]


def test_isolation_matrix_other_teams_objects_are_forbidden(platform, tokens):
    tried, leaks = 0, []
    for team in TEAMS:
        token = tokens[f"{team}_op"]
        for other in TEAMS:
            for method, path, kw in other_team_requests(other):
                r = api(platform, token, method, path, **kw)
                tried += 1
                if other == team:
                    if r.status_code >= 400 and method == "GET":
                        leaks.append(f"{team}_op {method} {path} (own) -> {r.status_code}")
                elif r.status_code != 403:
                    leaks.append(f"{team}_op {method} {path} -> {r.status_code}")
    print(f"isolation matrix: {len(TEAMS)} op users x {len(TEAMS) * 7} requests = {tried} tried")
    assert leaks == []


def wait_run(platform, token, dag_id, run_id, timeout=180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = api(platform, token, "GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
        if state in ("success", "failed"):
            return state
        time.sleep(1)
    raise TimeoutError(f"{dag_id} {run_id} still running")


def test_a_task_resolves_its_own_teams_connection_and_not_another_teams(platform, tokens):
    runs = []
    for i, team in enumerate(TEAMS):
        token, dag_id = tokens[f"{team}_op"], f"{team}_conn_probe"
        assert api(platform, token, "PATCH", f"/dags/{dag_id}", json={"is_paused": False}).status_code == 200
        other = TEAMS[(i + 1) % len(TEAMS)]
        for conn_id, expected in ((f"{team}_postgres", "success"), (f"{other}_postgres", "failed")):
            r = api(platform, token, "POST", f"/dags/{dag_id}/dagRuns",
                    json={"logical_date": None, "conf": {"conn_id": conn_id}})
            assert r.status_code == 200, r.text
            runs.append((token, dag_id, r.json()["dag_run_id"], conn_id, expected))
    results = {(dag_id, conn_id): wait_run(platform, token, dag_id, run_id) for token, dag_id, run_id, conn_id, _ in runs}
    assert results == {(d, c): e for _, d, _, c, e in runs}


def trigger_attack_probes(platform, tokens) -> dict[str, dict]:
    """Run every team's attack probe at once; {team: {"rows": matrix rows, "run": ..., "states": ...}}."""
    cfg = platform.config
    started, targets = {}, {}
    for i, team in enumerate(TEAMS):
        other = TEAMS[(i + 1) % len(TEAMS)]
        token, dag_id = tokens["admin"], f"{team}_attack_probe"
        assert api(platform, token, "PATCH", f"/dags/{dag_id}", json={"is_paused": False}).status_code == 200
        targets[team] = seed_other_lineage(platform, other)
        args = {"team": team, "other": other, "state": str(cfg.state), "pg_port": cfg.pg_port, "api_url": cfg.api_url,
                "other_redis_port": cfg.redis_port(other), "other_lineage": targets[team]}
        r = api(platform, token, "POST", f"/dags/{dag_id}/dagRuns",
                json={"logical_date": None, "conf": {"args": args, "target": f"{other}_conn_probe"}})
        assert r.status_code == 200, r.text
        started[team] = (dag_id, r.json()["dag_run_id"], other)
    out = {}
    for team, (dag_id, run_id, other) in started.items():
        wait_run(platform, tokens["admin"], dag_id, run_id, timeout=400)
        tis = api(platform, tokens["admin"], "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()
        xcom = api(platform, tokens["admin"], "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/attack/xcomEntries/return_value")
        triggered = api(platform, tokens["admin"], "GET", f"/dags/{other}_conn_probe/dagRuns/cross_team__{run_id}")
        events = api(platform, tokens["admin"], "GET", "/assets/events",
                     params={"source_dag_id": dag_id, "source_run_id": run_id, "limit": 100})
        assert events.status_code == 200, events.text
        rows = xcom.json()["value"] if xcom.status_code == 200 else {}
        out[team] = {
            "states": {t["task_id"]: t["state"] for t in tis["task_instances"]},
            "rows": rows,
            "run_id": run_id,
            "other": other,
            "triggered_other": triggered.status_code == 200,
            # assets the run's tasks stored events on (the probe adds the other team's at run time)
            "outlet_events": sorted({e["name"] for e in events.json()["asset_events"]}),
            "lineage_stored": stored_lineage_runs(platform, rows.get(LINEAGE_ATTEMPT, {}).get("run_ids", [])),
            "lineage_integrity": lineage_integrity_broken(platform, tokens, team, other, targets[team]),
        }
    return out


LINEAGE_ATTEMPT = "write lineage for another team's job"
OUTLET_ATTEMPT = "emit an event on another team's asset (run-time outlet)"
LINEAGE_MARK = "postgres://isolation-lineage"  # the namespace of the datasets seed_other_lineage stores


def seed_other_lineage(platform, other: str) -> dict:
    """A run and a dataset of ``other``, stored through the lineage explorer with ``other``'s own
    ingest key (a COMPLETE run of ``<other>_conn_probe.resolve`` writing ``<other>.public.owned``,
    schema column ``owned_by_<other>``): what the attack probe's integrity attempts aim at."""
    import uuid
    from datetime import UTC, datetime

    from devplatform.config import openlineage_namespace
    from tests.tenant_probe import LINEAGE_ENDPOINT

    run_id, job = str(uuid.uuid4()), f"{other}_conn_probe.resolve"
    dataset = {"namespace": LINEAGE_MARK, "name": f"{other}.public.owned"}
    event = {
        "eventType": "COMPLETE", "eventTime": datetime.now(UTC).isoformat(), "producer": "tests/test_isolation.py",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": run_id, "facets": {}}, "job": {"namespace": openlineage_namespace(), "name": job, "facets": {}},
        "inputs": [], "outputs": [{**dataset, "facets": {"schema": {
            "_producer": "tests/test_isolation.py", "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/SchemaDatasetFacet.json",
            "fields": [{"name": f"owned_by_{other}", "type": "text"}]}}}],
    }
    headers = {"Authorization": f"Bearer {platform.config.secrets.lineage_ingest_keys[other]}"}
    deadline = time.monotonic() + 120
    while True:  # 403 until the dag-processor has recorded <other>_conn_probe (the job's owner)
        r = requests.post(f"{platform.config.api_url}/{LINEAGE_ENDPOINT}", json=event, headers=headers, timeout=30)
        if r.status_code != 403 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert r.status_code == 201 and r.json() == {"stored": True}, r.text
    return {"run_id": run_id, "job": job, "dataset": dataset}


def lineage_integrity_broken(platform, tokens, team: str, other: str, target: dict) -> list[str]:
    """What the probe's integrity attempts changed or revealed: ``other``'s run no longer its
    COMPLETED run of its job; ``other``'s view of its dataset showing the probe's forged column;
    ``team``'s view of it showing ``other``'s column or a sign that ``other`` uses it (views
    read through the explorer's API with the teams' op users, when ``tokens`` has them)."""
    from urllib.parse import quote

    import psycopg2

    broken = []
    with psycopg2.connect(platform.pg.admin_dsn("lineage")) as conn, conn.cursor() as cur:
        cur.execute("SELECT job_name, state FROM lineage_run WHERE run_id = %s::uuid", (target["run_id"],))
        if cur.fetchall() != [(target["job"], "COMPLETED")]:
            broken.append(f"{other}'s run {target['run_id']} changed")
    ds = target["dataset"]
    path = f"/lineage-explorer/api/v1/namespaces/{quote(ds['namespace'], safe='')}/datasets/{quote(ds['name'], safe='')}"
    for user, must_not_show in ((f"{other}_op", f"forged_by_{team}"), (f"{team}_op", f"owned_by_{other}")):
        if user not in tokens:
            continue
        r = requests.get(f"{platform.config.api_url}{path}", headers={"Authorization": f"Bearer {tokens[user]}"}, timeout=30)
        if r.status_code == 200 and (must_not_show in r.text or r.json().get("boundary")):
            broken.append(f"{user} sees {must_not_show} or a boundary on {ds['name']}")
        elif r.status_code != 200 and user == f"{other}_op":  # its own dataset must not vanish from its view
            broken.append(f"{user} reads its {ds['name']} -> {r.status_code}")
    return broken


def stored_lineage_runs(platform, run_ids: list[str]) -> list[tuple[str, str]]:
    """(job namespace, job name) of every run among ``run_ids`` that the lineage store holds."""
    import psycopg2

    if not run_ids:
        return []
    with psycopg2.connect(platform.pg.admin_dsn("lineage")) as conn, conn.cursor() as cur:
        cur.execute("SELECT job_namespace, job_name FROM lineage_run WHERE run_id = ANY(%s::uuid[])", (run_ids,))
        return cur.fetchall()


@pytest.fixture(scope="module")
def attack_runs(platform, tokens):
    return trigger_attack_probes(platform, tokens)


def test_every_team_runs_its_tasks_on_its_own_celery_worker(platform, attack_runs):
    from devplatform.users import team_user

    for team, run in attack_runs.items():
        assert run["states"]["attack"] == "success", (team, run["states"])
        runtime = run["rows"]["runtime"]
        assert runtime["airflow_home"] == str(platform.team_runtime(team).home)
        user = team_user(team)
        if user:
            assert runtime["user"] == user.name
        worker_log = platform.proc(f"worker-{team}").logfile.read_text()
        assert f"{team}_attack_probe" in worker_log
        others = [platform.proc(f"worker-{o}").logfile.read_text() for o in TEAMS if o != team]
        assert not any(f"{team}_attack_probe" in text for text in others)
        log = next(platform.config.task_log_dir.glob(f"dag_id={team}_attack_probe/run_id={run['run_id']}/task_id=attack/*.log"))
        if user:  # the team's own file, in the platform's group (the api-server shows it), nobody else's
            st = log.stat()
            assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (user.uid, platform.platform_user.gid, 0o660)


def test_a_worker_environment_holds_nothing_of_the_platform_or_other_teams(platform, attack_runs):
    cfg = platform.config
    secret_values = [cfg.secrets.fernet_key, cfg.secrets.airflow_db_password, str(cfg.jwt_private_key)]
    for team in TEAMS:
        cmd, env, _ = platform.team_components()[f"worker-{team}"]
        seen_by_task = attack_runs[team]["rows"]["runtime"]["env_keys"]
        for keys in (list(env), seen_by_task):
            assert not [k for k in keys if re.search("DATABASE|FERNET|JWT|SECRET|_CONN_|_VAR_", k)], (team, keys)
        assert set(seen_by_task) >= set(env) - {"PYTHONPATH"}
        values = "\n".join(env.values())
        assert [v for v in secret_values if v in values] == [], team
        assert [o for o in TEAMS if o != team and cfg.secrets.redis_passwords[o] in values] == [], team
        assert env["AIRFLOW__CELERY__BROKER_URL"] == cfg.broker_url(team, 0)
        assert env["AIRFLOW_HOME"] == str(platform.team_runtime(team).home)
        assert [b["name"] for b in json.loads(env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])] == [team]
    for name in ("api-server", "scheduler", "dag-processor", "triggerer"):
        env = platform.component_env(name)
        assert "AIRFLOW__API_AUTH__JWT_SECRET" not in env, name
        assert ("AIRFLOW__API_AUTH__JWT_PRIVATE_KEY_PATH" in env) == (name in ("api-server", "scheduler")), name
        assert any("___CELERY__BROKER_URL" in k for k in env) == (name == "scheduler"), name


def forbidden_hashes(platform, team: str) -> set[str]:
    """SHA-256 of every secret a task of ``team`` must not obtain (as tests/tenant_probe.py hashes)."""
    from tests.tenant_probe import sha

    cfg = platform.config
    s = cfg.secrets
    values = [cfg.airflow_env()["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], s.airflow_db_password, s.fernet_key,
              s.lineage_platform_key, s.lineage_db_password, cfg.lineage_dsn, s.domain_redis_admin_password,
              s.standin_admin_key]
    if s.jwt_secret:
        values.append(s.jwt_secret)
    if cfg.jwt_private_key.exists():
        values.append(cfg.jwt_private_key.read_text())
    for other in TEAMS:
        if other != team:
            values += [s.redis_passwords[other], s.flower_passwords[other], s.domain_db_passwords[other],
                       s.lineage_ingest_keys[other], s.domain_redis_passwords[other]]
            if cfg.celery:
                values += [cfg.broker_url(other, 0), cfg.broker_url(other, 1)]
    return {sha(v) for v in values}


def attack_matrix(platform, runs: dict[str, dict]) -> dict[str, dict[str, bool]]:
    """{attempt: {team: succeeded}}, secrets judged against the platform's real ones."""
    from tests.tenant_probe import ATTEMPTS, PROBE_ASSET

    matrix: dict[str, dict[str, bool]] = {a: {} for a in ATTEMPTS}
    for team, run in runs.items():
        assert run["rows"], f"{team}: the attack task returned nothing ({run['states']})"
        forbidden = forbidden_hashes(platform, team)
        for attempt, r in run["rows"].items():
            if attempt == "runtime":
                continue
            leaked = bool(forbidden & set(r.get("found", [])))
            matrix[attempt][team] = r["succeeded"] or leaked
        matrix["trigger another team's DAG"][team] = (
            run["triggered_other"] or run["states"].get("trigger_other_team") == "success"
        )
        matrix[LINEAGE_ATTEMPT][team] = (matrix[LINEAGE_ATTEMPT].get(team, False) or bool(run["lineage_stored"])
                                         or bool(run["lineage_integrity"]))
        matrix[OUTLET_ATTEMPT][team] = PROBE_ASSET.format(team=run["other"]) in run["outlet_events"]
    return matrix


def print_matrix(title: str, matrix: dict[str, dict[str, bool]]) -> int:
    width = max(len(a) for a in matrix)
    print(f"\n{title}")
    print(" " * width + " | " + " | ".join(f"{t[:12]:12s}" for t in TEAMS))
    for attempt, by_team in matrix.items():
        print(f"{attempt:{width}s} | " + " | ".join(f"{'SUCCEEDED' if by_team[t] else 'refused':12s}" for t in TEAMS))
    total = sum(v for by_team in matrix.values() for v in by_team.values())
    print(f"{total} of {len(matrix) * len(TEAMS)} attempts succeeded")
    return total


def test_attack_matrix_every_attempt_fails(platform, attack_runs):
    from tests.tenant_probe import PROBE_ASSET

    matrix = attack_matrix(platform, attack_runs)
    assert len(matrix) == 16
    total = print_matrix("attack matrix, per-team Celery workers", matrix)
    details = {t: {a: r["detail"] for a, r in run["rows"].items() if a != "runtime"} for t, run in attack_runs.items()}
    assert total == 0, json.dumps(details, indent=1)
    assert all(run["rows"][LINEAGE_ATTEMPT]["run_ids"] for run in attack_runs.values())
    from tests.tenant_probe import INTEGRITY_FACETS

    for team, run in attack_runs.items():  # each integrity attempt reached the explorer and was judged there
        assert run["rows"][LINEAGE_ATTEMPT]["integrity"] == {
            "run id of the other team's run": 409, "parent run of the other team": 403, "root run of the other team": 403,
            INTEGRITY_FACETS: 201}, (team, run["rows"][LINEAGE_ATTEMPT]["detail"])
    api_server_log = platform.proc("api-server").logfile.read_text()
    for team, run in attack_runs.items():  # refused by the api-server's guards, not by accident
        log = next(platform.config.task_log_dir.glob(f"dag_id={team}_attack_probe/run_id={run['run_id']}/task_id=trigger_other_team/*.log"))
        assert f"may not trigger or clear DAG '{run['other']}_conn_probe' of another team" in log.read_text(), team
        # the probe's own outlet got its event, the other team's asset it added did not (stripped, logged)
        assert run["outlet_events"] == [PROBE_ASSET.format(team=team)], (team, run["outlet_events"])
        assert any("Stripped asset outlets of another team" in line and f"{team}_attack_probe" in line
                   and PROBE_ASSET.format(team=run["other"]) in line for line in api_server_log.splitlines()), team


def test_a_teams_own_lineage_key_and_domain_redis_password_are_not_forbidden_to_it(platform, attack_runs):
    """Its worker posts lineage with its own ingest key (``AIRFLOW__OPENLINEAGE__TRANSPORT``) and
    its tasks read their own ``<team>_redis`` connection: neither counts as a leak. The scan of the
    worker's environment does find the own key (so it would find another team's there)."""
    from tests.tenant_probe import sha

    s = platform.config.secrets
    for team, run in attack_runs.items():
        own = {sha(s.lineage_ingest_keys[team]), sha(s.domain_redis_passwords[team])}
        assert own & forbidden_hashes(platform, team) == set(), team
        assert sha(s.lineage_ingest_keys[team]) in run["rows"]["read platform secrets from own environment"]["found"]
        assert "own key: yes" in run["rows"][LINEAGE_ATTEMPT]["detail"], run["rows"][LINEAGE_ATTEMPT]


def test_each_team_has_its_own_flower_behind_a_password(platform, attack_runs):
    """Flower runs on demand (``make flower TEAM=<team>``, issue 25): none after make start; each
    started as ``make flower`` starts it, as its team's user (the process test below)."""
    s = platform.config.secrets
    assert [t for t in TEAMS if platform.proc(f"flower-{t}").running()] == []
    for i, team in enumerate(TEAMS):
        base = platform.start_flower(team)
        assert base == platform.team_runtime(team).flower_url()
        for path in ("/metrics", "/healthcheck"):  # platform_runtime.flower guards these too
            assert requests.get(base + path, timeout=30).status_code == 401, (team, path)
            assert requests.get(base + path, auth=(team, s.flower_passwords[team]), timeout=30).status_code == 200
        url = f"{base}/api/workers"
        assert requests.get(url, timeout=30).status_code == 401
        other = TEAMS[(i + 1) % len(TEAMS)]
        assert requests.get(url, auth=(other, s.flower_passwords[other]), timeout=30).status_code == 401
        r = requests.get(url, auth=(team, s.flower_passwords[team]), params={"refresh": "true"}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json() and all(name.startswith(f"{team}@") for name in r.json()), (team, list(r.json()))


def test_task_logs_from_the_workers_are_readable_by_the_team_only(platform, tokens, attack_runs):
    for i, team in enumerate(TEAMS):
        path = f"/dags/{team}_attack_probe/dagRuns/{attack_runs[team]['run_id']}/taskInstances/attack/logs/1"
        r = api(platform, tokens[f"{team}_viewer"], "GET", path)
        assert r.status_code == 200, r.text
        content = json.dumps(r.json()["content"])
        # read from the file the team's worker wrote (no worker log server involved)
        assert str(platform.config.task_log_dir / f"dag_id={team}_attack_probe") in content, content[:2000]
        assert len(r.json()["content"]) > 3, content[:2000]
        other = TEAMS[(i + 1) % len(TEAMS)]
        assert api(platform, tokens[f"{other}_op"], "GET", path).status_code == 403


HSS_BAD_CONF = [  # (dag_id, conf, the field the refusal must name)
    ("comprehensive_analysis", {"song_path": "example.mp3"}, "song_id"),
    ("comprehensive_analysis", {"song_id": 123, "song_path": "example.mp3"}, "song_id"),
    ("comprehensive_analysis", {"song_id": "s1", "song_path": "../../etc/passwd"}, "song_path"),
    ("comprehensive_analysis", {"song_id": "s1", "song_path": "/etc/passwd"}, "song_path"),
    ("ml_training_smart_ensemble", {"dataset_path": "a.csv", "training_id": "t1", "batch_size": "400"}, "batch_size"),
    ("ml_training_smart_ensemble", {"dataset_path": "a.csv", "training_id": "t1", "batch_size": 0}, "batch_size"),
    ("ml_training_smart_ensemble", {"dataset_path": "a.csv", "training_id": "t1", "max_concurrent_requests": 500},
     "max_concurrent_requests"),
    ("ml_training_smart_ensemble", {"dataset_path": "/app/data/training_data/../x.csv", "training_id": "t1"},
     "dataset_path"),
    ("ml_training_smart_ensemble", {"training_id": "t1"}, "dataset_path"),
]


def test_hss_workflow_bad_conf_is_refused_at_the_api_naming_the_field_and_no_run_exists(platform):
    """The gateway's way in (domains/hss_workflow/gateway.py, apache-airflow-client) as hss_workflow_op."""
    from domains.hss_workflow.gateway import ConfRefused, HssAirflowClient

    client = HssAirflowClient(platform.config.api_url, "hss_workflow_op", platform.logins()["hss_workflow_op"])
    before = {d: {r.dag_run_id for r in client.runs.get_dag_runs(d).dag_runs}
              for d in ("comprehensive_analysis", "ml_training_smart_ensemble")}
    refused = []
    for dag_id, conf, field in HSS_BAD_CONF:
        with pytest.raises(ConfRefused) as info:
            client.trigger(dag_id, conf)
        refused.append((dag_id, field, info.value.status, field in str(info.value)))
    assert refused == [(d, f, 400, True) for d, _, f in HSS_BAD_CONF]
    for dag_id, runs in before.items():  # no run was created (the platform may have earlier ones)
        assert {r.dag_run_id for r in client.runs.get_dag_runs(dag_id).dag_runs} == runs


def test_hss_workflow_seed_conf_runs_to_success_through_the_gateway(platform, tokens):
    """The seed's own example conf, its path under the songs root `make start` sets (and fills
    with the sample song), triggered through the gateway client as hss_workflow_op, runs to
    success on the team's Celery worker against the five stand-ins; the result is read back."""
    import psycopg2

    from domains.hss_workflow.gateway import HssAirflowClient

    client = HssAirflowClient(platform.config.api_url, "hss_workflow_op", platform.logins()["hss_workflow_op"])
    songs = Path(platform.team_runtime("hss_workflow").local_env()["HSS_WORKFLOW_SONGS_ROOT"])
    assert (songs / "example.mp3").is_file()
    hss = {n.removeprefix("hss_workflow_").upper(): s for n, s in platform.standins.items() if n.startswith("hss_workflow_")}
    work_before = {name: sum(server.app.state.work.values()) for name, server in hss.items()}
    assert api(platform, tokens["hss_workflow_op"], "PATCH", "/dags/comprehensive_analysis",
               json={"is_paused": False}).status_code == 200
    run_id = client.trigger("comprehensive_analysis", {"song_id": "example_song_123",
                                                      "song_path": str(songs / "example.mp3")})
    state = client.wait(run_id, "comprehensive_analysis", timeout=300, poll=1)
    tis = api(platform, tokens["hss_workflow_op"], "GET", f"/dags/comprehensive_analysis/dagRuns/{run_id}/taskInstances")
    assert state == "success", {ti["task_id"]: ti["state"] for ti in tis.json()["task_instances"]}
    result = client.result("comprehensive_analysis", run_id)
    assert result["song_id"] == "example_song_123" and result["run_key"] == f"comprehensive_analysis/{run_id}"
    assert 0 < result["hit_probability"] < 1 and abs(result["tempo_bpm"] - 128) < 2 and result["rows_written"] == 1
    with psycopg2.connect(platform.pg.admin_dsn("hss_workflow")) as conn, conn.cursor() as cur:
        cur.execute("SELECT song_id, song_path FROM song_analyses WHERE run_key = %s", (result["run_key"],))
        assert cur.fetchall() == [("example_song_123", str((songs / "example.mp3").resolve()))]
    work = {name: sum(server.app.state.work.values()) - work_before[name] for name, server in hss.items()}
    assert work == {"AUDIO": 1, "CONTENT": 1, "ML_PREDICTION": 1, "INTELLIGENCE": 1, "ML_TRAINING": 0}, work
    assert run_id in {r.dag_run_id for r in client.runs.get_dag_runs("comprehensive_analysis").dag_runs}


def test_a_team_task_naming_a_global_executor_never_parses(platform, tokens):
    """Issue 21, the executor escape: in every team a DAG file whose task names the scheduler's
    LocalExecutor, and one naming the platform's global (refusing) executor, is an import error
    (Airflow: no such executor; the cluster policy: not the team's own), so neither DAG exists
    and nothing of the team can run inside the scheduler."""
    r = api(platform, tokens["admin"], "GET", "/importErrors", params={"limit": 100})
    assert r.status_code == 200, r.text
    errors = {Path(e["filename"]).name: e["stack_trace"] for e in r.json()["import_errors"]}
    dags = api(platform, tokens["admin"], "GET", "/dags", params={"dag_id_pattern": "executor_probe", "limit": 100})
    assert dags.json()["dags"] == []
    for team in TEAMS:
        local = errors.get(f"{team}_executor_probe_local.py", "")
        refusing = errors.get(f"{team}_executor_probe_global.py", "")
        assert "LocalExecutor" in local, (team, local[-500:])
        assert "AirflowClusterPolicyViolation" in refusing and "a team's tasks run only on its own executor" in refusing, (
            team, refusing[-500:])


def all_assets(platform, token) -> list[dict]:
    """Every (active) asset a user lists, page by page."""
    out: list[dict] = []
    while True:
        r = api(platform, token, "GET", "/assets", params={"limit": 100, "offset": len(out)})
        assert r.status_code == 200, r.text
        page = r.json()
        out += page["assets"]
        if not page["assets"] or len(out) >= page["total_entries"]:
            assert page["total_entries"] == len(out)
            return out


def test_each_team_lists_only_its_own_assets_and_cannot_make_events_on_others(platform, tokens):
    """Issue 22 (platform_runtime.asset_scope): an asset is the team's whose DAG referenced it
    first (schedule, inlet or outlet; ties by team name), or one ``[platform] shared_assets``
    shares with it. Worked out here from the admin's view of every asset's references and the
    DAG -> bundle -> team rows, not by the platform's code. No event is made on an own asset:
    it would schedule that team's DAGs."""
    from datetime import datetime

    import psycopg2

    with psycopg2.connect(platform.pg.admin_dsn("airflow")) as conn, conn.cursor() as cur:
        cur.execute("SELECT d.dag_id, t.team_name FROM dag d JOIN dag_bundle_team t ON t.dag_bundle_name = d.bundle_name")
        team_of = dict(cur.fetchall())
    shared = json.loads(platform.config.airflow_env().get("AIRFLOW__PLATFORM__SHARED_ASSETS") or "{}")
    everything = all_assets(platform, tokens["admin"])
    owner = {}
    for a in everything:
        refs = [(datetime.fromisoformat(ref["created_at"]), team_of[ref["dag_id"]])
                for ref in a["scheduled_dags"] + a["producing_tasks"] + a["consuming_tasks"] if ref["dag_id"] in team_of]
        owner[a["id"]] = min(refs)[1] if refs else None

    def teams_of(a: dict) -> set[str]:
        return ({owner[a["id"]]} - {None}) | set(shared.get(a["name"], [])) | set(shared.get(a["uri"], []))

    assert any(owner.values()), "no team's DAG references an asset: nothing to test"
    refused = []
    for team in TEAMS:
        listed = all_assets(platform, tokens[f"{team}_op"])
        assert {a["id"] for a in listed} == {a["id"] for a in everything if team in teams_of(a)}, team
        assert all(team in teams_of(a) for a in listed), team
        for a in [a for a in everything if team not in teams_of(a)][:3]:
            before = api(platform, tokens["admin"], "GET", "/assets/events", params={"asset_id": a["id"]}).json()
            r = api(platform, tokens[f"{team}_op"], "POST", "/assets/events", json={"asset_id": a["id"]})
            assert r.status_code == 404, (team, a["name"], r.status_code, r.text)
            after = api(platform, tokens["admin"], "GET", "/assets/events", params={"asset_id": a["id"]}).json()
            assert after["total_entries"] == before["total_entries"], (team, a["name"])
            assert api(platform, tokens[f"{team}_op"], "GET", f"/assets/{a['id']}").status_code == 404
            refused.append(f"{team}_op -> {a['name']}")
    assert all_assets(platform, tokens["nobody"]) == []
    print(f"asset scope: {len(everything)} assets; refused {len(refused)} cross-team events: {refused}")
    assert refused, "no team has another team's asset to try"


def code_matrix(platform, rows_by_team: dict[str, dict]) -> tuple[dict[str, dict[str, bool]], dict]:
    """{attempt: {team: succeeded}} of tests/tenant_probe.py ``code_attack`` rows (a team's code
    inside a platform process), secrets judged against the platform's real ones."""
    from devplatform.users import team_user
    from tests.tenant_probe import CODE_ATTEMPTS

    matrix: dict[str, dict[str, bool]] = {"run as another OS user than its team's": {}, **{a: {} for a in CODE_ATTEMPTS}}
    details = {}
    for team, rows in rows_by_team.items():
        user = team_user(team)
        matrix["run as another OS user than its team's"][team] = bool(user) and rows["runtime"]["uid"] != user.uid
        forbidden = forbidden_hashes(platform, team)
        for attempt in CODE_ATTEMPTS:
            matrix[attempt][team] = rows[attempt]["succeeded"] or bool(forbidden & set(rows[attempt].get("found", [])))
        other = TEAMS[(TEAMS.index(team) + 1) % len(TEAMS)]
        matrix["write into another team's bundle folder"][team] |= (
            platform.config.bundle_path(other) / "planted_by_another_team.py").exists()
        details[team] = {a: rows[a]["detail"] for a in CODE_ATTEMPTS}
    return matrix, details


def assert_child_environment(rows_by_team: dict[str, dict]) -> None:
    for team, rows in rows_by_team.items():
        own_settings = team.upper() + "_"  # the team's own settings (platform_runtime.team_env)
        extra = {k for k in rows["runtime"]["env_keys"] if k not in CHILD_ENV and not k.startswith(own_settings)}
        assert not extra, (team, extra)


def parse_probe_rows(platform, token: str) -> dict[str, dict]:
    rows = {}
    for team in TEAMS:
        r = api(platform, token, "GET", f"/dags/{team}_parse_probe/details")
        assert r.status_code == 200, (team, r.text)
        rows[team] = json.loads(r.json()["doc_md"])
    return rows


def trigger_probe_rows(platform, token: str) -> dict[str, dict]:
    """Run every team's trigger probe at once; the rows its trigger fired."""
    started = {}
    for team in TEAMS:
        dag_id = f"{team}_trigger_probe"
        assert api(platform, token, "PATCH", f"/dags/{dag_id}", json={"is_paused": False}).status_code == 200
        r = api(platform, token, "POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None})
        assert r.status_code == 200, r.text
        started[team] = (dag_id, r.json()["dag_run_id"])
    rows = {}
    for team, (dag_id, run_id) in started.items():
        state = wait_run(platform, token, dag_id, run_id, timeout=400)
        assert state == "success", (team, state)
        xcom = api(platform, token, "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/attack/xcomEntries/return_value")
        assert xcom.status_code == 200, (team, xcom.text)
        rows[team] = xcom.json()["value"]
    return rows


def test_a_dag_files_top_level_code_runs_as_its_team_and_holds_nothing_of_the_platform(platform, tokens):
    """Each team's parse probe (tests/live_platform.py PARSE_PROBE) attacks from its top-level code
    inside the dag-processor (platform_runtime.airflow_internals) and publishes what it got as the
    DAG's doc_md; every attempt must fail, and it must have run as the team's OS user."""
    rows = parse_probe_rows(platform, tokens["admin"])
    assert_child_environment(rows)
    matrix, details = code_matrix(platform, rows)
    total = print_matrix("parse-time attack matrix (a DAG file's top-level code)", matrix)
    assert total == 0, json.dumps(details, indent=1)


def test_trigger_code_runs_as_its_team_and_holds_nothing_of_the_platform(platform, tokens):
    """Each team's trigger probe (tests/trigger_probe.py) attacks from a trigger's ``run`` in the
    team's triggerer (platform_runtime.airflow_internals) and fires the rows as its event; the
    task returns them. Every attempt must fail, as the team's OS user."""
    rows = trigger_probe_rows(platform, tokens["admin"])
    assert_child_environment(rows)
    matrix, details = code_matrix(platform, rows)
    total = print_matrix("trigger-time attack matrix (a trigger's code)", matrix)
    assert total == 0, json.dumps(details, indent=1)


# What a team child's environment may hold (platform_runtime.team_env): nothing of the platform.
CHILD_ENV = {
    "PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "HOME", "AIRFLOW_HOME", "AIRFLOW_CONFIG",
    "_PLATFORM_TEAM", "_AIRFLOW_PROCESS_CONTEXT", "AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CORE__MULTI_TEAM",
    "AIRFLOW__CORE__LOAD_EXAMPLES", "AIRFLOW__CORE__DEFAULT_TIMEZONE", "AIRFLOW__CORE__PARALLELISM",
    "AIRFLOW__CORE__MAX_TASK_RETRY_DELAY", "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
    "AIRFLOW__LOGGING__LOGGING_LEVEL", "AIRFLOW__OPENLINEAGE__NAMESPACE", "AIRFLOW__OPENLINEAGE__EXTRACTORS",
    "AIRFLOW__OPENLINEAGE__DISABLED",
    # the per-team limits the cluster policies apply while the team's files parse
    # (platform_runtime.team_limits): every team's slots and ceilings, no secret
    "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG", "AIRFLOW__PLATFORM__TEAM_LIMITS",
    # the autogroup nice of the team's parse zygote (platform_runtime.autogroup): a number; and the
    # team's own cgroup, which the zygote joins (a path, no secret: the team may write only that
    # cgroup's cgroup.procs, never its limit); the trigger runner forked from the zygote has both
    "AIRFLOW__PLATFORM__TEAM_AUTOGROUP_NICE", "AIRFLOW__PLATFORM__TEAM_CPU_CGROUP",
}


def process_rows(platform) -> list[dict]:
    """Every process ``make start`` started (its pid files) and all their descendants, and
    PostgreSQL's: name, pid, OS user (real, effective and saved uid must agree), capabilities
    (permitted set) and no_new_privs."""
    import psutil

    def row(name: str, p: psutil.Process) -> dict:
        status = Path(f"/proc/{p.pid}/status").read_text()
        field = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        uids = set(p.uids())
        return {"name": name, "pid": p.pid, "uids": uids, "user": p.username() if len(uids) == 1 else f"mixed {uids}",
                "caps": int(field["CapPrm"], 16), "no_new_privs": field.get("NoNewPrivs", "0").strip() == "1",
                "cmd": " ".join(p.cmdline()[:6])}

    def rows(name: str, top: psutil.Process) -> list[dict]:
        out = []
        for q in (top, *top.children(recursive=True)):
            try:
                out.append(row(name, q))
            except (psutil.NoSuchProcess, psutil.ZombieProcess):  # a short-lived child (a parse) just ended
                pass
        return out

    out = []
    for name in [*platform.process_names(), LISTENER]:
        top = platform.proc(name).process()
        assert top is not None, f"{name} is not running"
        out += rows(name, top)
    # supervisord itself (its descendants are the processes above)
    out.append(row("supervisord", platform.supervisor.proc.process()))
    return out  # PostgreSQL among them: supervisord's postgres program


SWITCH_CAPS = (1 << 6) | (1 << 7)  # CAP_SETGID, CAP_SETUID
SUPERVISOR_CAPS = SWITCH_CAPS | (1 << 5) | (1 << 8)  # and CAP_KILL, CAP_SETPCAP


def test_no_platform_process_runs_as_root_and_team_code_never_as_the_platform(platform):
    """Issue 21, item 2: every process the platform started runs as its platform user, each
    team's processes (worker, Flower, parse zygote and its forks, trigger runner) as the team's
    user with no capability at all, PostgreSQL as its own user; only the dag-processor and the
    team triggerers keep a capability, CAP_SETUID/CAP_SETGID, to start those team processes, and
    supervisord those two and CAP_KILL/CAP_SETPCAP, to start and stop every process as its user."""
    from devplatform.users import team_user

    pu = platform.platform_user
    assert pu is not None, "the tests run as root: the platform has a user of its own"
    tenant = {team_user(t).uid: t for t in TEAMS}
    for t in TEAMS:  # on demand (make flower TEAM=<team>): started here, so its row is checked too
        platform.start_flower(t)
    rows = process_rows(platform)
    print(f"\n{'process':<28} {'pid':>7} {'OS user':<22} caps  nnp  command")
    for r in rows:
        print(f"{r['name']:<28} {r['pid']:>7} {r['user']:<22} {r['caps']:#04x} {r['no_new_privs']!s:<5} {r['cmd'][:60]}")
    assert [r for r in rows if 0 in r["uids"]] == []
    wrong = []
    for r in rows:
        (uid,) = r["uids"] if len(r["uids"]) == 1 else (None,)
        name = r["name"]
        if name == "postgres":
            ok = r["user"] == "embedded_postgres" and r["caps"] == 0 and r["no_new_privs"]
        elif uid in tenant:  # team code: the team's own process, under its own component only
            team = tenant[uid]
            ok = r["caps"] == 0 and r["no_new_privs"] and name in (f"worker-{team}", f"flower-{team}",
                                                                   f"triggerer-{team}", "dag-processor", "triggerers")
        elif uid == pu.uid and name == "supervisord":
            ok = r["caps"] == SUPERVISOR_CAPS and r["no_new_privs"]
        elif uid == pu.uid:
            switches = name in ("dag-processor", "triggerers") or name.startswith("triggerer-")
            ok = r["caps"] == (SWITCH_CAPS if switches else 0) and r["no_new_privs"]
        else:
            ok = False
        if not ok:
            wrong.append(r)
    assert wrong == []
    # the team processes really are there: one parse zygote per team, one trigger runner per team
    # (forked from the team's zygote: under the dag-processor; its triggerer's child relays for it)
    zygotes = {tenant[next(iter(r["uids"]))] for r in rows if r["name"] == "dag-processor" and " zygote " in r["cmd"]}
    runners = {tenant[next(iter(r["uids"]))] for r in rows if "trigger-runner" in r["cmd"] and next(iter(r["uids"])) in tenant}
    assert zygotes == set(TEAMS)
    assert runners == set(TEAMS)


def run_as_user(platform, uid: int, gid: int, script: str) -> dict:
    """``script`` (Python, prints one JSON line) in a fresh interpreter as OS user ``uid``, no capability."""
    import subprocess

    from devplatform.processes import RunAs

    argv = RunAs(uid, gid).argv([platform.python, "-c", script])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd="/",
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


TRY_OPEN = """
import json, sys
out = {}
for path in sys.argv[1:]:
    try:
        with open(path, "rb") as f:
            f.read(1)
        out[path] = "read"
    except OSError as e:
        out[path] = type(e).__name__
print(json.dumps(out))
"""

TRY_POSTGRES = """
import json, psycopg2
out = {}
for how, kw in (("socket", {"host": %(socket)r}), ("tcp", {"host": "127.0.0.1"})):
    try:
        psycopg2.connect(port=%(port)d, user="postgres", dbname="postgres", connect_timeout=5, **kw).close()
        out[how] = "superuser"
    except psycopg2.OperationalError as e:
        out[how] = str(e).strip().splitlines()[0][:160]
print(json.dumps(out))
"""


def test_platform_secrets_are_readable_by_the_platform_user_alone(platform):
    """The secrets file, the token-signing key and the UI's passwords file belong to the
    platform's user (mode 0600) and PostgreSQL's data folder to PostgreSQL's user (0700): every
    team user is refused all of them, the platform's user gets its own files and not the data."""
    from devplatform.users import team_user

    cfg = platform.config
    pu = platform.platform_user
    own = {cfg.state / "secrets.json", cfg.jwt_private_key,
           cfg.airflow_home / "simple_auth_manager_passwords.json.generated"}
    for path in own:
        st = path.stat()
        assert (st.st_uid, st.st_mode & 0o077) == (pu.uid, 0), path
    st = cfg.pgdata.stat()
    assert (st.st_mode & 0o777, cfg.pgdata.owner()) == (0o700, "embedded_postgres")
    paths = sorted(str(p) for p in [*own, cfg.pgdata / "PG_VERSION", cfg.pgdata / "pg_hba.conf"])
    as_platform = run_as_user(platform, pu.uid, pu.gid, TRY_OPEN.replace("sys.argv[1:]", repr(paths)))
    assert as_platform == {p: "read" if Path(p) in own else "PermissionError" for p in paths}
    for team in TEAMS:
        u = team_user(team)
        assert run_as_user(platform, u.uid, u.gid, TRY_OPEN.replace("sys.argv[1:]", repr(paths))) == \
            dict.fromkeys(paths, "PermissionError"), team


def test_postgres_gives_its_superuser_to_no_platform_or_team_user(platform):
    """Over the Unix socket the superuser is only for the OS user who started the server
    (``make start``) and the server's own (peer map); no other OS user even reaches the socket
    (the data folder is 0700), and over TCP the superuser has no password to log in with."""
    from devplatform.users import team_user

    script = TRY_POSTGRES % {"socket": str(platform.pg.socket_dir), "port": platform.pg.port}
    users = {"platform": platform.platform_user, **{t: team_user(t) for t in TEAMS}}
    results = {name: run_as_user(platform, u.uid, u.gid, script) for name, u in users.items()}
    print(json.dumps(results, indent=1))
    for name, r in results.items():
        assert r["socket"] != "superuser" and r["tcp"] != "superuser", (name, r)
        assert "Permission denied" in r["socket"], (name, r)
        assert "password" in r["tcp"], (name, r)
    hba = (platform.pg.datadir / "pg_hba.conf").read_text()
    rules = [line.split() for line in hba.splitlines() if line.startswith(("local", "host"))]
    assert [r for r in rules if "trust" in r] == [] and ["local", "all", "postgres", "peer", "map=platform_admin"] in rules


def test_every_component_started_cleanly(platform):
    names = [*platform.airflow_components(), *platform.team_components(), *(f"redis-{t}" for t in TEAMS)]
    names = [n for n in names if not platform.on_demand(n) or platform.proc(n).logfile.exists()]  # Flower: if started
    logs = {name: platform.proc(name).logfile.read_text() for name in names}
    assert {name: "address already in use" in text for name, text in logs.items()} == {n: False for n in logs}


def test_stop_stops_exactly_what_start_started(platform):
    import psutil

    not_asked_for = {n for n in platform.process_names() if platform.on_demand(n) and not platform.proc(n).running()}
    assert all(up for n, up in platform.status().items() if n not in not_asked_for)
    supervisord = platform.supervisor.proc.process()
    started = [supervisord, *supervisord.children(recursive=True)]  # PostgreSQL's processes among them
    names = [n for n in platform.process_names() if n not in not_asked_for]
    assert {platform.proc(n).process().pid for n in names} <= {p.pid for p in started}
    postgres = psutil.Process(platform.pg.pid())
    assert postgres.pid == platform.proc("postgres").process().pid
    bystander = psutil.Popen(["sleep", "60"])
    stopped = platform.stop()
    assert set(stopped) == {*names, LISTENER, "supervisord", "postgres"}
    assert [p.pid for p in started + [postgres] if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
    assert bystander.is_running()
    bystander.kill()


def test_the_same_probe_succeeds_on_the_old_local_executor_set_up():
    """The matrix can fail: with every task inside the scheduler (LocalExecutor, shared JWT
    secret, one OS user), the same probe reaches the platform's secrets. That set-up had no
    per-team limits either: its probe, whose attacks succeed there and so take longer, is not cut
    off by a team's parse timeout (platform_runtime.team_limits)."""
    p = make_platform("local", team_limits=False)
    p.standin_specs = lambda: []
    # Airflow's 30-s default parse timeout is not what this baseline is about: under a loaded
    # machine (CI) the probe's file, whose attacks all succeed here, took longer and was cut off
    platform_env = p.env
    p.env = lambda: {**platform_env(), "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "180"}
    try:
        with mock.patch.dict(os.environ, DEV_DATA):  # the development data of the session's platform
            p.start(wait_timeout=400)
        logins = p.logins()
        r = requests.post(f"{p.config.api_url}/auth/token", json={"username": "admin", "password": logins["admin"]}, timeout=10)
        runs = trigger_attack_probes(p, {"admin": r.json()["access_token"]})
        matrix = attack_matrix(p, runs)
        # Airflow's own dag-processor and triggerers: a team's parse-time and trigger code as root
        code = {kind: code_matrix(p, rows(p, r.json()["access_token"]))[0]
                for kind, rows in (("parse", parse_probe_rows), ("trigger", trigger_probe_rows))}
        as_root = [r for r in process_rows(p) if 0 in r["uids"]]
    finally:
        p.stop()
        shutil.rmtree(p.config.state, ignore_errors=True)
    total = print_matrix("attack matrix, old set-up (LocalExecutor in the scheduler)", matrix)
    assert total > 0
    print(f"old set-up: {len(as_root)} processes as root: {sorted({r['name'] for r in as_root})}")
    assert {"api-server", "scheduler", "dag-processor", "smtp-sink"} <= {r["name"] for r in as_root}
    for kind, m in code.items():
        assert print_matrix(f"{kind}-time attack matrix, Airflow's own {kind} processes", m) > 0
        for attempt in ("run as another OS user than its team's", "read platform secrets from /proc of other processes",
                        "connect to the metadata database", "write into another team's bundle folder"):
            assert all(m[attempt].values()), (kind, attempt)
    for attempt in ("read platform secrets from own environment", "read platform secrets from /proc of other processes",
                    "connect to the metadata database", "sign a token accepted by /api/v2",
                    LINEAGE_ATTEMPT):  # its tasks hold the platform's ingest key, accepted for every job
        assert all(matrix[attempt].values()), attempt
    for team, run in runs.items():  # the forged events are in the store, under the other team's jobs
        assert {name for _, name in run["lineage_stored"]} == {f"{run['other']}_conn_probe",
                                                              f"{run['other']}_conn_probe.resolve"}, team
