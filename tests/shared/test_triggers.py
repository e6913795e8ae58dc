"""shared.triggers.HttpPollTrigger against a real HTTP stand-in, run as the triggerer runs it."""

from __future__ import annotations

import asyncio
import json
import time

from fastapi import Header, HTTPException

from conftest import set_connection
from devplatform.standin import create_app
from shared.triggers import HttpPollTrigger, field_at

KEY = "poll-secret-key-123"


def job_app():
    """A job service: ``GET /jobs/{id}`` answers ``running`` until the ``done_after``-th call."""
    app = create_app("jobs")
    app.state.done_after = 3
    app.state.seen = 0

    @app.get("/jobs/{job_id}")
    def job(job_id: str, x_api_key: str | None = Header(None)):
        if x_api_key != KEY:
            raise HTTPException(401, "bad API key")
        app.state.seen += 1
        done = app.state.done_after is not None and app.state.seen >= app.state.done_after
        return {"job": {"id": job_id, "state": "finished" if done else "running"}}

    return app


def make(server, **kw) -> HttpPollTrigger:
    set_connection("jobs_api", conn_type="http", host=server.url, password=KEY,
                   extra={"auth_type": "api_key", "api_key_header": "X-API-Key", "timeout": 0.5,
                          "backoff_initial": 0.01, "backoff_max": 0.05})
    args = dict(conn_id="jobs_api", endpoint="/jobs/42", done_field="job.state", done_values=["finished"],
                deadline=time.time() + 20, poll_seconds=0.05)
    args.update(kw)
    return HttpPollTrigger(**args)


def events(trigger: HttpPollTrigger) -> list[dict]:
    async def collect():
        return [e.payload async for e in trigger.run()]

    return asyncio.run(collect())


def test_done_after_several_polls(standin):
    server = standin(job_app())
    [event] = events(make(server))
    assert event["status"] == "done" and event["polls"] == 3
    assert event["body"] == {"job": {"id": "42", "state": "finished"}}
    assert len(server.faults.calls_to("/jobs/42")) == 3


def test_deadline_passes_first(standin):
    server = standin(job_app())
    server.app.state.done_after = None
    t0 = time.time()
    [event] = events(make(server, deadline=t0 + 0.6, poll_seconds=0.1))
    assert event["status"] == "timed_out" and event["body"]["job"]["state"] == "running"
    assert 0.6 <= time.time() - t0 < 5
    assert event["polls"] == len(server.faults.calls_to("/jobs/42")) >= 3


def test_5xx_429_with_retry_after_and_timeouts_are_retried_in_the_loop(standin):
    server = standin(job_app())
    server.app.state.done_after = 1
    server.faults.add(status=503, times=1, path="/jobs")
    server.faults.add(status=429, retry_after=0.3, times=1, path="/jobs")
    server.faults.add(hang=1.5, times=1, path="/jobs")  # longer than the connection's 0.5 s timeout
    t0 = time.time()
    [event] = events(make(server))
    assert event["status"] == "done" and event["polls"] == 4
    calls = server.faults.calls_to("/jobs/42")
    assert [c.status for c in calls[:2]] == [503, 429] and calls[3].status == 200
    assert calls[2].at - calls[1].at >= 0.3  # Retry-After honoured
    assert time.time() - t0 < 10


def test_401_fails_clearly_without_retrying(standin):
    server = standin(job_app())
    trigger = make(server)
    set_connection("jobs_api", conn_type="http", host=server.url, password="wrong",
                   extra={"auth_type": "api_key", "api_key_header": "X-API-Key"})
    [event] = events(trigger)
    assert event["status"] == "error" and event["polls"] == 1
    assert event["message"].startswith("GET /jobs/42 answered 401:") and "bad API key" in event["message"]
    assert len(server.faults.calls_to("/jobs/42")) == 1


def test_missing_connection_is_an_error_event():
    trigger = HttpPollTrigger(conn_id="no_such_conn", endpoint="/x", done_field="s", done_values=["ok"],
                              deadline=time.time() + 5, poll_seconds=1)
    [event] = events(trigger)
    assert event["status"] == "error" and "no_such_conn" in event["message"]


def test_serialized_kwargs_hold_no_secret_and_round_trip(standin):
    server = standin(job_app())
    trigger = make(server, params={"verbose": "1"})
    classpath, kwargs = trigger.serialize()
    assert classpath == "shared.triggers.HttpPollTrigger"
    assert KEY not in json.dumps(kwargs) and server.url not in json.dumps(kwargs)
    again = HttpPollTrigger(**kwargs)
    assert again.serialize() == (classpath, kwargs)


def test_field_at():
    assert field_at({"a": {"b": 1}}, "a.b") == 1
    assert field_at({"a": 1}, "a.b") is None
    assert field_at({"a": 1}, "x") is None


def test_no_poll_before_first_poll_at(standin):
    server = standin(job_app())
    server.app.state.done_after = 1
    first = time.time() + 0.5
    [event] = events(make(server, first_poll_at=first))
    assert event["status"] == "done" and event["polls"] == 1
    [call] = server.faults.calls_to("/jobs/42")
    assert call.at >= first  # a lower bound only: asyncio.sleep never wakes early


def test_the_first_poll_waits_one_interval_unless_told_otherwise(standin):
    """The guard is the trigger's: made without ``first_poll_at`` (hss's training wait), it still
    never polls within moments of the deferral (apache/airflow#72716), and it survives serialization."""
    server = standin(job_app())
    server.app.state.done_after = 1
    made = time.time()
    trigger = make(server, poll_seconds=0.6)
    assert made + 0.6 <= trigger.first_poll_at <= time.time() + 0.6
    _, kwargs = trigger.serialize()
    [event] = events(HttpPollTrigger(**kwargs))
    assert event["status"] == "done" and event["polls"] == 1
    [call] = server.faults.calls_to("/jobs/42")
    assert call.at >= made + 0.6


def test_first_poll_at_past_the_deadline_times_out_without_polling(standin):
    server = standin(job_app())
    now = time.time()
    [event] = events(make(server, deadline=now + 0.2, first_poll_at=now + 60))
    assert event["status"] == "timed_out" and event["polls"] == 0
    assert server.faults.calls_to("/jobs/42") == []
