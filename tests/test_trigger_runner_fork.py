"""A team's trigger runner forked from the team's parse zygote (platform_runtime.airflow_internals).

Real processes, no Airflow platform: a real zygote (``python -m platform_runtime.airflow_internals
zygote``, started as the dag-processor starts it) and, as the triggerer's fork, a real relay
(:func:`relay_trigger_runner` in a fresh interpreter whose fds 0-2 are socket pairs held here,
the supervisor's ends). The runner the zygote forks runs Airflow's ``TriggerRunner``, which waits
on fd 0 for the supervisor's first message.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from platform_runtime.airflow_internals import runner_address, start_zygote
from platform_runtime.team_env import team_env, team_python
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
FALLBACK = 99  # the relay's code when it returned: no zygote took the request (the triggerer would exec one)
RELAY = f"""
import sys
from pathlib import Path
from platform_runtime.airflow_internals import relay_trigger_runner
relay_trigger_runner(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
sys.exit({FALLBACK})
"""


def listening(home: Path) -> bool:
    """The zygote's runner address is bound (``/proc/net/unix`` lists abstract names with ``@``)."""
    name = "@" + runner_address(home)[1:]
    return any(line.rstrip().endswith(name) for line in Path("/proc/net/unix").read_text().splitlines())


def zygote_log(home: Path) -> str:
    log = home / "zygote.log"
    return log.read_text()[-3000:] if log.exists() else "(no zygote.log)"


def runners_of(pid: int) -> list[psutil.Process]:
    out = []
    for c in psutil.Process(pid).children():
        try:
            if "trigger-runner" in " ".join(c.cmdline()):
                out.append(c)
        except psutil.Error:
            continue
    return out


class Relay:
    """The triggerer's fork, stood in by a fresh interpreter: fds 0-2 the child ends of three
    socket pairs (ours: the supervisor's ends), and a log channel."""

    def __init__(self, team: str, home: Path):
        pairs = [socket.socketpair() for _ in range(4)]
        self.ours = [a for a, _ in pairs]
        theirs = [b for _, b in pairs]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT),
               "AIRFLOW_HOME": str(home.parent / "platform-home"), "XDG_RUNTIME_DIR": "/tmp/platform-runtime-0"}
        self.proc = subprocess.Popen([sys.executable, "-c", RELAY, team, str(theirs[3].fileno()), str(home)],
                                     stdin=theirs[0], stdout=theirs[1], stderr=theirs[2],
                                     pass_fds=[theirs[3].fileno()], env=env, cwd="/")
        for s in theirs:
            s.close()

    def stderr(self) -> str:
        self.ours[2].setblocking(False)
        try:
            return self.ours[2].recv(65536).decode(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for s in self.ours:
            s.close()


@pytest.fixture
def zygote(tmp_path, monkeypatch):
    """The team's zygote, started as the dag-processor starts it (``start_zygote``), listening."""
    team = "tforkrunner"
    monkeypatch.setenv("AIRFLOW__PLATFORM__TEAM_HOME", str(tmp_path / "home-{team}"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    z = start_zygote(team)
    home = tmp_path / f"home-{team}"
    try:
        assert wait_for(lambda: listening(home) or not z.alive(), 180) and z.alive(), zygote_log(home)
        yield team, home, z
    finally:
        z.channel.close()  # the dag-processor gone: the zygote ends once no runner of its is left
        try:
            z.process.wait(30)
        except subprocess.TimeoutExpired:
            z.process.kill()
            raise


def test_the_trigger_runner_is_forked_from_the_zygote_and_its_exit_code_comes_back(zygote):
    team, home, z = zygote
    relay = Relay(team, home)
    try:
        runners = wait_for(lambda: runners_of(z.process.pid) or relay.proc.poll() is not None, 180)
        assert runners and relay.proc.poll() is None, (relay.stderr(), zygote_log(home))
        (runner,) = runners
        # a fork of the zygote (its memory, its user), not a child of the triggerer's fork
        assert runner.ppid() == z.process.pid and runner.pid not in {c.pid for c in psutil.Process(relay.proc.pid).children()}
        assert runner.uids() == psutil.Process(z.process.pid).uids()
        assert Path(f"/proc/{runner.pid}/exe").resolve() == Path(f"/proc/{z.process.pid}/exe").resolve()
        # the runner waits for the supervisor's first message on fd 0; our end closed, it fails
        # ("Required first message" never comes) and its code is the relay's
        relay.ours[0].close()
        assert relay.proc.wait(180) == 1, relay.stderr()
        assert wait_for(lambda: not psutil.pid_exists(runner.pid) or runner.status() == psutil.STATUS_ZOMBIE, 10)
    finally:
        relay.close()


def test_a_relay_killed_takes_its_runner_with_it(zygote):
    team, home, z = zygote
    relay = Relay(team, home)
    try:
        runners = wait_for(lambda: runners_of(z.process.pid), 180)
        assert runners, (relay.stderr(), zygote_log(home))
        relay.proc.send_signal(signal.SIGKILL)  # what the triggerer's kill escalates to
        relay.proc.wait(10)
        assert wait_for(lambda: not runners_of(z.process.pid), 15), "the runner outlived its relay"
    finally:
        relay.close()


def test_the_zygote_takes_runner_requests_from_the_platforms_uid_only(tmp_path, monkeypatch):
    """A zygote told the platform runs as another uid refuses this process's request: the relay
    falls back (the triggerer execs a runner), and no runner is forked."""
    team = "tforkrefuse"
    home = tmp_path / team
    home.mkdir(mode=0o700)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    other = os.geteuid() + 4242
    proc = subprocess.Popen([team_python(), "-m", "platform_runtime.airflow_internals", "zygote", str(theirs.fileno()),
                             str(other)], env=team_env(team, dict(os.environ), home), pass_fds=[theirs.fileno()],
                            stdin=subprocess.DEVNULL)
    theirs.close()
    relay = None
    try:
        assert wait_for(lambda: listening(home) or proc.poll() is not None, 180) and proc.poll() is None
        relay = Relay(team, home)
        assert relay.proc.wait(180) == FALLBACK, relay.stderr()
        assert "exec'd, not forked" in relay.stderr()
        assert not runners_of(proc.pid)
    finally:
        if relay:
            relay.close()
        ours.close()
        proc.wait(30)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs another OS user to hold the address")
def test_the_relay_hands_nothing_to_an_address_held_by_another_user(tmp_path):
    """Another user's process squatting the team's runner address gets no socket: the relay
    checks the listener's uid (``SO_PEERCRED``) and falls back to an exec'd runner."""
    team = "tforksquat"
    home = tmp_path / team
    squat = (f"import socket, time; s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); "
             f"s.bind({runner_address(home)!r}); s.listen(4); print('up', flush=True); "
             f"c, _ = s.accept(); c.settimeout(20); m, fds, *_ = socket.recv_fds(c, 64, 4); print(len(fds), flush=True)")
    nobody = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", squat],
                              stdout=subprocess.PIPE, text=True)
    relay = None
    try:
        assert nobody.stdout.readline().strip() == "up"
        relay = Relay(team, home)
        assert relay.proc.wait(180) == FALLBACK, relay.stderr()
        assert "not 0" in relay.stderr() or "held by uid 65534" in relay.stderr(), relay.stderr()
        out, _ = nobody.communicate(timeout=30)
        assert out.strip() in ("", "0"), f"the squatter got {out.strip()} fds"
    finally:
        if relay:
            relay.close()
        if nobody.poll() is None:
            nobody.kill()
