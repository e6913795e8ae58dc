"""Send many batches to a service with at most N requests in flight, from one task (asyncio).

One Airflow task, one event loop, one aiohttp session: ``max_in_flight`` requests at a time
(an ``asyncio.Semaphore``), not one task per request. A body is a JSON-able object, or JSON
already encoded (``bytes``/``str``: sent as is, so the event loop spends no time encoding it). Each batch is POSTed with its own
``Idempotency-Key`` (the run's key for the task plus the batch index: a retry of the task
resends the same keys, the service stores each batch once). The service is the platform's
one HTTP client's (``shared.http.ApiSettings``: the connection's auth, basic included,
headers and timeout), and so are what is transient and the retry policy: per batch, 408,
425, 429 (after its ``Retry-After``, capped by ``retry_after_max``), 5xx, timeouts and
connection errors are retried with exponential backoff (``ApiSettings.async_retrying``);
any other 4xx fails the whole fan-out with the service's message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.http import ApiError, ApiSettings, TransientApiError, status_error


class FanOutError(Exception):
    """A batch failed for good (permanent answer, or transient faults past max_attempts)."""


@dataclass
class Endpoint:
    url: str
    settings: ApiSettings

    @classmethod
    def from_connection(cls, conn_id: str, path: str) -> Endpoint:
        from airflow.sdk import BaseHook

        settings = ApiSettings.from_connection(BaseHook.get_connection(conn_id))
        return cls(settings.url(path), settings)

    @property
    def resource(self) -> str:
        """The URL as a lineage dataset names it (``shared.lineage.http_resource``)."""
        from shared.lineage import http_resource

        return http_resource(None, self.url)


@dataclass
class FanOutStats:
    sent: int = 0
    attempts: int = 0
    throttled: int = 0  # 429 answers
    transient_errors: int = 0
    peak_in_flight: int = 0
    seconds: float = 0.0
    in_flight: int = field(default=0, repr=False)

    def summary(self) -> dict[str, Any]:
        return {"batches": self.sent, "attempts": self.attempts, "throttled": self.throttled,
                "transient_errors": self.transient_errors, "peak_in_flight": self.peak_in_flight,
                "seconds": round(self.seconds, 3)}


async def post_all(endpoint: Endpoint, bodies: Sequence[Any], max_in_flight: int,
                   key_for: Callable[[int], str | None] = lambda i: None) -> FanOutStats:
    """POST every body to ``endpoint``, at most ``max_in_flight`` at a time. See the module docstring."""
    import aiohttp

    stats = FanOutStats()
    gate = asyncio.Semaphore(max_in_flight)
    started = time.monotonic()
    settings = endpoint.settings
    connector = aiohttp.TCPConnector(limit=max_in_flight)
    path = "/" + endpoint.url.split("/", 3)[-1]

    async def attempt_once(session: aiohttp.ClientSession, i: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
        error: ApiError
        async with gate:  # held while the request is in flight, never while waiting to retry
            stats.in_flight += 1
            stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
            stats.attempts += 1
            try:
                async with session.post(endpoint.url, **payload, headers=headers) as resp:
                    text = await resp.text()
                    if resp.status < 300:
                        stats.sent += 1
                        return
                    error = status_error(f"POST {path} (batch {i})", resp.status, text, resp.headers.get("Retry-After"))
            except (TimeoutError, aiohttp.ClientError) as exc:
                error = TransientApiError(f"batch {i}: {type(exc).__name__} {exc}".strip())
            finally:
                stats.in_flight -= 1
        if isinstance(error, TransientApiError):
            if error.status == 429:
                stats.throttled += 1
            else:
                stats.transient_errors += 1
        raise error

    async def one(session: aiohttp.ClientSession, i: int, body: Any) -> None:
        key = key_for(i)
        headers = {"Idempotency-Key": key} if key else {}
        if isinstance(body, bytes | str):  # already JSON (e.g. built by PostgreSQL): sent as it is
            payload: dict[str, Any] = {"data": body}
            headers["Content-Type"] = "application/json"
        else:
            payload = {"json": body}
        try:
            async for attempt in settings.async_retrying():
                with attempt:
                    await attempt_once(session, i, payload, headers)
        except TransientApiError as exc:
            raise FanOutError(f"{exc} (gave up after {settings.max_attempts} attempts)") from None
        except ApiError as exc:
            raise FanOutError(str(exc)) from None

    async with aiohttp.ClientSession(headers=settings.headers, auth=settings.aiohttp_auth(),
                                     timeout=settings.aiohttp_timeout(), connector=connector) as session:
        tasks = [asyncio.create_task(one(session, i, body)) for i, body in enumerate(bodies)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
    stats.seconds = time.monotonic() - started
    return stats


def post_batches(conn_id: str, path: str, bodies: Sequence[Any], max_in_flight: int,
                 key_for: Callable[[int], str | None] = lambda i: None) -> FanOutStats:
    """:func:`post_all` on the service behind ``conn_id``, from synchronous code (a task); the
    resource it wrote is reported through hook lineage (``shared.lineage``) once all are sent."""
    from shared.lineage import record_io

    endpoint = Endpoint.from_connection(conn_id, path)
    stats = asyncio.run(post_all(endpoint, bodies, max_in_flight, key_for))
    record_io(endpoint, outputs=[endpoint.resource])
    return stats
