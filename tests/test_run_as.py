"""How the platform's processes run: the platform's user with only the capabilities they need,
and team code started from them with none (devplatform.processes.RunAs, platform_runtime.team_env)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from unittest import mock

import pytest

from devplatform.config import PlatformConfig
from devplatform.platform import SWITCH_USER_CAPS, LocalPlatform
from devplatform.processes import RunAs
from devplatform.users import system_user, tenant_python
from platform_runtime.team_env import SWITCH_CAPS, TeamUser, as_user_argv, effective_caps

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching OS users needs root")

# In the platform's process: report itself, then start a "team" child the way the dag-processor
# starts a zygote (as_user_argv) and report what that child holds.
CHAIN = """
import json, os, subprocess, sys
from platform_runtime.team_env import TeamUser, as_user_argv, can_switch_users
def me():
    f = dict(l.split(":\\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\\t" in l)
    return {"uid": os.getuid(), "euid": os.geteuid(), "groups": os.getgroups(), "umask": int(f["Umask"], 8),
            "prm": int(f["CapPrm"], 16), "eff": int(f["CapEff"], 16), "amb": int(f["CapAmb"], 16),
            "bnd": int(f["CapBnd"], 16), "nnp": f["NoNewPrivs"].strip()}
if sys.argv[1:] == ["child"]:
    out = me()
    try:
        os.setuid(0)
        out["setuid0"] = "became root"
    except PermissionError:
        out["setuid0"] = "refused"
    print(json.dumps(out))
else:
    team = TeamUser("team", int(sys.argv[1]), int(sys.argv[2]), "/")
    child = subprocess.run(as_user_argv(team, [sys.executable, "-c", sys.argv[3], "child"]),
                           capture_output=True, text=True, check=True)
    print(json.dumps({"platform": me(), "can_switch": can_switch_users(), "team": json.loads(child.stdout)}))
"""


@pytest.fixture(scope="module")
def python():
    """An interpreter every OS user can run (pytest's tmp_path is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="run-as-"))
    os.chmod(folder, 0o755)
    yield tenant_python(folder, create=True)
    shutil.rmtree(folder, ignore_errors=True)


def test_a_platform_process_keeps_only_its_capabilities_and_team_code_gets_none(python):
    platform, team = system_user("airflow-platform"), system_user("tenant-runas-probe")
    argv = RunAs(platform.uid, platform.gid, SWITCH_USER_CAPS, umask=0o007).argv(
        [python, "-c", CHAIN, str(team.uid), str(team.gid), CHAIN])
    out = subprocess.run(argv, capture_output=True, text=True, cwd="/", umask=0o007,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout)
    assert r["platform"] == {"uid": platform.uid, "euid": platform.uid, "groups": [], "umask": 0o007,
                             "prm": SWITCH_CAPS, "eff": SWITCH_CAPS, "amb": SWITCH_CAPS, "bnd": SWITCH_CAPS, "nnp": "1"}
    assert r["can_switch"] is True
    assert r["team"] == {"uid": team.uid, "euid": team.uid, "groups": [], "umask": 0o007,
                         "prm": 0, "eff": 0, "amb": 0, "bnd": SWITCH_CAPS, "nnp": "1", "setuid0": "refused"}


def test_without_capabilities_a_platform_process_cannot_switch_users(python):
    platform = system_user("airflow-platform")
    script = "from platform_runtime.team_env import can_switch_users; print(can_switch_users())"
    out = subprocess.run(RunAs(platform.uid, platform.gid).argv([python, "-c", script]), capture_output=True,
                         text=True, cwd="/", env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}, check=True)
    assert out.stdout.strip() == "False"


def test_effective_caps_reads_the_status_line():
    assert effective_caps("Name:\tx\nCapEff:\t00000000000000c0\n") == SWITCH_CAPS
    assert effective_caps("CapEff:\t0000000000000000\n") == 0


def test_as_user_argv_clears_every_capability_set_and_sets_no_new_privs():
    argv = as_user_argv(TeamUser("t", 1234, 2345, "/"), ["python", "-m", "x"])
    assert argv[1:] == ["--reuid=1234", "--regid=2345", "--clear-groups", "--inh-caps=-all", "--ambient-caps=-all",
                        "--no-new-privs", "--", "python", "-m", "x"]


def test_make_start_says_what_it_cannot_enforce(tmp_path):
    platform = LocalPlatform(PlatformConfig(state=tmp_path), quiet=True)
    assert platform.enforcement_gaps() == []  # as root with per-team workers: everything is enforced
    with mock.patch("devplatform.platform.can_switch_users", return_value=False):
        gaps = platform.enforcement_gaps()
    assert len(gaps) == 2 and "secrets.json" in gaps[0] and "platform user of their own" in gaps[1]
    baseline = LocalPlatform(PlatformConfig(state=tmp_path, executor="local"), quiet=True)
    assert "inside the scheduler" in baseline.enforcement_gaps()[0]
