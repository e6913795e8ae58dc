"""The bounded fan-out against the training stand-in: limits, lost answers, permanent errors."""

from __future__ import annotations

import asyncio

import pytest

from domains.hss_workflow.fanout import Endpoint, FanOutError, post_all
from domains.hss_workflow.local.training import create_training_app
from shared.http import ApiSettings

KEY = "k-test"


def batches(n: int) -> list[dict]:
    return [{"training_id": "t", "batch_index": i, "rows": [{"song_id": f"s{i}", "is_hit": 1, "features": {"x": 1.0}}]}
            for i in range(n)]


def endpoint(server, **kw) -> Endpoint:
    settings = ApiSettings(server.url, {"X-API-Key": KEY},
                           **{"timeout": 1.0, "backoff_initial": 0.01, "backoff_max": 0.05, "retry_after_max": 0.1, **kw})
    return Endpoint(settings.url("/train/smart_ensemble/batches"), settings)


def test_in_flight_never_exceeds_the_bound_and_429s_are_waited_out(standin):
    server = standin(create_training_app(api_key=KEY, max_concurrent=2, latency=0.05))
    stats = asyncio.run(post_all(endpoint(server, max_attempts=20), batches(12), 4, key_for=lambda i: f"key-{i}"))
    assert stats.sent == 12 and stats.peak_in_flight <= 4 and stats.throttled > 0
    assert server.app.state.training["load"]["peak"] <= 2
    assert sorted(server.app.state.training["batches"]["t"]) == list(range(12))


def test_a_lost_answer_is_resent_with_the_same_key_and_stored_once(standin):
    server = standin(create_training_app(api_key=KEY))
    server.faults.add(hang=2, times=1, path="/train/smart_ensemble/batches")
    stats = asyncio.run(post_all(endpoint(server), batches(3), 3, key_for=lambda i: f"key-{i}"))
    assert stats.sent == 3 and stats.transient_errors == 1
    calls = server.faults.calls_to("/train/smart_ensemble/batches")
    assert len(calls) == 4 and sorted(c.idempotency_key for c in calls).count(calls[0].idempotency_key) == 2
    assert server.app.state.work["/train/smart_ensemble/batches"] == 3


def test_a_permanent_error_fails_naming_the_batch_and_status(standin):
    server = standin(create_training_app(api_key=KEY))
    server.faults.add(status=400, times=1, path="/train/smart_ensemble/batches")
    with pytest.raises(FanOutError, match=r"batch \d\) answered 400"):
        asyncio.run(post_all(endpoint(server), batches(3), 1))


def test_a_batch_breaking_the_contract_is_refused_with_422_naming_the_field(standin):
    server = standin(create_training_app(api_key=KEY))
    bad = batches(2)
    bad[1]["rows"][0]["is_hit"] = 2
    with pytest.raises(FanOutError, match=r"batch 1\) answered 422: .*is_hit"):
        asyncio.run(post_all(endpoint(server), bad, 1))
    assert server.app.state.training["batches"]["t"].keys() == {0}
