"""The team triggerers forked from one parent (platform_runtime/triggerer_fork.py), on real processes.

A real parent (``python -m platform_runtime.triggerer_fork parent``, as supervisord's
``triggerers`` program starts it) and real relays (the ``triggerer-<team>`` programs' command:
``python -I -S platform_runtime/triggerer_fork.py <the triggerer's argv>``), each with its own
environment, working folder, umask and log; the triggerers they get run Airflow's real
``triggerer`` command against the session's metadata database (PostgreSQL).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from devplatform.ports import free_port
from platform_runtime.triggerer_fork import address
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
RELAY = ROOT / "platform_runtime" / "triggerer_fork.py"
pytestmark = pytest.mark.timeout(600)


def triggerer_argv(team: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "platform_runtime.airflow_internals", "triggerer", "--team-name", team, *extra]


def triggerers_of(parent: int, team: str) -> list[psutil.Process]:
    out = []
    for c in psutil.Process(parent).children():
        try:
            argv = " ".join(c.cmdline()).split()  # setproctitle's title: one string
        except psutil.Error:
            continue
        if "--team-name" in argv and argv[argv.index("--team-name") + 1] == team and c.status() != psutil.STATUS_ZOMBIE:
            out.append(c)
    return out


def gone(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class Relay:
    """A team's program: the relay, with its own environment, folder, umask and log file."""

    def __init__(self, tmp: Path, team: str, argv: list[str], env: dict[str, str], umask: int = 0o027,
                 preexec=None):
        self.log = tmp / f"relay-{team}-{time.monotonic_ns()}.log"
        self.cwd = tmp / f"cwd-{team}"
        self.cwd.mkdir(exist_ok=True)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-I", "-S", str(RELAY), *argv], stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.cwd, umask=umask,
                                         start_new_session=True, preexec_fn=preexec)

    def text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def platform_env(tmp_path) -> dict[str, str]:
    home = tmp_path / "airflow-home"
    home.mkdir()
    return {**os.environ, "AIRFLOW_HOME": str(home), "PYTHONPATH": str(ROOT),
            "AIRFLOW__PLATFORM__TEAM_HOME": str(tmp_path / "teams" / "{team}"), "AIRFLOW__CORE__MULTI_TEAM": "True"}


@pytest.fixture
def teams(monkeypatch) -> list[str]:
    """Six teams of Airflow's (``airflow triggerer --team-name`` refuses a team it does not know)."""
    import uuid

    monkeypatch.setenv("AIRFLOW__CORE__MULTI_TEAM", "True")
    from airflow.models.team import Team
    from airflow.utils.session import create_session

    tag = uuid.uuid4().hex[:8]
    names = [f"tf{tag}{i}" for i in range(6)]
    with create_session() as session:
        session.add_all([Team(name=t) for t in names])
    return names


@pytest.fixture
def parent(tmp_path, platform_env):
    log = tmp_path / "parent.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "platform_runtime.triggerer_fork", "parent"],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=platform_env, cwd="/")
    name = "@" + address(platform_env["AIRFLOW_HOME"])[1:]
    try:
        assert wait_for(lambda: "ready" in log.read_text() or proc.poll() is not None, 180) and proc.poll() is None, \
            log.read_text()[-3000:]
        assert any(line.rstrip().endswith(name) for line in Path("/proc/net/unix").read_text().splitlines())
        yield proc, log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_each_team_triggerer_is_the_parents_fork_with_its_relays_argv_env_folder_and_log(tmp_path, platform_env, parent,
                                                                                         teams):
    proc, log = parent
    teams = {teams[0]: free_port(), teams[1]: free_port()}
    relays = {}
    try:
        for team, port in teams.items():
            env = {**platform_env, "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(port)}
            relays[team] = Relay(tmp_path, team, triggerer_argv(team), env)  # serves its logs: on its own port
        for team, port in teams.items():
            relay = relays[team]
            found = wait_for(lambda t=team, r=relay: triggerers_of(proc.pid, t) or r.proc.poll() is not None, 120)
            assert found and relay.proc.poll() is None, (relay.text(), log.read_text()[-3000:], [
                (c.pid, c.cmdline(), c.status()) for c in psutil.Process(proc.pid).children()])
            (trig,) = found
            # the parent's fork (its memory: Airflow imported once), not the program's child
            assert trig.ppid() == proc.pid
            assert trig.pid not in {c.pid for c in psutil.Process(relay.proc.pid).children(recursive=True)}
            assert Path(f"/proc/{trig.pid}/exe").resolve() == Path(f"/proc/{proc.pid}/exe").resolve()
            # the program's argv, folder, umask, uid and capabilities; a process group of its own
            assert " ".join(trig.cmdline()) == " ".join(triggerer_argv(team))
            assert Path(f"/proc/{trig.pid}/cwd").resolve() == relay.cwd.resolve()
            status = Path(f"/proc/{trig.pid}/status").read_text()
            assert "Umask:\t0027" in status
            assert trig.uids() == psutil.Process(relay.proc.pid).uids()
            assert os.getpgid(trig.pid) == trig.pid
            # its environment: Airflow serves its logs on the port the relay's environment names
            # (the other team's port is the other triggerer's), and its output is the relay's log
            def listens(p: psutil.Process, port: int = port) -> bool:
                pids = {p.pid, *(c.pid for c in p.children(recursive=True))}
                return any(c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid in pids
                           for c in psutil.net_connections("tcp"))

            assert wait_for(lambda p=trig: listens(p), 120), (relay.text(), log.read_text()[-2000:])
            assert wait_for(lambda r=relay: "forked by the parent" in r.text() and "riggerer" in r.text(), 30)
        # the parent itself holds neither team's environment
        assert "TRIGGER_LOG_SERVER_PORT" not in Path(f"/proc/{proc.pid}/environ").read_text()
    finally:
        for r in relays.values():
            r.close()


def test_a_relay_killed_ends_its_teams_triggerer_only_and_a_new_one_replaces_it(tmp_path, platform_env, parent, teams):
    proc, log = parent
    tc, td = teams[2], teams[3]
    relays = {t: Relay(tmp_path, t, triggerer_argv(t, "--skip-serve-logs"), platform_env) for t in (tc, td)}
    try:
        trig = {t: wait_for(lambda t=t: triggerers_of(proc.pid, t), 120) for t in relays}
        assert all(trig.values()), {t: r.text() for t, r in relays.items()}
        (c,), (d,) = trig[tc], trig[td]
        group_c = [c, *c.children(recursive=True)]
        relays[tc].proc.send_signal(signal.SIGKILL)  # supervisord's killasgroup, a fault matrix kill
        relays[tc].proc.wait(10)
        assert wait_for(lambda: all(gone(p) for p in group_c), 15), "the triggerer outlived its relay"
        assert not gone(d) and relays[td].proc.poll() is None  # the other team's untouched
        # supervisord's restart: a new relay, a new triggerer; never two of the team at once
        again = Relay(tmp_path, tc, triggerer_argv(tc, "--skip-serve-logs"), platform_env)
        relays["again"] = again
        new = wait_for(lambda: triggerers_of(proc.pid, tc), 120)
        assert new and len(new) == 1 and new[0].pid != c.pid, again.text()
        # the same team asked again while its triggerer runs: the old one ends before the new one starts
        third = Relay(tmp_path, tc, triggerer_argv(tc, "--skip-serve-logs"), platform_env)
        relays["third"] = third
        assert wait_for(lambda: triggerers_of(proc.pid, tc) and triggerers_of(proc.pid, tc)[0].pid != new[0].pid,
                        120), third.text()
        assert len(triggerers_of(proc.pid, tc)) == 1 and gone(new[0])
        assert again.proc.wait(15) == 128 + signal.SIGKILL  # its triggerer was killed: the relay says so
    finally:
        for r in relays.values():
            r.close()


def test_the_triggerers_exit_code_and_stop_signal_come_back_through_the_relay(tmp_path, platform_env, parent, teams):
    proc, log = parent
    # Airflow's own argument check fails the forked triggerer: exit code 2, the relay's
    bad = Relay(tmp_path, teams[4], triggerer_argv(teams[4], "--capacity", "many"), platform_env)
    try:
        assert bad.proc.wait(120) == 2, bad.text()
        assert "forked by the parent" in bad.text() and "invalid positive int value" in bad.text(), bad.text()
    finally:
        bad.close()
    # supervisord's stop (SIGTERM to the program): forwarded to the triggerer, which stops
    ok = Relay(tmp_path, teams[5], triggerer_argv(teams[5], "--skip-serve-logs"), platform_env)
    try:
        (trig,) = wait_for(lambda: triggerers_of(proc.pid, teams[5]), 120)
        time.sleep(3)
        ok.proc.send_signal(signal.SIGTERM)
        code = ok.proc.wait(60)
        assert gone(trig)
        assert code in (0, -signal.SIGTERM), (code, ok.text())
    finally:
        ok.close()


def test_a_peer_without_the_parents_capabilities_gets_no_triggerer(tmp_path, platform_env, parent, teams):
    """A platform process holding fewer capabilities than the parent (here: none) is refused (a
    fork would hold CAP_SETUID/CAP_SETGID): its relay runs the argv itself, with its own capabilities."""
    proc, log = parent
    argv = triggerer_argv(teams[0], "--capacity", "many")
    drop = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"]
    log_file = tmp_path / "capless.log"
    with open(log_file, "wb") as out:
        capless = subprocess.run([*drop, sys.executable, "-I", "-S", str(RELAY), *argv], stdout=out,
                                 stderr=subprocess.STDOUT, env=platform_env, cwd=tmp_path, timeout=300)
    text = log_file.read_text()
    assert capless.returncode == 2, text  # the argv's own failure, in the relay's own process
    assert "not forked by the parent" in text and "forked by the parent (pid" not in text, text
    assert "refused" in log.read_text()
    assert not triggerers_of(proc.pid, teams[0])


def test_the_parent_killed_its_triggerers_die_and_their_relays_exit(tmp_path, platform_env, parent, teams):
    """SIGKILL of the parent alone (an OOM kill, a crash): each triggerer dies with it
    (``PR_SET_PDEATHSIG``), with its trigger runner's group, and each relay exits (125: no code
    came back), so that supervisord restarts the team's program, which asks the new parent."""
    proc, log = parent
    relays = {t: Relay(tmp_path, t, triggerer_argv(t, "--skip-serve-logs"), platform_env) for t in teams[:2]}
    try:
        trig = {t: wait_for(lambda t=t: triggerers_of(proc.pid, t), 120) for t in relays}
        assert all(trig.values()), {t: r.text() for t, r in relays.items()}
        time.sleep(3)  # each has started Airflow's triggerer job
        groups = {t: [p, *p.children(recursive=True)] for t, (p,) in trig.items()}
        proc.send_signal(signal.SIGKILL)  # the parent alone, not its process group
        proc.wait(10)
        for t, group in groups.items():
            assert wait_for(lambda g=group: all(gone(p) for p in g), 15), f"team {t}'s triggerer outlived its parent"
        for relay in relays.values():
            assert relay.proc.wait(15) == 125, relay.text()
    finally:
        for r in relays.values():
            r.close()


def test_with_no_parent_listening_the_relay_execs_the_triggerer_itself(tmp_path, platform_env, teams):
    """No ``triggerers`` parent (not started, another host, restarting for longer than
    CONNECT_SECONDS): the relay waits that long, then becomes the team's triggerer (the same
    process execs the argv: today's fresh triggerer, with the program's environment)."""
    from platform_runtime.triggerer_fork import CONNECT_SECONDS

    team = teams[1]
    argv = triggerer_argv(team, "--skip-serve-logs")
    relay = Relay(tmp_path, team, argv, platform_env)
    try:
        time.sleep(CONNECT_SECONDS / 2)
        me = psutil.Process(relay.proc.pid)
        assert str(RELAY) in me.cmdline() and relay.proc.poll() is None  # still waiting for a parent
        t0 = time.monotonic()
        assert wait_for(lambda: me.cmdline() == argv, CONNECT_SECONDS + 30), (me.cmdline(), relay.text())
        assert time.monotonic() - t0 >= CONNECT_SECONDS / 2 - 2  # not before the wait was over
        assert "no triggerer parent listening" in relay.text()
        # it runs Airflow's triggerer: its job starts the team's trigger runner (a child process)
        assert wait_for(lambda: me.children(recursive=True), 120), relay.text()
        assert relay.proc.poll() is None, relay.text()
        relay.proc.send_signal(signal.SIGTERM)
        assert relay.proc.wait(60) in (0, -signal.SIGTERM), relay.text()
    finally:
        relay.close()
