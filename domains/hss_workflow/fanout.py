"""Send many batches to a service with at most N requests in flight, from one task (asyncio).

One Airflow task, one event loop, one aiohttp session: ``max_in_flight`` requests at a time
(an ``asyncio.Semaphore``), not one task per request. A body is a JSON-able object, or JSON
already encoded (``bytes``/``str``: sent as is, so the event loop spends no time encoding it). Each batch is POSTed with its own
``Idempotency-Key`` (the run's key for the task plus the batch index: a retry of the task
resends the same keys, the service stores each batch once). Per batch, transient answers
are retried: 429 after its ``Retry-After`` (capped by ``retry_after_max``), 5xx, timeouts and
connection errors with exponential backoff; any other 4xx fails the whole fan-out with the
service's message. The connection's settings are JsonApiHook's (``auth_type``,
``api_key_header``, ``timeout``, ``max_attempts``, ``backoff_initial``, ``backoff_max``,
``retry_after_max``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.http import parse_retry_after

TRANSIENT = frozenset({408, 425, 429}) | frozenset(range(500, 600))


class FanOutError(Exception):
    """A batch failed for good (permanent answer, or transient faults past max_attempts)."""


@dataclass
class Endpoint:
    url: str
    headers: dict[str, str]
    timeout: float = 30.0
    max_attempts: int = 5
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 60.0

    @classmethod
    def from_connection(cls, conn_id: str, path: str) -> Endpoint:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
        extras = conn.extra_dejson
        host = conn.host or ""
        base = host if "://" in host else f"{conn.schema or 'http'}://{host}"
        if conn.port:
            base += f":{conn.port}"
        headers = {"Accept": "application/json"}
        auth_type = extras.get("auth_type", "basic")
        if auth_type == "api_key":
            headers[extras.get("api_key_header", "X-API-Key")] = conn.password or ""
        elif auth_type == "bearer":
            headers["Authorization"] = f"Bearer {conn.password or ''}"
        timeout = extras.get("timeout", 30)
        return cls(url=base.rstrip("/") + "/" + path.lstrip("/"), headers=headers,
                   timeout=float(max(timeout) if isinstance(timeout, list) else timeout),
                   max_attempts=int(extras.get("max_attempts", 5)),
                   backoff_initial=float(extras.get("backoff_initial", 0.5)),
                   backoff_max=float(extras.get("backoff_max", 30)),
                   retry_after_max=float(extras.get("retry_after_max", 60)))


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
    connector = aiohttp.TCPConnector(limit=max_in_flight)
    timeout = aiohttp.ClientTimeout(total=endpoint.timeout)

    async def one(session: aiohttp.ClientSession, i: int, body: Any) -> None:
        key = key_for(i)
        headers = {"Idempotency-Key": key} if key else {}
        if isinstance(body, bytes | str):  # already JSON (e.g. built by PostgreSQL): sent as it is
            payload: dict[str, Any] = {"data": body}
            headers["Content-Type"] = "application/json"
        else:
            payload = {"json": body}
        for attempt in range(1, endpoint.max_attempts + 1):
            wait, error, throttled = None, "", False
            async with gate:
                stats.in_flight += 1
                stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
                stats.attempts += 1
                try:
                    async with session.post(endpoint.url, **payload, headers=headers) as resp:
                        text = await resp.text()
                        if resp.status < 300:
                            stats.sent += 1
                            return
                        error = f"POST {endpoint.url.split('/', 3)[-1]} (batch {i}) answered {resp.status}: {text[:200]}"
                        if resp.status not in TRANSIENT:
                            raise FanOutError("/" + error)
                        throttled = resp.status == 429
                        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                        if retry_after is not None:
                            wait = min(retry_after, endpoint.retry_after_max)
                except (TimeoutError, aiohttp.ClientError) as exc:
                    error = f"batch {i}: {type(exc).__name__} {exc}".strip()
                finally:
                    stats.in_flight -= 1
            if throttled:
                stats.throttled += 1
            else:
                stats.transient_errors += 1
            if attempt == endpoint.max_attempts:
                raise FanOutError(f"{error} (gave up after {attempt} attempts)")
            if wait is None:
                wait = min(endpoint.backoff_initial * 2 ** (attempt - 1), endpoint.backoff_max)
                wait += random.uniform(0, endpoint.backoff_initial)
            await asyncio.sleep(wait)

    async with aiohttp.ClientSession(headers=endpoint.headers, timeout=timeout, connector=connector) as session:
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
    """:func:`post_all` on the service behind ``conn_id``, from synchronous code (a task)."""
    return asyncio.run(post_all(Endpoint.from_connection(conn_id, path), bodies, max_in_flight, key_for))
