"""benchmarks/platform_memory.py: PSS from /proc/<pid>/smaps_rollup, per process kind, on real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from benchmarks.platform_memory import (
    PARSE_FORK,
    ZYGOTE,
    child_kind,
    idle_usage,
    memory_table,
    parse_smaps_rollup,
    program_kind,
    smaps_rollup,
    total,
    tree_usage,
)

MIB = 2**20
SHARED_MIB = 64
CHILDREN = 3

# A parent that writes 64 MiB of anonymous memory, then forks children that only sleep: the
# pages are shared copy-on-write, so RSS summed counts them 1 + CHILDREN times, PSS once.
FORKER = f"""
import os, sys, time
buf = bytearray({SHARED_MIB} * 2**20)
for i in range(0, len(buf), 4096):
    buf[i] = 1
pids = []
for _ in range({CHILDREN}):
    pid = os.fork()
    if pid == 0:
        time.sleep(600)
        os._exit(0)
    pids.append(pid)
print("ready", flush=True)
time.sleep(600)
"""


@pytest.fixture
def forker():
    proc = subprocess.Popen([sys.executable, "-c", FORKER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 10
        while len(psutil.Process(proc.pid).children()) < CHILDREN and time.monotonic() < deadline:
            time.sleep(0.05)
        yield proc
    finally:
        for child in psutil.Process(proc.pid).children():
            os.kill(child.pid, signal.SIGKILL)
        proc.kill()
        proc.wait()


def test_parse_smaps_rollup_reads_the_kernels_format():
    text = ("00400000-7ffd3b5e5000 ---p 00000000 00:00 0                          [rollup]\n"
            "Rss:              104548 kB\nPss:               26201 kB\nPss_Anon:          20000 kB\n"
            "Private_Clean:       100 kB\nPrivate_Dirty:     20100 kB\nSwap:                  0 kB\n")
    assert parse_smaps_rollup(text) == {"Rss": 104548 * 1024, "Pss": 26201 * 1024, "Pss_Anon": 20000 * 1024,
                                        "Private_Clean": 100 * 1024, "Private_Dirty": 20100 * 1024, "Swap": 0}


def test_own_rollup_agrees_with_psutils_full_smaps_reading():
    ours = smaps_rollup(os.getpid())
    theirs = psutil.Process().memory_full_info()
    assert abs(ours["Pss"] - theirs.pss) < 8 * MIB
    assert abs(ours["Rss"] - theirs.rss) < 8 * MIB


def test_pages_shared_by_forks_count_once_in_pss_and_per_process_in_rss(forker):
    usage = tree_usage({"worker-aurora": forker.pid}, ["aurora"])
    assert set(usage) == {"worker-<team>", "worker-<team> other child"}
    everything = total(usage)
    assert everything.count == 1 + CHILDREN
    # RSS summed: the 64 MiB once per process; PSS: once in all (plus each interpreter's own pages)
    assert everything.rss > (1 + CHILDREN) * SHARED_MIB * MIB
    assert SHARED_MIB * MIB < everything.pss < (SHARED_MIB + (1 + CHILDREN) * 16) * MIB
    # each child's private pages are few: the shared buffer is not theirs alone
    assert usage["worker-<team> other child"].uss < CHILDREN * 16 * MIB


def test_a_root_below_another_root_is_counted_under_its_own_name(forker):
    child = psutil.Process(forker.pid).children()[0].pid
    usage = tree_usage({"supervisord": forker.pid, "scheduler": child}, [])
    assert usage["scheduler"].pids == [child]
    assert usage["supervisord"].pids == [forker.pid]
    assert child not in usage["supervisord child"].pids and usage["supervisord child"].count == CHILDREN - 1
    assert total(usage).count == 1 + CHILDREN


def test_kinds_fold_the_team_in_and_name_what_each_child_is():
    teams = ["looklyy", "referral", "ecommerce_ml"]
    assert program_kind("worker-referral", teams) == "worker-<team>"
    assert program_kind("triggerer-ecommerce_ml", teams) == "triggerer-<team>"
    assert program_kind("triggerer", teams) == "triggerer"
    assert program_kind("standin-referral-bullhorn", teams) == "stand-in"
    assert program_kind("redis-looklyy", teams) == "redis-<team>"
    assert program_kind("redis-domains", teams) == "redis-domains"
    assert child_kind("worker-<team>", ["[celeryd: referral@vm:ForkPoolWorker-1]"]) == "worker-<team> pool process"
    assert child_kind("dag-processor", ["python", "-m", "platform_runtime.airflow_internals", "zygote", "10"]) == (
        "dag-processor parse zygote (per team)")
    assert child_kind("dag-processor", ["python -m platform_runtime.airflow_internals trigger-runner --forked"]) == (
        "trigger runner (forked from the team's zygote)")
    assert child_kind("triggerer-<team>", ["python", "-I", "-S", "-c", "...", "5", "trigger-runner-relay"]) == (
        "triggerer-<team> runner relay")
    # the team triggerers forked from the ``triggerers`` parent (setproctitle: one string), their runners' relays
    forked = ["python -m platform_runtime.airflow_internals triggerer --team-name aurora --skip-serve-logs"]
    assert child_kind("triggerers", forked) == "triggerer-<team>"
    assert child_kind("triggerers", ["python", "-I", "-S", "-c", "...", "5", "trigger-runner-relay"]) == (
        "triggerer-<team> runner relay")
    assert child_kind("postgres", ["postgres: airflow airflow 127.0.0.1 idle"]) == "postgres"


def test_memory_table_prints_every_kind_of_every_column_and_the_totals(forker):
    before = tree_usage({"worker-aurora": forker.pid}, ["aurora"])
    after = {"worker-<team>": before["worker-<team>"]}
    table = memory_table({"before": before, "after": after})
    lines = table.splitlines()
    assert "before" in lines[0] and "after" in lines[0]
    row = next(line for line in lines if line.startswith("worker-<team> other child"))
    assert row.rstrip().endswith("-")  # not in "after"
    assert f"{CHILDREN:>6d}" in row
    totals = next(line for line in lines if line.startswith("total "))
    assert f"{1 + CHILDREN:>6d}" in totals


# A dag-processor (root) with a team's zygote (a child whose command line says " zygote"), which
# forks a "parse" (same command line) every PARSE_EVERY seconds, each living PARSE_SECONDS; after
# PARSES of them it forks no more.
ZYGOTE_SCRIPT = """
import os, sys, time
parses, every, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
for _ in range(parses):
    if os.fork() == 0:
        time.sleep(seconds)
        os._exit(0)
    time.sleep(every)
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
time.sleep(600)
"""


def dag_processor(parses: int, every: float, seconds: float) -> subprocess.Popen:
    """A root process running one zygote that forks ``parses`` parses."""
    code = ("import subprocess, sys, time\n"
            f"subprocess.Popen([sys.executable, '-c', {ZYGOTE_SCRIPT!r}, '{parses}', '{every}', '{seconds}', 'zygote'])\n"
            "time.sleep(600)\n")
    return subprocess.Popen([sys.executable, "-c", code])


def kill_tree(proc: subprocess.Popen) -> None:
    for child in psutil.Process(proc.pid).children(recursive=True):
        child.kill()
    proc.kill()
    proc.wait()


def test_idle_usage_waits_until_no_parse_is_in_flight_and_the_processes_are_stable():
    proc = dag_processor(parses=4, every=1.0, seconds=0.8)
    try:
        t0 = time.monotonic()
        usage, how = idle_usage(lambda: {"dag-processor": proc.pid}, [], timeout=30, interval=0.5)
        waited = time.monotonic() - t0
        assert how["idle"] and how["refused"] >= 1
        assert set(usage) == {"dag-processor", ZYGOTE}, usage.keys()  # no parse fork measured
        assert usage[ZYGOTE].count == 1 and usage["dag-processor"].count == 1
        assert waited >= 3  # not before the last of the 4 parses (one a second) had ended
    finally:
        kill_tree(proc)


def test_idle_usage_gives_up_and_says_so_when_parses_never_stop():
    proc = dag_processor(parses=1000, every=0.2, seconds=0.5)  # always one or more parses in flight
    try:
        usage, how = idle_usage(lambda: {"dag-processor": proc.pid}, [], timeout=3, interval=0.5)
        assert not how["idle"] and how["refused"] >= 4
        assert usage[PARSE_FORK].count >= 1
    finally:
        kill_tree(proc)
