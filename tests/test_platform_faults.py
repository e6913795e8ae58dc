"""The platform's own faults, on a real platform (``make start``'s processes, under supervisord):
one test per row of the fault matrix (issue 26), the outcome printed as a table at the end.

Each row injects its fault while a run of every team is in flight (``<team>_fault_probe``, a
test-only DAG planted in each bundle: one slow task that records each try in the team's own
database and writes its output row with an upsert keyed by the run, counting the writes) and
checks that the platform repairs itself: the process restarted by supervisord, the runs
finished (retried or failed for a stated reason, per Airflow's semantics, none left running),
no output lost or written twice, the platform's alert mailed.

Known to fail without the protection: ``PLATFORM_AUTORESTART=0`` builds the platform with
supervisord's autorestart off (``devplatform.supervisor``). ``make test-faults-unprotected`` runs
the rows whose protection is a restart (the scheduler, a triggerer, the api-server, the
dag-processor, a team's Redis, PostgreSQL) on such a platform, each marked as a strict expected
failure: a row that passes there fails the run (the worker row is one too, left out of that run
for its 11-min wait: ``-k worker_sigkilled`` runs it alone); every fallen process is started again
after its row, so that the next row has a whole platform. The lake row runs in the protected mode
only: its protection (no half-written file) has a unit test that fails without it
(domains/ecommerce_ml/tests/test_lake_full.py).

Timing: the platform's own heartbeat settings, the image's (``Dockerfile``,
``devplatform.config.heartbeat_settings``): a task rides out an api-server outage of up to
4 min and the scheduler fails a task without a heartbeat after 6 min, so the worker row waits
that long for its retry.
"""

from __future__ import annotations

import os
import subprocess
import time
from contextlib import closing
from pathlib import Path

import psutil
import psycopg2
import pytest
import requests

from devplatform.config import heartbeat_budget, heartbeat_settings
from devplatform.smtp_sink import body_text, read_mailbox
from devplatform.users import team_user
from tests.live_platform import TEAMS, running_platform
from tests.newcomer import Newcomer

# The matrix starts its own platform and takes about 20 min on two loaded cores (the worker row alone
# waits out the 6-min heartbeat timeout): it runs with
# `make test-faults` (PLATFORM_FAULT_MATRIX=1), not in `make test`, whose budget it would exceed.
# The platform's start (several minutes on a loaded 2-core machine) counts towards the first test's time.
pytestmark = [pytest.mark.timeout(1800),
              pytest.mark.skipif(os.environ.get("PLATFORM_FAULT_MATRIX") != "1",
                                 reason="the fault matrix (~30 min): make test-faults")]
HEARTBEAT_TIMEOUT = heartbeat_budget(heartbeat_settings()).heartbeat_timeout
PROBE_SECONDS = 40
RUN_TIMEOUT = 300
# PLATFORM_AUTORESTART=0: the build without supervisord's restarts (make test-faults-unprotected)
UNPROTECTED = os.environ.get("PLATFORM_AUTORESTART", "1") == "0"
# a row whose protection is a restart must fail without it
FAILS_UNPROTECTED = pytest.mark.xfail(UNPROTECTED, strict=True, reason="protection off (PLATFORM_AUTORESTART=0)")
PROTECTED_ONLY = pytest.mark.skipif(UNPROTECTED, reason="its protection is not a restart: run in the protected mode")
ROWS: list[dict] = []

FAULT_PROBE = '''"""Fault probe (test-only): one slow task; each try is recorded, the output is one row per run
(an upsert counting its writes) in the team's own database. See tests/test_platform_faults.py."""
from datetime import timedelta

from airflow.sdk import dag, task


@dag(dag_id="{team}_fault_probe", schedule=None, params={{"seconds": 40}}, tags=["{team}"], doc_md=__doc__,
     default_args={{"retries": 2, "retry_delay": timedelta(seconds=1)}})
def fault_probe():
    @task
    def slow_write(params=None, ti=None, run_id=None):
        import os
        import time

        from airflow.providers.postgres.hooks.postgres import PostgresHook

        hook = PostgresHook(postgres_conn_id="{team}_postgres")

        def sql(statement, *args):
            conn = hook.get_conn()
            try:
                with conn.cursor() as cur:
                    cur.execute(statement, args)
                conn.commit()
            finally:
                conn.close()

        sql("CREATE TABLE IF NOT EXISTS fault_probe_attempt (run_id text, try_number int, pid int, "
            "started timestamptz NOT NULL DEFAULT now(), finished timestamptz, PRIMARY KEY (run_id, try_number))")
        sql("CREATE TABLE IF NOT EXISTS fault_probe_output (run_id text PRIMARY KEY, try_number int, "
            "writes int NOT NULL DEFAULT 1)")
        key = f"{{ti.dag_id}}/{{run_id}}"
        sql("INSERT INTO fault_probe_attempt (run_id, try_number, pid) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            key, ti.try_number, os.getpid())
        time.sleep(params["seconds"])
        sql("INSERT INTO fault_probe_output (run_id, try_number) VALUES (%s, %s) ON CONFLICT (run_id) DO UPDATE "
            "SET writes = fault_probe_output.writes + 1, try_number = EXCLUDED.try_number", key, ti.try_number)
        sql("UPDATE fault_probe_attempt SET finished = now() WHERE run_id = %s AND try_number = %s", key, ti.try_number)

    slow_write()


fault_probe()
'''

DEFER_PROBE = '''"""Deferral probe (test-only): waits in its team's triggerer, then writes its output row (an
upsert counting its writes) in the team's database. See tests/test_platform_faults.py."""
from datetime import timedelta

from airflow.sdk import BaseOperator, dag


class WaitThenWrite(BaseOperator):
    def execute(self, context):
        from datetime import datetime, timezone

        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        seconds = context["params"]["seconds"]
        self.defer(trigger=DateTimeTrigger(moment=datetime.now(timezone.utc) + timedelta(seconds=seconds)),
                   method_name="resume", timeout=timedelta(seconds=seconds + 600))

    def resume(self, context, event=None):
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        ti = context["ti"]
        conn = PostgresHook(postgres_conn_id="{team}_postgres").get_conn()
        try:
            with conn.cursor() as cur:
                cur.execute("CREATE TABLE IF NOT EXISTS fault_probe_output (run_id text PRIMARY KEY, try_number int, "
                            "writes int NOT NULL DEFAULT 1)")
                cur.execute("INSERT INTO fault_probe_output (run_id, try_number) VALUES (%s, %s) ON CONFLICT (run_id) "
                            "DO UPDATE SET writes = fault_probe_output.writes + 1, try_number = EXCLUDED.try_number",
                            (f"{{ti.dag_id}}/{{ti.run_id}}", ti.try_number))
            conn.commit()
        finally:
            conn.close()


@dag(dag_id="{team}_defer_probe", schedule=None, params={{"seconds": 60}}, tags=["{team}"], doc_md=__doc__,
     default_args={{"retries": 2, "retry_delay": timedelta(seconds=1)}})
def defer_probe():
    WaitThenWrite(task_id="wait_then_write")


defer_probe()
'''


BULK_PROBE = '''"""Bulk-load probe (test-only): one task loads ``rows`` rows into the team's database with
shared.db.bulk_upsert (COPY into a temporary table, then one merge, in one transaction: the path
every domain's bulk loads take), the rows produced slowly so that the load is in flight for about
``seconds``; each try recorded first. See tests/test_platform_faults.py."""
from datetime import timedelta

from airflow.sdk import dag, task


@dag(dag_id="{team}_bulk_probe", schedule=None, params={{"rows": 100000, "seconds": 20}}, tags=["{team}"],
     doc_md=__doc__, default_args={{"retries": 2, "retry_delay": timedelta(seconds=1)}})
def bulk_probe():
    @task
    def bulk_load(params=None, ti=None, run_id=None):
        import os
        import time
        from contextlib import closing

        from airflow.providers.postgres.hooks.postgres import PostgresHook

        from shared.db import bulk_upsert

        hook = PostgresHook(postgres_conn_id="{team}_postgres")
        key = f"{{ti.dag_id}}/{{run_id}}"
        with closing(hook.get_conn()) as conn:
            with conn.cursor() as cur:
                cur.execute("CREATE TABLE IF NOT EXISTS fault_probe_attempt (run_id text, try_number int, pid int, "
                            "started timestamptz NOT NULL DEFAULT now(), finished timestamptz, "
                            "PRIMARY KEY (run_id, try_number))")
                cur.execute("CREATE TABLE IF NOT EXISTS fault_bulk (run_id text, n int, payload text, "
                            "PRIMARY KEY (run_id, n))")
                cur.execute("INSERT INTO fault_probe_attempt (run_id, try_number, pid) VALUES (%s, %s, %s) "
                            "ON CONFLICT DO NOTHING", (key, ti.try_number, os.getpid()))
            conn.commit()
            rows, pause = params["rows"], params["seconds"] / 1000

            def produce():
                for n in range(rows):
                    if n % (rows // 1000) == 0:
                        time.sleep(pause)
                    yield key, n, f"row {{n}} of {{key}}"

            result = bulk_upsert(conn, "fault_bulk", ["run_id", "n", "payload"], produce(), key=["run_id", "n"])
            with conn.cursor() as cur:
                cur.execute("UPDATE fault_probe_attempt SET finished = now() WHERE run_id = %s AND try_number = %s",
                            (key, ti.try_number))
            conn.commit()
        return {{"inserted": result.inserted, "updated": result.updated}}

    bulk_load()


bulk_probe()
'''

LAKE_PROBE = '''"""Lake probe (test-only, ecommerce_ml's lake): publishes the file named in the run's conf into the
lake with domains.ecommerce_ml.lake.publish (content-addressed name, written through a .partial file).
See tests/test_platform_faults.py."""
from datetime import timedelta

from airflow.sdk import dag, task


@dag(dag_id="{team}_lake_probe", schedule=None, params={{"source": ""}}, tags=["{team}"], doc_md=__doc__,
     default_args={{"retries": 1, "retry_delay": timedelta(seconds=1)}})
def lake_probe():
    @task
    def publish_drop(params=None):
        from domains.ecommerce_ml.lake import lake_root, publish

        dest, written = publish(params["source"], lake_root() / "fault_probe", "drop", "bin")
        return {{"dest": dest.path, "written": written}}

    publish_drop()


lake_probe()
'''


@pytest.fixture(scope="module")
def platform(request):
    """A platform of its own (not the session's: a lowered heartbeat timeout, quick alerts)."""
    with running_platform(
        "celery", max_task_retry_delay=5,
        plant={"{team}_fault_probe.py": FAULT_PROBE, "{team}_defer_probe.py": DEFER_PROBE,
               "{team}_bulk_probe.py": BULK_PROBE, "{team}_lake_probe.py": LAKE_PROBE},
        alert_check_seconds=5,
        alert_repeat_seconds=120, alert_queued_seconds=20,
    ) as p:
        yield p
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    mode = "protected" if p.config.autorestart else "PROTECTION OFF (PLATFORM_AUTORESTART=0): every row must FAIL"
    lines = ["", f"fault matrix, {mode}; task heartbeat timeout {HEARTBEAT_TIMEOUT:g} s",
             f"{'fault':<52} {'outcome':<7} {'recovered in':>12}  detail"]
    for row in ROWS:
        lines.append(f"{row['fault']:<52} {row['outcome']:<7} {row['seconds']:>10.0f} s  {row['detail']}")
    with capture.global_and_fixture_disabled():  # the table is shown whatever pytest captures
        print("\n".join(lines), flush=True)


@pytest.fixture(scope="module")
def user(platform):
    return Newcomer(platform)


def trigger_probes(user: Newcomer, seconds: int = PROBE_SECONDS, probe: str = "fault_probe",
                   teams: list[str] = TEAMS, conf: dict | None = None) -> dict[str, str]:
    """One run of every team's ``probe``; team -> run id."""
    runs = {}
    for team in teams:
        dag_id = f"{team}_{probe}"
        r = user.call(team, "PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        assert r.status_code == 200, r.text
        r = user.call(team, "POST", f"/dags/{dag_id}/dagRuns",
                      json={"logical_date": None, "conf": conf if conf is not None else {"seconds": seconds}})
        assert r.status_code == 200, r.text
        runs[team] = r.json()["dag_run_id"]
    return runs


def attempts(platform, team: str, run_id: str, probe: str = "fault_probe") -> list[tuple]:
    """(try_number, pid, finished) of each try the probe recorded in the team's database."""
    with closing(psycopg2.connect(platform.pg.admin_dsn(team))) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('fault_probe_attempt') IS NOT NULL")
        if not cur.fetchone()[0]:
            return []
        cur.execute("SELECT try_number, pid, finished IS NOT NULL FROM fault_probe_attempt WHERE run_id = %s "
                    "ORDER BY try_number", (f"{team}_{probe}/{run_id}",))
        return cur.fetchall()


def output(platform, team: str, run_id: str, probe: str = "fault_probe") -> list[tuple]:
    with closing(psycopg2.connect(platform.pg.admin_dsn(team))) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('fault_probe_output') IS NOT NULL")
        if not cur.fetchone()[0]:
            return []
        cur.execute("SELECT try_number, writes FROM fault_probe_output WHERE run_id = %s", (f"{team}_{probe}/{run_id}",))
        return cur.fetchall()


TASKS = {"fault_probe": "slow_write", "defer_probe": "wait_then_write", "bulk_probe": "bulk_load",
         "lake_probe": "publish_drop"}


def run_state(user: Newcomer, team: str, run_id: str, probe: str = "fault_probe") -> tuple[str, dict]:
    dag_id = f"{team}_{probe}"
    r = user.call(team, "GET", f"/dags/{dag_id}/dagRuns/{run_id}")
    r.raise_for_status()
    tries = user.call(team, "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{TASKS[probe]}/tries")
    tries.raise_for_status()
    return r.json()["state"], {t["try_number"]: t["state"] for t in tries.json()["task_instances"]}


def wait_until(predicate, timeout: float, step: float = 1.0):
    """``predicate()`` once it is truthy, else its last value after ``timeout``; an error
    (the api-server restarting) counts as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (requests.RequestException, OSError):
            value = None
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def supervised_pids(platform) -> dict[str, int]:
    return {name: info["pid"] for name, info in platform.supervisor.states().items()}


def restarted_since(platform, before: dict[str, int]) -> list[str]:
    """The platform processes that supervisord started again since ``before``."""
    return sorted(n for n, pid in supervised_pids(platform).items() if n in before and pid != before[n])


def start_the_fallen(platform) -> list[str]:
    """Without autorestart (the unprotected mode): start every platform process that is down,
    so that the next row has a whole platform; the names started."""
    fallen = [n for n, info in platform.supervisor.states().items() if info["statename"] != "RUNNING"]
    for name in fallen:
        platform.supervisor.start_program(name)
    whole = wait_until(lambda: platform.api_healthy() and all(
        info["statename"] == "RUNNING" for info in platform.supervisor.states().values()), 300, step=2)
    assert whole, platform.supervisor.states()
    return fallen


def alert_mails(platform, subject_part: str) -> list:
    return [m for m in read_mailbox(platform.config.mail_dir)
            if m["To"] == platform.config.alert_email and subject_part in str(m["Subject"])]


@FAILS_UNPROTECTED
def test_worker_sigkilled_mid_task_is_restarted_and_the_task_retried_once(platform, user):
    """SIGKILL of a team's Celery worker (its whole process group: the worker, its pool and the
    task's processes, as when a worker's container dies) while its task runs."""
    team = "referral"
    row = {"fault": f"SIGKILL worker-{team} mid-task", "outcome": "FAIL", "seconds": 0.0, "detail": ""}
    ROWS.append(row)
    runs = trigger_probes(user)
    # the task of the team under test has started its first try (recorded in its database)
    first = wait_until(lambda: attempts(platform, team, runs[team]), 180)
    assert first and first[0][0] == 1, first
    worker = platform.proc(f"worker-{team}")
    old_pid = worker.kill()
    t0 = time.monotonic()
    task_pid = first[0][1]
    assert wait_until(lambda: not psutil.pid_exists(task_pid), 10), "the task's process outlived its worker"

    # the run finishes: the first try failed by the scheduler (no heartbeat), the retry succeeds
    def finished():
        state, tries = run_state(user, team, runs[team])
        return (state, tries) if state in ("success", "failed") else None

    try:
        # the scheduler's heartbeat timeout, then the retry
        done = wait_until(finished, HEARTBEAT_TIMEOUT + RUN_TIMEOUT, step=3)
        state, tries = run_state(user, team, runs[team])
        info = worker.info() or {}  # (as the fault left it: before the unprotected mode starts it again)
        row["detail"] = f"run {state}, tries {tries}, worker {info.get('statename')} pid {old_pid}->{info.get('pid')}"
        assert done, f"{team}'s run did not finish within {HEARTBEAT_TIMEOUT + RUN_TIMEOUT:g} s of the kill: " \
                     f"{state}, tries {tries}, worker {info}"
    finally:
        if UNPROTECTED:  # the next row gets a whole platform
            start_the_fallen(platform)
    row["seconds"] = time.monotonic() - t0
    assert state == "success", (state, tries)
    assert tries == {1: "failed", 2: "success"} or tries == {1: "up_for_retry", 2: "success"}, tries
    # supervisord restarted it (a new process), and said so
    assert info.get("statename") == "RUNNING" and info.get("pid") != old_pid, info
    sv_log = (platform.supervisor.log_dir / "supervisord.log").read_text()
    assert f"exited: worker-{team} (terminated by SIGKILL; not expected)" in sv_log, sv_log[-2000:]
    assert worker.logfile.read_text().count(f"starting worker-{team}") >= 2
    # Airflow's reason for the first try: its heartbeat timeout, in the run's audit log
    r = user.call(team, "GET", "/eventLogs", params={"dag_id": f"{team}_fault_probe", "event": "heartbeat timeout"})
    assert r.status_code == 200 and r.json()["total_entries"] >= 1, r.text
    # each try recorded once; only the retry finished; the output written once
    assert [(n, done) for n, _, done in attempts(platform, team, runs[team])] == [(1, False), (2, True)]
    assert output(platform, team, runs[team]) == [(2, 1)]
    # the other teams' runs went on undisturbed: one try each, one write each
    for other in (t for t in TEAMS if t != team):
        o_state, o_tries = wait_until(lambda o=other: (s := run_state(user, o, runs[o]))[0] in ("success", "failed") and s,
                                      RUN_TIMEOUT, step=3) or run_state(user, other, runs[other])
        assert (o_state, o_tries) == ("success", {1: "success"}), other
        assert output(platform, other, runs[other]) == [(1, 1)], other
    # the platform's alert address was told (the local mail sink)
    mails = wait_until(lambda: alert_mails(platform, f"worker-{team} exited unexpectedly"), 30)
    assert mails and "SIGKILL" in body_text(mails[0]), [m["Subject"] for m in read_mailbox(platform.config.mail_dir)]
    row["outcome"] = "pass"
    row["detail"] += f"; alert mailed to {platform.config.alert_email}; output rows 1, writes 1"



def finished_runs(user: Newcomer, runs: dict[str, dict[str, str]]) -> dict | None:
    """{(probe, team): (state, tries)} once every run has finished, else None."""
    out = {}
    for probe, by_team in runs.items():
        for team, run_id in by_team.items():
            state, tries = run_state(user, team, run_id, probe)
            if state not in ("success", "failed"):
                return None
            out[(probe, team)] = (state, tries)
    return out


def ti_state(user: Newcomer, team: str, run_id: str, probe: str) -> str | None:
    r = user.call(team, "GET", f"/dags/{team}_{probe}/dagRuns/{run_id}/taskInstances/{TASKS[probe]}")
    return r.json().get("state") if r.status_code == 200 else None


NEW_DAG = '''"""Planted after the dag-processor's restart (test-only)."""
from airflow.sdk import dag, task


@dag(dag_id="{team}_after_restart", schedule=None, tags=["{team}"], doc_md=__doc__)
def after_restart():
    @task
    def nothing():
        return None

    nothing()


after_restart()
'''


@FAILS_UNPROTECTED
@pytest.mark.parametrize("component", ["scheduler", "triggerer-hss_workflow", "triggerers", "api-server",
                                       "dag-processor"])
def test_a_platform_component_sigkilled_is_restarted_and_every_run_finishes(platform, user, component):
    """SIGKILL of an Airflow component (its whole process tree: the triggerer's trigger runner,
    the dag-processor's parse zygotes) while a slow task and a deferred task of every team are
    in flight: supervisord restarts it; every run finishes with its first try (a deferred task
    resumes in the restarted triggerer; a task in flight while the api-server is away reports its
    state once it is back, and the scheduler never fails it meanwhile: the heartbeat timeout is
    above the task's Execution API retry budget), each output written once; the alert mailed.
    After the dag-processor's restart a new DAG file is parsed. ``triggerers`` (the team
    triggerers' parent, ``platform_runtime/triggerer_fork.py``): the parent alone is killed, not
    its tree; its triggerers die with it (``PR_SET_PDEATHSIG``), so their relays (the
    ``triggerer-<team>`` programs) exit and supervisord restarts every one of them, each asking the
    restarted parent for a new triggerer."""
    row = {"fault": f"SIGKILL {component}", "outcome": "FAIL", "seconds": 0.0, "detail": ""}
    ROWS.append(row)
    runs = {"fault_probe": trigger_probes(user, seconds=30), "defer_probe": trigger_probes(user, 45, "defer_probe")}
    # every slow task has started and every deferred task waits in its team's triggerer
    started = wait_until(lambda: all(attempts(platform, t, r) for t, r in runs["fault_probe"].items())
                         and all(ti_state(user, t, r, "defer_probe") == "deferred" for t, r in runs["defer_probe"].items()),
                         180, step=2)
    assert started, "the probes did not all start"
    proc = platform.proc(component)
    relays, forked, relay_pids = {}, {}, {}  # the team programs (relays), their triggerers, before the kill
    if component == "triggerers":
        relays = {n: platform.proc(n) for n in supervised_pids(platform) if n.startswith("triggerer-")}
        forked = {n: platform.triggerer_process(n.removeprefix("triggerer-")) for n in relays}
        assert all(forked.values()) and all(t.ppid() == proc.process().pid for t in forked.values()), forked
        relay_pids = {n: r.process().pid for n, r in relays.items()}
    old_pid = proc.kill(tree=component != "triggerers")  # the parent alone: its forks must die by themselves
    t0 = time.monotonic()
    if component == "dag-processor":
        for team in TEAMS:  # a DAG file changed while it was down
            path = platform.config.bundle_path(team) / f"{team}_after_restart.py"
            path.write_text(NEW_DAG.format(team=team))
            os.chmod(path, 0o644)
    try:
        if component == "triggerers":
            died = wait_until(lambda: all(not t.is_running() or t.status() == psutil.STATUS_ZOMBIE
                                          for t in forked.values()), 30, step=0.5)
            assert died, "a team triggerer outlived its parent"
            respawned = wait_until(lambda: all((r.info() or {}).get("statename") == "RUNNING"
                                               and (r.info() or {}).get("pid") != relay_pids[n] for n, r in relays.items()),
                                   120, step=1)
            assert respawned, {n: r.info() for n, r in relays.items()}
        outage = ""
        if component == "api-server" and not UNPROTECTED:  # how long the tasks in flight could not reach it
            back = wait_until(platform.api_healthy, RUN_TIMEOUT)
            outage = f", back (healthy) {time.monotonic() - t0:.0f} s after the kill" if back else ", not back"
        done = wait_until(lambda: finished_runs(user, runs), RUN_TIMEOUT, step=3)
        info = proc.info() or {}
        row["detail"] = f"{component} {info.get('statename')} pid {old_pid}->{info.get('pid')}{outage}"
        assert done, f"runs not finished within {RUN_TIMEOUT} s of the kill; {component}: {info}"
        if component == "dag-processor":
            parsed = wait_until(lambda: all(user.call(t, "GET", f"/dags/{t}_after_restart").status_code == 200
                                            for t in TEAMS), 180, step=3)
            assert parsed, "a DAG file added while the dag-processor was down was not parsed after its restart"
    finally:
        if UNPROTECTED:  # the next row gets a whole platform
            start_the_fallen(platform)
    row["seconds"] = time.monotonic() - t0
    # every run succeeded on its first try (none failed by the scheduler's heartbeat timeout
    # while the api-server was away), each output written once
    bad = {k: v for k, v in done.items() if v != ("success", {1: "success"})}
    assert not bad, bad
    for probe, team in done:
        assert output(platform, team, runs[probe][team], probe) == [(1, 1)], (probe, team)
    info = proc.info() or {}
    assert info.get("statename") == "RUNNING" and info.get("pid") != old_pid, info
    sv_log = (platform.supervisor.log_dir / "supervisord.log").read_text()
    assert f"exited: {component} (terminated by SIGKILL; not expected)" in sv_log
    if component == "triggerers":  # every team's triggerer again a fork of the restarted parent
        again = {n: platform.triggerer_process(n.removeprefix("triggerer-")) for n in relays}
        assert all(t and t.ppid() == info["pid"] for t in again.values()), again
        row["detail"] += f"; {len(relays)} team triggerers died with it, their relays restarted"
    mails = wait_until(lambda: alert_mails(platform, f"{component} exited unexpectedly"), 30)
    assert mails, [m["Subject"] for m in read_mailbox(platform.config.mail_dir)]
    row["outcome"] = "pass"
    row["detail"] += f"; {len(done)} runs of 5 teams succeeded on their first try, one write each; alert mailed"


@PROTECTED_ONLY
def test_a_worker_gone_and_a_queue_backing_up_are_alerted(platform, user):
    """A team's worker stopped (no crash: only the periodic check sees it) while its task waits:
    the platform's address gets "worker not running" and "queue backing up" mails; once the
    worker is back the run finishes."""
    team = "aurora"
    row = {"fault": f"worker-{team} stopped, its queue backs up", "outcome": "FAIL", "seconds": 0.0, "detail": ""}
    ROWS.append(row)
    platform.supervisor.stop_program(f"worker-{team}")
    t0 = time.monotonic()
    try:
        runs = trigger_probes(user, seconds=1, teams=[team])
        gone = wait_until(lambda: alert_mails(platform, f"team {team}: its Celery worker is not running"), 90, step=2)
        backlog = wait_until(lambda: alert_mails(platform, f"team {team}: its queue is backing up"), 120, step=2)
        row["detail"] = f"worker-gone mail {bool(gone)}, backlog mail {bool(backlog)}"
        assert gone and backlog, [m["Subject"] for m in read_mailbox(platform.config.mail_dir)]
        assert "task instance(s) queued" in body_text(backlog[0])
    finally:
        platform.supervisor.start_program(f"worker-{team}")
    done = wait_until(lambda: finished_runs(user, {"fault_probe": runs}), RUN_TIMEOUT, step=3)
    assert done and done[("fault_probe", team)][0] == "success", done
    row["seconds"] = time.monotonic() - t0
    row["outcome"] = "pass"


@FAILS_UNPROTECTED
def test_a_teams_redis_broker_restarted_with_tasks_queued_and_running_loses_none(platform, user):
    """SIGKILL of a team's Redis broker (the Celery queue between the scheduler and the team's
    worker) while two of its tasks run and more wait in its queue, with a run of every team in
    flight: supervisord restarts it, and the broker, durable (append-only file, fsync'd on every
    write), still holds the queued tasks; the worker reconnects; every run succeeds on its
    first try, each output written once."""
    team = "looklyy"
    row = {"fault": f"SIGKILL redis-{team} (broker), tasks queued + running", "outcome": "FAIL", "seconds": 0.0,
           "detail": ""}
    ROWS.append(row)
    runs = trigger_probes(user, seconds=30)
    extra = [trigger_probes(user, seconds=20, teams=[team])[team] for _ in range(4)]
    mine = [runs[team], *extra]

    def queued_and_running():
        states = [ti_state(user, team, r, "fault_probe") for r in mine]
        return states if states.count("running") >= 2 and states.count("queued") >= 2 else None

    states = wait_until(queued_and_running, 180, step=1)
    assert states, [ti_state(user, team, r, "fault_probe") for r in mine]
    broker = platform.proc(f"redis-{team}")
    old_pid = broker.kill()
    t0 = time.monotonic()
    all_runs = {"fault_probe": dict(runs)}
    try:
        done = wait_until(lambda: finished_runs(user, all_runs) and all(
            run_state(user, team, r)[0] in ("success", "failed") for r in extra), RUN_TIMEOUT, step=3)
        info = broker.info() or {}
        row["detail"] = f"{team}: {states.count('running')} running, {states.count('queued')} queued at the kill; " \
                        f"redis-{team} {info.get('statename')} pid {old_pid}->{info.get('pid')}"
        assert done, {r: run_state(user, team, r) for r in mine}
    finally:
        if UNPROTECTED:  # the next row gets a whole platform
            start_the_fallen(platform)
    row["seconds"] = time.monotonic() - t0
    for other, run_id in runs.items():
        assert run_state(user, other, run_id) == ("success", {1: "success"}), other
        assert output(platform, other, run_id) == [(1, 1)], other
    for run_id in extra:
        assert run_state(user, team, run_id) == ("success", {1: "success"}), run_id
        assert output(platform, team, run_id) == [(1, 1)], run_id
    assert info.get("statename") == "RUNNING" and info.get("pid") != old_pid, info
    mails = wait_until(lambda: alert_mails(platform, f"redis-{team} exited unexpectedly"), 30)
    assert mails, [m["Subject"] for m in read_mailbox(platform.config.mail_dir)]
    row["outcome"] = "pass"
    row["detail"] += f"; {len(runs) + len(extra)} runs succeeded on their first try, one write each; alert mailed"


def bulk_rows(platform, team: str, run_id: str) -> int:
    with closing(psycopg2.connect(platform.pg.admin_dsn(team))) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('fault_bulk') IS NOT NULL")
        if not cur.fetchone()[0]:
            return 0
        cur.execute("SELECT count(*) FROM fault_bulk WHERE run_id = %s", (f"{team}_bulk_probe/{run_id}",))
        return cur.fetchone()[0]


def database_accepts(platform) -> bool:
    try:
        psycopg2.connect(platform.pg.admin_dsn(), connect_timeout=3).close()
        return True
    except psycopg2.OperationalError:
        return False


@FAILS_UNPROTECTED
def test_postgresql_killed_mid_bulk_load_and_metadata_writes_is_restarted_and_loses_and_duplicates_nothing(
        platform, user):
    """PostgreSQL (the metadata database and every domain's database: one server, supervisord's
    ``postgres`` program) crashed: SIGKILL of the server and every backend (every connection cut,
    every open transaction lost) in the middle of a domain's bulk load and while every team's
    task heartbeats (metadata writes through the api-server) and the scheduler writes.
    supervisord starts it again and it recovers from its write-ahead log; a component that exits
    on the lost connection is restarted too; the bulk load's try fails with the server's reason
    and its retry loads every row once (one transaction: nothing half-written stays); the other
    runs succeed, each output written once; no run stuck; the alert mailed. Without autorestart
    the server stays down and no run finishes."""
    team, rows = "aurora", 100_000
    row = {"fault": "SIGKILL PostgreSQL mid bulk load + metadata writes", "outcome": "FAIL", "seconds": 0.0,
           "detail": ""}
    ROWS.append(row)
    runs = {"fault_probe": trigger_probes(user, seconds=60)}
    started = wait_until(lambda: all(attempts(platform, t, r) for t, r in runs["fault_probe"].items()), 180, step=1)
    assert started, "the probes did not all start"
    # then the bulk load, so that it is surely in flight at the fault (however long the others took to start)
    bulk = trigger_probes(user, probe="bulk_probe", teams=[team], conf={"rows": rows, "seconds": 45})[team]
    assert wait_until(lambda: attempts(platform, team, bulk, "bulk_probe"), 120, step=1), "the bulk load did not start"
    time.sleep(5)  # the COPY of the bulk load is under way
    assert attempts(platform, team, bulk, "bulk_probe")[0][2] is False  # not finished
    assert bulk_rows(platform, team, bulk) == 0  # nothing visible before the load's commit
    before = supervised_pids(platform)
    server = platform.proc("postgres")
    old_pid = server.kill()
    t0 = time.monotonic()
    back = wait_until(lambda: (p := server.process()) is not None and p.pid != old_pid and database_accepts(platform),
                      RUN_TIMEOUT, step=0.5)
    outage = time.monotonic() - t0
    runs["bulk_probe"] = {team: bulk}
    try:
        done = back and wait_until(lambda: finished_runs(user, runs), RUN_TIMEOUT, step=3)
        info = server.info() or {}
        row["detail"] = (f"postgres {info.get('statename')} pid {old_pid}->{info.get('pid')}, "
                         + (f"accepting connections {outage:.0f} s after the kill" if back else
                            f"not accepting connections {outage:.0f} s after the kill"))
        assert back, f"PostgreSQL not back within {RUN_TIMEOUT} s of the kill: {info}"
        assert done, f"runs not finished within {RUN_TIMEOUT} s of PostgreSQL's return"
    finally:
        if UNPROTECTED:  # the next row gets a whole platform
            start_the_fallen(platform)
    restarted = [n for n in restarted_since(platform, before) if n != "postgres"]
    row["detail"] += f"; other processes restarted by supervisord: {', '.join(restarted) or 'none'}"
    row["seconds"] = time.monotonic() - t0
    state, tries = done[("bulk_probe", team)]
    assert state == "success", (state, tries)
    assert tries[max(tries)] == "success" and all(s == "failed" for n, s in tries.items() if n < max(tries)), tries
    assert bulk_rows(platform, team, bulk) == rows
    for other, run_id in runs["fault_probe"].items():
        assert done[("fault_probe", other)] == ("success", {1: "success"}), other
        assert output(platform, other, run_id) == [(1, 1)], other
    sv_log = (platform.supervisor.log_dir / "supervisord.log").read_text()
    assert "exited: postgres (terminated by SIGKILL; not expected)" in sv_log
    assert "automatic recovery in progress" in server.logfile.read_text()
    mails = wait_until(lambda: alert_mails(platform, "postgres exited unexpectedly"), 60)
    assert mails, [m["Subject"] for m in read_mailbox(platform.config.mail_dir)]
    row["outcome"] = "pass"
    row["detail"] += (f"; crash recovery; bulk load tries {tries}, {rows} rows once; {len(runs['fault_probe'])} other "
                      "runs succeeded on their first try, one write each; alert mailed")


def file_size_limit(pid: int) -> tuple[str, str]:
    """(soft, hard) RLIMIT_FSIZE of a process, as /proc shows it."""
    line = next(x for x in Path(f"/proc/{pid}/limits").read_text().splitlines() if x.startswith("Max file size"))
    return tuple(line.split()[3:5])


def set_file_size_limit(owner, pid: int, limit: int | None) -> None:
    """util-linux's ``prlimit`` on ``pid`` (``limit`` None: unlimited), run as the process's own
    user: changing another process's limits takes that user or CAP_SYS_RESOURCE, which root in
    this container lacks."""
    from platform_runtime.team_env import setpriv_argv

    argv = ["prlimit", f"--pid={pid}", f"--fsize={limit or 'unlimited'}:unlimited"]
    done = subprocess.run(setpriv_argv(owner.uid, owner.gid, argv) if owner else argv, capture_output=True, text=True)
    if done.returncode and psutil.pid_exists(pid):  # (a process that ended meanwhile needs no limit)
        raise RuntimeError(f"prlimit {pid}: {done.stderr}")


@PROTECTED_ONLY
def test_the_lake_full_fails_the_publish_clearly_with_nothing_half_written_and_the_rerun_repairs(platform, user):
    """ecommerce_ml's lake "full" while runs of every team are in flight: every process of the
    team's worker gets a file-size limit (RLIMIT_FSIZE, 1 MiB), so the kernel refuses the lake
    write that passes it (EFBIG, where a full disk gives ENOSPC; no root needed). The publish
    fails with the kernel's reason in the task's log, leaving neither the file nor a .partial;
    the limit lifted, a rerun (the failed task cleared) writes the file whole. The other runs,
    the team's own included, go on."""
    import errno
    import hashlib

    team = "ecommerce_ml"
    row = {"fault": f"{team}'s lake full (EFBIG) mid-write", "outcome": "FAIL", "seconds": 0.0, "detail": ""}
    ROWS.append(row)
    data = platform.config.tenant_dir(team) / "data"  # the team's own folder
    data.mkdir(parents=True, exist_ok=True)
    source = data / "fault-drop.bin"
    source.write_bytes(os.urandom(3 << 20))
    owner = team_user(team)
    for path in (data, source):
        if owner:
            os.chown(path, owner.uid, owner.gid)
    os.chmod(source, 0o640)
    lake = platform.config.tenant_dir(team) / "lake" / "fault_probe"
    worker = platform.proc(f"worker-{team}").process()
    tree = [worker, *worker.children()]  # the worker and its pool: every task process forks from these
    assert all(file_size_limit(q.pid) == ("unlimited", "unlimited") for q in tree)
    for q in tree:
        set_file_size_limit(owner, q.pid, 1 << 20)
    assert all(file_size_limit(q.pid) == (str(1 << 20), "unlimited") for q in tree)
    t0 = time.monotonic()
    try:
        runs = {"fault_probe": trigger_probes(user, seconds=20),
                "lake_probe": trigger_probes(user, probe="lake_probe", teams=[team], conf={"source": str(source)})}
        done = wait_until(lambda: finished_runs(user, runs), RUN_TIMEOUT, step=3)
        assert done, "runs not finished"
    finally:  # every process of the worker now: its autoscaled pool forked more while the limit held
        for q in {*tree, worker, *worker.children(recursive=True)}:
            if q.is_running():
                set_file_size_limit(owner, q.pid, None)
    run_id = runs["lake_probe"][team]
    assert done[("lake_probe", team)] == ("failed", {1: "failed", 2: "failed"}), done[("lake_probe", team)]
    logs = sorted(platform.config.task_log_dir.glob(f"dag_id={team}_lake_probe/run_id={run_id}/task_id=publish_drop/*.log"))
    assert len(logs) == 2, logs
    for log in logs:
        assert f"[Errno {errno.EFBIG}] File too large" in log.read_text(errors="replace"), log
    assert not lake.exists() or list(lake.iterdir()) == [], list(lake.iterdir())
    for other, other_run in runs["fault_probe"].items():
        assert done[("fault_probe", other)] == ("success", {1: "success"}), other
        assert output(platform, other, other_run) == [(1, 1)], other
    # the rerun: the failed task cleared, the limit gone
    r = user.call(team, "POST", f"/dags/{team}_lake_probe/clearTaskInstances",
                  json={"dry_run": False, "dag_run_id": run_id, "only_failed": True})
    assert r.status_code == 200, r.text
    rerun = wait_until(lambda: (s := run_state(user, team, run_id, "lake_probe"))[0] in ("success", "failed") and s,
                       RUN_TIMEOUT, step=3)
    assert rerun and rerun[0] == "success", rerun
    row["seconds"] = time.monotonic() - t0
    files = sorted(p.name for p in lake.iterdir())
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert files == [f"drop-{digest[:16]}.bin"], files
    assert (lake / files[0]).read_bytes() == source.read_bytes()
    row["outcome"] = "pass"
    row["detail"] = (f"both tries failed, log: '[Errno {errno.EFBIG}] File too large'; lake: no file, no .partial; "
                     f"the other {len(runs['fault_probe'])} runs succeeded; rerun (cleared) wrote it whole: {files[0]}")
