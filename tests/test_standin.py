"""The stand-in mechanism itself: faults that act after the request is applied, masked records and logs."""

from __future__ import annotations

import io
import logging
import secrets
import threading

import pytest
import requests
from fastapi import Request

from devplatform.masking import MASK, is_secret_name, mask_query
from devplatform.ports import free_port_range, free_ports
from devplatform.standin import create_app


@pytest.fixture
def counter(standin):
    """A stand-in whose POST /count adds one to a counter (the request's effect)."""
    app = create_app("counter")
    app.state.count = 0
    lock = threading.Lock()

    @app.post("/count")
    def count() -> dict:
        with lock:
            app.state.count += 1
            return {"count": app.state.count}

    @app.get("/echo")
    def echo(request: Request) -> dict:
        return {"query": str(request.query_params)}

    return standin(app)


def test_drop_after_apply_applies_the_request_then_closes_without_a_response(counter):
    counter.faults.add(drop_after_apply=True, times=1, path="/count")
    with pytest.raises(requests.ConnectionError, match="without response|Connection aborted|reset"):
        requests.post(f"{counter.url}/count", timeout=5)
    assert counter.app.state.count == 1  # the server acted
    assert [c.status for c in counter.faults.calls_to("/count")] == [0]  # and answered nothing
    # the next call is answered as usual, on a new connection
    assert requests.post(f"{counter.url}/count", timeout=5).json() == {"count": 2}
    assert [c.status for c in counter.faults.calls_to("/count")] == [0, 200]


def test_drop_after_apply_on_a_kept_alive_connection(counter):
    with requests.Session() as s:
        assert s.post(f"{counter.url}/count", timeout=5).json() == {"count": 1}
        counter.faults.add(drop_after_apply=True, times=1)
        with pytest.raises(requests.ConnectionError):
            s.post(f"{counter.url}/count", timeout=5)
        assert counter.app.state.count == 2
        assert s.post(f"{counter.url}/count", timeout=5).json() == {"count": 3}


def test_hang_applies_the_request_and_holds_the_answer_past_the_client_timeout(counter):
    counter.faults.add(hang=3, times=1)
    with pytest.raises(requests.Timeout):
        requests.post(f"{counter.url}/count", timeout=1)
    assert counter.app.state.count == 1  # applied before the client gave up


def test_status_and_malformed_faults_do_not_apply_the_request(counter):
    counter.faults.add(status=503, retry_after=2, times=1)
    r = requests.post(f"{counter.url}/count", timeout=5)
    assert (r.status_code, r.headers["Retry-After"], r.json()["errorCode"]) == (503, "2", 503)
    counter.faults.add(malformed=True, times=1)
    r = requests.post(f"{counter.url}/count", timeout=5)
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()
    assert counter.app.state.count == 0


@pytest.mark.parametrize("name", ["password", "client_secret", "refresh_token", "access_token", "BhRestToken",
                                  "Authorization", "X-API-Key", "api_key", "apikey", "Cookie", "code", "passwd",
                                  "private_key", "proxy-authorization"])
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["username", "grant_type", "client_id", "where", "fields", "Idempotency-Key",
                                  "zipcode", "count", "version"])
def test_names_that_are_not_secret(name):
    assert not is_secret_name(name)


def test_mask_query_keeps_order_and_plain_values():
    assert mask_query("grant_type=refresh_token&refresh_token=abc&client_id=c1&client_secret=s3") == (
        "grant_type=refresh_token&refresh_token=***&client_id=c1&client_secret=***")
    assert mask_query("where=id > 5&fields=id,email") == "where=id > 5&fields=id,email"  # untouched


def test_secrets_never_reach_call_records_or_the_access_log(counter):
    secret = "planted-" + secrets.token_hex(12)
    access = logging.getLogger("uvicorn.access")
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(message)s"))
    old_level = access.level
    access.addHandler(handler)
    access.setLevel(logging.INFO)  # as `make start` serves stand-ins
    try:
        r = requests.get(f"{counter.url}/echo", timeout=5, params={
            "username": "api.user", "password": secret, "client_secret": secret, "refresh_token": secret,
            "access_token": secret, "BhRestToken": secret, "code": secret},
            headers={"Authorization": f"Bearer {secret}", "X-API-Key": secret, "BhRestToken": secret,
                     "Cookie": f"BhRestToken={secret}"})
        assert r.status_code == 200 and secret in r.json()["query"]  # the handler still sees the real values
    finally:
        access.removeHandler(handler)
        access.setLevel(old_level)
    calls = requests.get(f"{counter.url}/_standin/calls", timeout=5, headers=counter.admin_headers)
    assert secret not in calls.text
    assert secret not in buf.getvalue()
    (call,) = counter.faults.calls_to("/echo")
    assert call.query.startswith(f"username=api.user&password={MASK}&client_secret={MASK}")
    assert call.headers["authorization"] == call.headers["x-api-key"] == call.headers["cookie"] == MASK
    assert "GET /echo?username=api.user&password=***" in buf.getvalue()  # the line is still logged, masked


def test_free_ports_are_distinct_and_a_range_is_free_and_avoids_the_excluded():
    import socket

    ports = free_ports(8)
    assert len(set(ports)) == 8
    base = free_port_range(6, exclude=ports)
    assert not set(range(base, base + 6)) & set(ports)
    socks = [socket.socket() for _ in range(6)]
    try:
        for port, s in zip(range(base, base + 6), socks, strict=True):
            s.bind(("127.0.0.1", port))  # each port of the range can be bound
    finally:
        for s in socks:
            s.close()


def test_the_admin_routes_need_the_admin_key_and_health_does_not(counter):
    from devplatform.standin import ADMIN_KEY_HEADER

    url = f"{counter.url}/_standin"
    for headers in ({}, {ADMIN_KEY_HEADER: ""}, {ADMIN_KEY_HEADER: "wrong"}, {"Authorization": counter.admin_key}):
        assert requests.get(f"{url}/calls", headers=headers, timeout=5).status_code == 401
        r = requests.post(f"{url}/faults", json={"status": 503}, headers=headers, timeout=5)
        assert r.status_code == 401 and ADMIN_KEY_HEADER in r.json()["detail"]
        assert requests.delete(f"{url}/faults", headers=headers, timeout=5).status_code == 401
    assert requests.post(f"{counter.url}/count", timeout=5).status_code == 200  # no fault was armed
    assert requests.get(f"{url}/health", timeout=5).status_code == 200  # open
    calls = requests.get(f"{url}/calls", headers=counter.admin_headers, timeout=5)
    assert calls.status_code == 200
    assert [c["path"] for c in calls.json()] == ["/count"]  # refused admin calls are not recorded


def test_a_fault_armed_over_http_with_the_key_applies(counter):
    armed = requests.post(f"{counter.url}/_standin/faults", json={"status": 503, "path": "/count"},
                          headers=counter.admin_headers, timeout=5)
    assert armed.status_code == 200
    assert requests.post(f"{counter.url}/count", timeout=5).status_code == 503
    assert requests.post(f"{counter.url}/count", timeout=5).json() == {"count": 1}
    counter.faults.add(status=500, times=5)  # the Python API needs no key
    assert requests.delete(f"{counter.url}/_standin/faults", headers=counter.admin_headers, timeout=5).status_code == 200
    assert requests.post(f"{counter.url}/count", timeout=5).json() == {"count": 2}


def test_make_start_hands_the_platform_admin_key_to_stand_ins_in_their_environment(tmp_path, monkeypatch):
    from devplatform.config import Secrets
    from devplatform.platform import LocalPlatform
    from devplatform.standin import ADMIN_KEY_ENV

    old = {"fernet_key": "f", "airflow_db_password": "p"}  # a secrets.json from before the key existed
    (tmp_path / "secrets.json").write_text(__import__("json").dumps(old))
    key = Secrets.load_or_create(tmp_path / "secrets.json", ["referral"]).standin_admin_key
    assert len(key) >= 32 and Secrets.load_or_create(tmp_path / "secrets.json", ["referral"]).standin_admin_key == key
    from devplatform.config import PlatformConfig

    platform = LocalPlatform(PlatformConfig(state=tmp_path, domains=["referral"], pg_port=45001, domain_redis_port=45002))
    monkeypatch.setattr(LocalPlatform, "env", lambda self: {"PATH": "/usr/bin"})
    # and the platform's own state folder and ports (a test's or a benchmark's platform is not make start's)
    assert platform.standin_env() == {"PATH": "/usr/bin", "PLATFORM_STATE_DIR": str(tmp_path.resolve()),
                                      "PLATFORM_PG_PORT": "45001", "PLATFORM_DOMAIN_REDIS_PORT": "45002",
                                      ADMIN_KEY_ENV: key}


def test_serve_standin_takes_the_admin_key_from_its_environment(monkeypatch):
    import argparse
    import os

    from devplatform import __main__ as cli
    from devplatform import config, settings, standin

    served = {}
    monkeypatch.setattr(config, "PlatformConfig", lambda: type("Cfg", (), {"settings_vars": lambda self: {}})())
    monkeypatch.setattr(settings, "load", lambda domain, values: {"standins": [
        {"name": "bullhorn", "app": "devplatform.standin:create_app", "port": 1, "kwargs": {"title": "bullhorn"}}]})
    monkeypatch.setattr(standin, "serve", lambda app, port, *a: served.update(app=app, port=port))
    monkeypatch.setenv(standin.ADMIN_KEY_ENV, "platform-key-" + secrets.token_hex(8))
    key = os.environ[standin.ADMIN_KEY_ENV]
    cli.cmd_serve_standin(argparse.Namespace(domain="referral", name="bullhorn", port=0))
    assert served["app"].state.admin_key == key
    assert standin.ADMIN_KEY_ENV not in os.environ  # not passed on to anything it starts
