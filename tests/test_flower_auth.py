"""Each team's Flower: basic auth on the UI and the API; what Flower 2.2 leaves open."""

from __future__ import annotations

from types import SimpleNamespace

from devplatform.tenants import TeamRuntime


def runtime(team: str = "referral") -> TeamRuntime:
    cfg = SimpleNamespace(
        secrets=SimpleNamespace(flower_passwords={team: "flower-pw"}),
        broker_url=lambda t, db: f"redis://:pw@127.0.0.1:6390/{db}",
        flower_port=lambda t: 5599,
        tenant_dir=lambda t: __import__("pathlib").Path("/nonexistent") / t,
    )
    return TeamRuntime(cfg, team)


def test_flower_requires_its_team_password_and_never_opens_its_api():
    env = runtime().flower_env()
    assert env["FLOWER_BASIC_AUTH"] == "referral:flower-pw"
    assert env["FLOWER_UNAUTHENTICATED_API"] == "false"
    assert env["FLOWER_ADDRESS"] == "127.0.0.1"


def test_flower_2_2_leaves_metrics_and_healthcheck_unauthenticated():
    """Pins the documented limit (README, Security): Flower has no option to guard these two.
    Should a Flower upgrade guard them (``tornado.web.authenticated``), this fails: update the README."""
    from flower.urls import handlers
    from flower.views import monitor, workers

    routes = {h[0]: h[1] for h in handlers if isinstance(h, tuple)}
    assert routes["/metrics"] is monitor.Metrics and routes["/healthcheck"] is monitor.Healthcheck
    assert not hasattr(monitor.Metrics.get, "__wrapped__")
    assert not hasattr(monitor.Healthcheck.get, "__wrapped__")
    assert hasattr(workers.WorkerView.get, "__wrapped__")  # the UI's handlers are @authenticated
