"""Team isolation through a real api-server, scheduler and dag-processor (REST API).

A platform instance of its own (state folder, ports) runs every domain's real bundle plus,
per team, a probe DAG that resolves a connection named in its conf.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import requests

from devplatform.config import PlatformConfig
from devplatform.paths import bundle_dir, domain_names
from devplatform.platform import LocalPlatform, dag_files
from devplatform.standin import free_port_range, free_ports

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


@pytest.fixture(scope="module")
def platform():
    # PostgreSQL runs as its own user, so the state folder must be reachable; pytest's
    # basetemp is not (it is 0700, and every pytest session started meanwhile resets it).
    state = Path(tempfile.mkdtemp(prefix="isolation-platform-"))
    os.chmod(state, 0o755)
    bundles = {}
    for team in TEAMS:
        folder = state / "bundles" / team
        folder.mkdir(parents=True)
        for f in dag_files(bundle_dir(team)):
            (folder / f.name).symlink_to(f)
        (folder / f"{team}_conn_probe.py").write_text(PROBE.format(team=team))
        bundles[team] = folder
    pg, api, smtp, worker_log = ports = free_ports(4)
    cfg = PlatformConfig(
        state=state, pg_port=pg, api_port=api, smtp_port=smtp, worker_log_port=worker_log,
        bundle_paths=bundles, extra_users=("nobody:viewer",), parallelism=4,
        trigger_log_port=free_port_range(len(TEAMS) + 1, exclude=ports),  # one per triggerer
    )
    p = LocalPlatform(cfg, quiet=True)
    p.standin_specs = lambda: []  # the matrix needs no stand-ins; domain tests run their own
    # A global connection in the starter's environment must not leak into the platform
    # (every team could read it): the cross-team probe below would then succeed.
    stray = {f"AIRFLOW_CONN_{t.upper()}_POSTGRES": '{"conn_type": "postgres", "host": "leak"}' for t in TEAMS}
    saved = {k: os.environ.get(k) for k in stray}
    os.environ.update(stray)
    try:
        p.start(wait_timeout=300)
        yield p
    finally:
        p.stop()
        shutil.rmtree(state, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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
    refused = []
    for dag_id, conf, field in HSS_BAD_CONF:
        with pytest.raises(ConfRefused) as info:
            client.trigger(dag_id, conf)
        refused.append((dag_id, field, info.value.status, field in str(info.value)))
    assert refused == [(d, f, 400, True) for d, _, f in HSS_BAD_CONF]
    # the seed's own example conf is accepted (paths under the default roots) and makes one run
    run_id = client.trigger("comprehensive_analysis", {"song_id": "example_song_123",
                                                      "song_path": "/app/songs/example.mp3"})
    assert client.state("comprehensive_analysis", run_id) in ("queued", "running", "failed", "success")
    for dag_id in ("comprehensive_analysis", "ml_training_smart_ensemble"):
        runs = client.runs.get_dag_runs(dag_id).dag_runs
        assert [r.dag_run_id for r in runs] == ([run_id] if dag_id == "comprehensive_analysis" else [])


def test_every_component_started_cleanly(platform):
    logs = {name: platform.proc(name).logfile.read_text() for name in platform.airflow_components()}
    assert {name: "address already in use" in text for name, text in logs.items()} == {n: False for n in logs}


def test_stop_stops_exactly_what_start_started(platform):
    import psutil

    assert all(platform.status().values())
    started = []
    for name in platform.process_names():
        p = platform.proc(name).process()
        started += [p] + p.children(recursive=True)
    postgres = psutil.Process(platform.pg.pid())
    bystander = psutil.Popen(["sleep", "60"])
    stopped = platform.stop()
    assert set(stopped) == {*platform.process_names(), "postgres"}
    assert [p.pid for p in started + [postgres] if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
    assert bystander.is_running()
    bystander.kill()
