"""The local platform's process manager (devplatform/supervisor.py) and its alert listener
(devplatform/alerts.py) on a real supervisord with a stand-in program, without the platform:
a killed program is restarted (or, with autorestart off, is not), logged and alerted; one that
keeps dying is backed off, given up on and alerted; each program weighs one CPU share (its own
CFS autogroup), however many processes it runs."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from devplatform.paths import ROOT
from devplatform.smtp_sink import MailSink, body_text
from devplatform.supervisor import LISTENER, START_SECONDS, SupervisedProc, Supervisor
from platform_runtime import autogroup

ALERT_TO = "platform-alerts@example.test"
ENV = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8"}


def wait_until(predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while not (value := predicate()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


@pytest.fixture
def supervised(tmp_path, request):
    """A supervisord with the alert listener mailing a sink; ``(supervisor, sink)``."""
    autorestart = getattr(request, "param", True)
    sink = MailSink(tmp_path / "mail").start()
    (tmp_path / "run").mkdir()
    (tmp_path / "logs").mkdir()
    sv = Supervisor(tmp_path / "run", tmp_path / "logs", autorestart=autorestart, start_retries=2)
    sv.write_config(["sleeper", "crasher", "flood", "victim"], sys.executable)
    sv.start(sys.executable, ENV, None)
    alerts = {"to": ALERT_TO, "smtp_port": sink.port, "check_seconds": 3600, "repeat_seconds": 0,
              "supervisor_log": str(sv.log_dir / "supervisord.log")}
    sv.write_spec(LISTENER, [sys.executable, "-m", "devplatform.alerts"], {**ENV, "PLATFORM_ALERTS": json.dumps(alerts)},
                  ROOT, None, listener=True)
    sv.start_program(LISTENER)
    sv.write_spec("sleeper", ["/bin/sleep", "600"], ENV, tmp_path, None)
    sv.write_spec("crasher", ["/bin/sh", "-c", "echo starting; exit 3"], ENV, tmp_path, None)
    try:
        yield sv, sink
    finally:
        sv.stop()
        sink.stop()


def subjects(sink) -> list[str]:
    return [str(m["Subject"]) for m in sink.messages()]


def test_a_killed_program_is_restarted_logged_and_alerted(supervised):
    sv, sink = supervised
    sv.start_program("sleeper")
    sleeper = SupervisedProc(sv, "sleeper")
    assert wait_until(lambda: (sleeper.info() or {}).get("statename") == "RUNNING", START_SECONDS + 10)
    old = sleeper.kill(signal.SIGKILL)
    assert wait_until(lambda: (p := sleeper.process()) is not None and p.pid != old, 10), sleeper.info()
    log = (sv.log_dir / "supervisord.log").read_text()
    assert "exited: sleeper (terminated by SIGKILL; not expected)" in log
    # the launcher's line, on each start
    assert wait_until(lambda: sleeper.logfile.read_text().count("starting sleeper") == 2, 10)
    mails = wait_until(lambda: [m for m in sink.messages() if "sleeper exited unexpectedly" in str(m["Subject"])], 15)
    assert mails, subjects(sink)
    assert mails[0]["To"] == ALERT_TO and "SIGKILL" in body_text(mails[0])


@pytest.mark.parametrize("supervised", [False], indirect=True)
def test_without_autorestart_a_killed_program_stays_down_but_is_alerted(supervised):
    sv, sink = supervised
    sv.start_program("sleeper")
    sleeper = SupervisedProc(sv, "sleeper")
    assert wait_until(lambda: (sleeper.info() or {}).get("statename") == "RUNNING", START_SECONDS + 10)
    sleeper.kill(signal.SIGKILL)
    assert wait_until(lambda: (sleeper.info() or {}).get("statename") == "EXITED", 10)
    time.sleep(2)
    assert sleeper.process() is None
    assert wait_until(lambda: any("sleeper exited unexpectedly" in s for s in subjects(sink)), 15), subjects(sink)


def test_a_program_that_keeps_dying_is_backed_off_then_given_up_and_alerted(supervised):
    sv, sink = supervised
    sv.start_program("crasher")
    crasher = SupervisedProc(sv, "crasher")
    assert wait_until(lambda: (crasher.info() or {}).get("statename") == "FATAL", 30), crasher.info()
    log = (sv.log_dir / "supervisord.log").read_text()
    assert log.count("exited: crasher (exit status 3; not expected)") == 3  # the first try and 2 retries
    assert "gave up: crasher entered FATAL state, too many start retries too quickly" in log
    mails = wait_until(lambda: [m for m in sink.messages() if "crasher could not be restarted" in str(m["Subject"])], 15)
    assert mails, subjects(sink)
    assert "gave up: crasher" in body_text(mails[0])


def test_spec_files_hold_the_environment_not_the_configuration(supervised):
    """Secrets (the processes' environment) are in 0600 spec files, never in supervisord's
    configuration or on a command line."""
    sv, _ = supervised
    sv.write_spec("sleeper", ["/bin/sleep", "600"], {**ENV, "A_SECRET": "s3cret"}, Path("/"), None)
    assert "s3cret" not in sv.conf.read_text()
    assert sv.spec_path("sleeper").stat().st_mode & 0o077 == 0
    assert sv.conf.stat().st_mode & 0o077 == 0


@pytest.fixture
def supervised_postgres(tmp_path, request):
    """A real PostgreSQL (the embedded server) as supervisord's ``postgres`` program, the way
    ``make start`` runs it (``devplatform.platform.LocalPlatform.start_postgres``);
    ``(supervisor, pg)``."""
    import pwd

    from devplatform.pg import PgServer
    from devplatform.ports import free_port
    from devplatform.processes import RunAs

    os.chmod(tmp_path, 0o755)  # the server's OS user reaches its data folder
    pg = PgServer(tmp_path / "pgdata", free_port())
    pg.prepare()
    for name in ("run", "logs"):
        (tmp_path / name).mkdir()
    sv = Supervisor(tmp_path / "run", tmp_path / "logs", autorestart=getattr(request, "param", True))
    sv.write_config(["postgres"], sys.executable)
    sv.start(sys.executable, ENV, None)
    user = pg.run_as().get("user")
    owner = pwd.getpwnam(user) if user else None
    sv.write_spec("postgres", pg.server_argv(), ENV, pg.datadir, RunAs(owner.pw_uid, owner.pw_gid) if owner else None)
    sv.start_program("postgres")
    try:
        pg.wait_ready(60)
        yield sv, pg
    finally:
        sv.stop()


def accepts(pg) -> bool:
    import psycopg2

    try:
        psycopg2.connect(pg.admin_dsn(), connect_timeout=2).close()
        return True
    except psycopg2.OperationalError:
        return False


@pytest.mark.parametrize("supervised_postgres", [True, False], indirect=True, ids=["autorestart", "no-autorestart"])
def test_postgres_killed_is_restarted_recovers_its_committed_rows_and_is_stopped_fast(supervised_postgres):
    """SIGKILL of the server and every backend (a crash): supervisord starts it again, it
    recovers from its write-ahead log (the committed row there, the open transaction's row
    not); without autorestart it stays down. ``make stop`` stops it with SIGINT, its fast
    shutdown (SIGTERM, smart, would wait for every session to end)."""
    from contextlib import closing

    import psycopg2

    from devplatform.supervisor import STOPPED_LAST

    sv, pg = supervised_postgres
    conf = sv.conf.read_text()
    assert "[group:platform]\nprograms=\n" in conf and "stopsignal=INT" in conf  # a group of its own
    with closing(psycopg2.connect(pg.admin_dsn())) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE crash (n int)")
        cur.execute("INSERT INTO crash VALUES (1)")
        conn.commit()
    open_tx = psycopg2.connect(pg.admin_dsn())
    with open_tx.cursor() as cur:
        cur.execute("INSERT INTO crash VALUES (2)")  # not committed at the crash
    server = SupervisedProc(sv, "postgres")
    assert wait_until(lambda: (server.info() or {}).get("statename") == "RUNNING", START_SECONDS + 10)
    backends = server.process().children()
    assert backends  # the server's own processes (checkpointer, walwriter, ...) and the sessions
    old = server.kill(signal.SIGKILL)
    open_tx.close()
    log = server.logfile
    if not sv.autorestart:
        assert wait_until(lambda: (server.info() or {}).get("statename") == "EXITED", 10), server.info()
        time.sleep(3)
        assert not accepts(pg) and server.process() is None
        return
    assert wait_until(lambda: (p := server.process()) is not None and p.pid != old and accepts(pg), 60), server.info()
    assert "exited: postgres (terminated by SIGKILL; not expected)" in (sv.log_dir / "supervisord.log").read_text()
    assert "automatic recovery in progress" in log.read_text()
    with closing(psycopg2.connect(pg.admin_dsn())) as conn, conn.cursor() as cur:
        cur.execute("SELECT n FROM crash ORDER BY n")
        assert cur.fetchall() == [(1,)]
    assert STOPPED_LAST["postgres"]["stopsignal"] == "INT"
    sv.stop_program("postgres")
    assert "received fast shutdown request" in log.read_text()
    assert pg.pid() is None


# N processes spinning on one CPU (pinned: the shares compare the same way on any number of cores)
SPIN = """import os, sys
os.sched_setaffinity(0, {int(sys.argv[1])})
for _ in range(int(sys.argv[2]) - 1):
    if os.fork() == 0:
        break
while True:
    pass
"""


def cpu_seconds(proc: SupervisedProc) -> tuple[float, list[int]]:
    """CPU seconds used so far by the program's process and its children, and their pids."""
    import psutil

    p = proc.process()
    total, pids = 0.0, []
    for q in [p, *p.children(recursive=True)]:
        try:
            t = q.cpu_times()
            total += t.user + t.system
            pids.append(q.pid)
        except psutil.NoSuchProcess:
            pass
    return total, pids


@pytest.mark.skipif(not autogroup.enabled(), reason="kernel without CFS autogroups")
@pytest.mark.parametrize("groups", [True, pytest.param(False, marks=pytest.mark.xfail(
    strict=True, reason="protection off: every program in supervisord's one autogroup"))])
def test_a_flooding_program_weighs_one_cpu_share_in_an_autogroup_of_its_own(supervised, groups):
    """A program of 6 spinning processes and one of 1, on the same CPU: each in its own session
    (autogroup) at the nice asked, its children with it, the single process gets about half the
    CPU (one share against one), not a seventh; supervisord still stops each whole group."""
    sv, _ = supervised
    cpu = min(os.sched_getaffinity(0))
    nice = autogroup.nice_for(3) if groups else None
    for name, n in (("flood", 6), ("victim", 1)):
        sv.write_spec(name, [sys.executable, "-c", SPIN, str(cpu), str(n)], ENV, Path("/"), None, autogroup_nice=nice)
        sv.start_program(name)
    flood, victim = SupervisedProc(sv, "flood"), SupervisedProc(sv, "victim")
    assert wait_until(lambda: flood.process() and len(flood.process().children()) == 5 and victim.process(), 30)
    own = autogroup.read()
    groups_seen = {}
    for proc in (flood, victim):
        p = proc.process()
        assert os.getpgid(p.pid) == p.pid  # still a process group of its own, which supervisord signals
        groups_seen[proc.name] = {autogroup.read(q.pid) for q in [p, *p.children()]}
        assert len(groups_seen[proc.name]) == 1, groups_seen  # children in their program's group
    start = {proc.name: cpu_seconds(proc)[0] for proc in (flood, victim)}
    used = {}

    def enough():
        used.update({proc.name: cpu_seconds(proc)[0] - start[proc.name] for proc in (flood, victim)})
        return sum(used.values()) >= 4

    assert wait_until(enough, 120), used
    share = used["victim"] / sum(used.values())
    flood_pids = cpu_seconds(flood)[1]
    sv.stop_program("flood")  # SIGTERM to its process group: every one of its 6 processes
    import psutil

    assert wait_until(lambda: not any(psutil.pid_exists(pid) for pid in flood_pids), 10)
    print(f"\nCPU used: {used}; the victim's share {share:.2f}; groups {groups_seen}; the test's own {own}")
    assert share >= 0.35, f"the single process got {share:.0%} of the CPU against 6 in another program"
    flood_group, victim_group = (next(iter(groups_seen[n])) for n in ("flood", "victim"))
    assert flood_group != victim_group and own[0] not in (flood_group[0], victim_group[0])
    assert flood_group[1] == victim_group[1] == nice


@pytest.mark.skipif(not autogroup.enabled(), reason="kernel without CFS autogroups")
def test_a_process_in_the_root_group_reads_as_root_not_unknown():
    """init's session stays in the root task group, whose ``/proc/<pid>/autogroup`` the kernel
    leaves empty: a process there (a CI runner's, a container's) reads as ``ROOT``, so a check
    comparing its group with another's does not meet None; a process that is gone reads None."""
    assert autogroup.read(1) == autogroup.ROOT
    assert autogroup.read(2**22 + 1) is None  # above the kernel's pid_max: no such process
    assert autogroup.read() is not None


@pytest.mark.skipif(not autogroup.cgroups_available(), reason="no cgroup v1 cpu controller this user may write (root)")
@pytest.mark.parametrize("limit", [True, pytest.param(False, marks=pytest.mark.xfail(
    strict=True, reason="protection off: no team cgroup, nothing caps the program"))])
def test_a_program_in_its_teams_cgroup_uses_no_more_cpu_than_the_limit(supervised, tmp_path, limit):
    """A program of 3 spinning processes started by the launcher into a team's cgroup capped at
    0.3 cores (``platform_runtime.autogroup.make_cgroup``, the spec's ``cgroup``): it and its
    children are in the cgroup and together use about 0.3 cores, however many cores are free;
    the cgroup is removed afterwards. Without the cgroup (the limit off) they use what is free."""
    sv, _ = supervised
    cores = 0.3
    path = f"{autogroup.CGROUP_CPU}/platform-test-{os.getpid()}-{tmp_path.name}/team"
    autogroup.make_cgroup(path, autogroup.nice_for(3), cores)
    try:
        spin = SPIN.replace("os.sched_setaffinity(0, {int(sys.argv[1])})", "")
        sv.write_spec("flood", [sys.executable, "-c", spin, "0", "3"], ENV, Path("/"), None,
                      autogroup_nice=autogroup.nice_for(3), cgroup=path if limit else None)
        sv.start_program("flood")
        flood = SupervisedProc(sv, "flood")
        assert wait_until(lambda: flood.process() and len(flood.process().children()) == 2, 30)
        members = set(autogroup.cgroup_pids(path))
        c0, t0 = cpu_seconds(flood)[0], time.monotonic()
        time.sleep(4)
        used = (cpu_seconds(flood)[0] - c0) / (time.monotonic() - t0)
        pids = cpu_seconds(flood)[1]
        sv.stop_program("flood")
        print(f"\n3 spinning processes used {used:.2f} cores (limit {cores}); in the cgroup: {sorted(members)}, "
              f"the program's: {sorted(pids)}")
        assert set(pids) <= members, "the program's processes are not all in its cgroup"
        assert used <= cores * 1.15, f"used {used:.2f} cores, the limit is {cores}"
    finally:
        autogroup.remove_cgroup(os.path.dirname(path))
    assert not os.path.exists(os.path.dirname(path))
