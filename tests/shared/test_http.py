"""shared.http against a real stand-in server with injected faults."""

from __future__ import annotations

import threading

import pytest
from fastapi import Request

from conftest import set_connection
from shared.http import JsonApiHook, PermanentApiError, TransientApiError, idempotency_key
from tests.catalog_standin import create_catalog_app


@pytest.fixture
def catalog(standin):
    server = standin(create_catalog_app(items=25))
    set_connection(
        "catalog_api", conn_type="http", host=server.url, password="test-key",
        extra={"auth_type": "api_key", "api_key_header": "X-API-Key", "backoff_initial": 0.01, "backoff_max": 0.05,
               "timeout": 1},
    )
    return server


def hook(sleeps=None) -> JsonApiHook:
    return JsonApiHook("catalog_api", sleep=(sleeps.append if sleeps is not None else None))


def test_paginate_streams_pages_until_total(catalog):
    pages = list(hook().paginate("/items", page_size=10))
    assert [p.count for p in pages] == [10, 10, 5]
    assert [r["id"] for p in pages for r in p.data] == list(range(1, 26))
    assert len(catalog.faults.calls_to("/items")) == 3


def test_5xx_is_retried_until_success(catalog):
    catalog.faults.add(status=503, times=2)
    body = hook().get_json("/items", params={"count": 5})
    assert body["count"] == 5
    assert [c.status for c in catalog.faults.calls_to("/items")] == [503, 503, 200]


def test_gives_up_after_max_attempts_with_a_clear_error(catalog):
    catalog.faults.add(status=500, times=10)
    with pytest.raises(TransientApiError, match=r"GET /items answered 500"):
        hook().get_json("/items")
    assert len(catalog.faults.calls_to("/items")) == 5  # default max_attempts


def test_429_honours_retry_after(catalog):
    catalog.faults.add(status=429, retry_after=2, times=1)
    sleeps: list[float] = []
    hook(sleeps).get_json("/items")
    assert sleeps == [2.0]


def test_retry_after_is_capped(catalog):
    catalog.faults.add(status=429, retry_after=3600, times=1)
    sleeps: list[float] = []
    hook(sleeps).get_json("/items")
    assert sleeps == [60.0]


def test_4xx_fails_at_once_naming_method_path_status_and_no_secret(catalog):
    with pytest.raises(PermanentApiError) as err:
        hook().post_json("/orders", {"qty": 1})
    msg = str(err.value)
    assert "POST /orders answered 400" in msg and "item_id is required" in msg
    assert "test-key" not in msg
    assert len(catalog.faults.calls_to("/orders")) == 1


def test_wrong_credentials_are_a_permanent_401(catalog):
    set_connection("catalog_api", conn_type="http", host=catalog.url, password="wrong",
                   extra={"auth_type": "api_key", "api_key_header": "X-API-Key"})
    with pytest.raises(PermanentApiError, match="answered 401"):
        hook().get_json("/items")


def test_timeout_is_retried(standin):
    """The first request is held by the server until the test lets it go: the client's read
    timeout, not a race between a sleep and a timeout, decides the retry."""
    from devplatform.standin import create_app

    got_first, release = threading.Event(), threading.Event()
    seen: list[bool] = []  # per request: was the first one still held when it arrived?
    app = create_app("slow")

    @app.get("/items")
    def items():  # a sync route: FastAPI runs it in a worker thread, so waiting blocks only this request
        seen.append(got_first.is_set() and not release.is_set())
        if not got_first.is_set():
            got_first.set()
            release.wait(60)
            return {"total": -1}
        return {"total": 25}

    server = standin(app)
    set_connection("slow_api", conn_type="http", host=server.url, password="k",
                   extra={"auth_type": "api_key", "backoff_initial": 0.01, "timeout": [5, 1]})
    try:
        assert JsonApiHook("slow_api").get_json("/items")["total"] == 25
    finally:
        release.set()
    assert seen[0] is False and len(seen) >= 2 and all(seen[1:])  # retried while the first was still unanswered


def test_malformed_body_is_retried(catalog):
    catalog.faults.add(malformed=True, times=1)
    assert hook().get_json("/items")["total"] == 25


def test_malformed_body_every_time_says_so(catalog):
    catalog.faults.add(malformed=True, times=10)
    with pytest.raises(TransientApiError, match="body is not JSON"):
        hook().get_json("/items")


def test_fraction_of_calls_failing_is_survived(catalog):
    catalog.faults.add(status=503, fraction=0.3, seed=7)
    pages = list(hook().paginate("/items", page_size=5))
    assert sum(p.count for p in pages) == 25
    assert any(c.status == 503 for c in catalog.faults.calls)


def test_validation_error_names_the_field(catalog):
    from pydantic import BaseModel

    class Order(BaseModel):
        order_id: int
        sku: str

    with pytest.raises(PermanentApiError, match=r"POST /orders: unexpected response body \(sku: Field required\)"):
        hook().post_json("/orders", {"item_id": 3}, model=Order)


class _TI:
    dag_id, run_id, task_id, map_index = "d", "manual__1", "t", -1


def test_run_key_is_the_logical_date_when_there_is_one():
    import pendulum

    from shared.http import run_key

    when = pendulum.datetime(2026, 11, 20, 2, tz="UTC")
    assert run_key({"ti": _TI(), "logical_date": when}) == "d@2026-11-20T02:00:00+00:00"
    assert run_key({"ti": _TI(), "logical_date": None}) == "d/manual__1"


def test_idempotency_key_is_stable_across_retries_and_runs_differ(catalog, monkeypatch):
    import shared.http as http

    context = {"ti": _TI()}
    monkeypatch.setattr(http, "idempotency_key", lambda context_=None, suffix="": idempotency_key(context, suffix))
    catalog.faults.add(status=503, times=2, path="/orders")
    hook().post_json("/orders", {"item_id": 1})
    keys = {c.idempotency_key for c in catalog.faults.calls_to("/orders")}
    assert len(catalog.faults.calls_to("/orders")) == 3 and len(keys) == 1 and None not in keys
    other = _TI()
    other.run_id = "manual__2"
    assert idempotency_key({"ti": other}, "POST /orders") != keys.pop()


@pytest.mark.parametrize(
    "extra, login, header, expected",
    [
        ({"auth_type": "bearer"}, None, "authorization", "Bearer s3cret"),
        ({"auth_type": "api_key", "api_key_header": "X-Token"}, None, "x-token", "s3cret"),
        ({}, "user", "authorization", "Basic dXNlcjpzM2NyZXQ="),
    ],
)
def test_auth_comes_from_the_connection(standin, extra, login, header, expected):
    from devplatform.standin import create_app

    app = create_app("echo")

    @app.get("/echo")
    def echo(request: Request):
        return {"value": request.headers.get(header)}

    server = standin(app)
    set_connection("echo_api", conn_type="http", host=server.url, login=login, password="s3cret", extra=extra)
    assert JsonApiHook("echo_api").get_json("/echo")["value"] == expected


def test_own_extras_are_settings_not_headers_and_other_extras_are_headers(standin):
    from devplatform.standin import create_app

    app = create_app("echo")

    @app.get("/headers")
    def headers(request: Request):
        return dict(request.headers)

    server = standin(app)
    set_connection("echo_api", conn_type="http", host=server.url, login="user", password="s3cret",
                   extra={"auth_type": "bearer", "max_attempts": 2, "backoff_initial": 0.01, "timeout": 5,
                          "X-Team": "referral"})
    got = JsonApiHook("echo_api").get_json("/headers")
    assert got["x-team"] == "referral" and got["authorization"] == "Bearer s3cret"  # bearer, not the login's basic auth
    assert not {"auth_type", "max_attempts", "backoff_initial", "timeout"} & set(got), got
