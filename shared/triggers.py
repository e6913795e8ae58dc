"""Deferrable waits on a JSON service: poll an endpoint on the triggerer until a field says done.

``HttpPollTrigger`` is what a task defers to when it waits on a long-running service call
(a review, a training job): no worker slot is held between polls, for hours if need be.

    self.defer(
        trigger=HttpPollTrigger(conn_id="looklyy_api", endpoint="/api/training/review-status",
                                params={"session_id": sid}, done_field="status", done_values=["completed"],
                                deadline=time.time() + 6 * 3600, poll_seconds=30),
        method_name="execute_complete",
        timeout=timedelta(hours=6, minutes=10),  # backstop if no triggerer ran the trigger at all
    )

The first poll comes one interval after the task deferred (``first_poll_at``, epoch seconds;
default ``time.time() + poll_seconds`` when the trigger is made, on the worker): the task has
just called or checked the service itself. This guard is the trigger's, so no operator can
forget it: it keeps the trigger from firing within moments of the deferral, which Airflow
3.3.2's scheduler mishandles: the
executor's late "success" for the worker that deferred, read after the resumed task instance
is queued again with the same try number, marks it ``up_for_retry``
(apache/airflow#72716, #71580). On the per-team CeleryExecutor a resumed task is also sent
again under its first Celery task id unless it names its executor, and that id's result is the
deferring exit's SUCCESS: ``platform_runtime.tenant_guard.pin_team_executor`` names it.

The trigger fires once, with one of:

- ``{"status": "done", "body": <last JSON body>, "polls": n, ...}`` when ``done_field``
  (a dotted path into the body) holds one of ``done_values``;
- ``{"status": "timed_out", "body": <last body or None>, "polls": n, "last_error": ...}``
  when ``deadline`` (epoch seconds) passes first;
- ``{"status": "error", "message": ...}`` on an answer that retrying cannot fix (401, 403,
  404, other 4xx, a connection that does not resolve): the task should fail with that message.

Transient faults (connection errors, timeouts, 408/425/429, 5xx, a truncated body) are retried
by the platform's one retry policy, ``ApiSettings.async_retrying`` (tenacity), with the poll's
deadline in place of an attempt limit: after ``Retry-After`` when the service sends one (capped
by the extra ``retry_after_max``, 60 s), else with exponential backoff from ``backoff_initial``
(0.5 s) up to ``backoff_max`` (30 s) and never beyond the poll interval.

The connection is read in :meth:`run`, on the triggerer, into the same
``shared.http.ApiSettings`` every HTTP client uses (``auth_type`` basic / api_key / bearer /
none, ``api_key_header``, ``timeout``, the backoff extras), and answers are classified by the
same ``shared.http.TRANSIENT_STATUS``; the serialized kwargs (stored in the metadata database)
hold only the connection id. Airflow 3.3's triggerer resolves only global connections (its
in-process Execution API has no task, hence no team): the local platform therefore gives
each team's triggerer (``airflow triggerer --team-name <team>``) its own team's connections
in its environment, as a deployment gives a team's workers theirs (``devplatform/platform.py``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
from airflow.triggers.base import BaseTrigger, TriggerEvent

from shared.http import EXCERPT, ApiSettings, PermanentApiError, TransientApiError, status_error


def field_at(body: Any, path: str) -> Any:
    """``field_at({"a": {"b": 1}}, "a.b") == 1``; None when any step is missing."""
    for part in path.split(".") if path else []:
        if not isinstance(body, dict) or part not in body:
            return None
        body = body[part]
    return body


class HttpPollTrigger(BaseTrigger):
    """Poll ``GET endpoint`` of connection ``conn_id`` until done or ``deadline``. See the module docstring."""

    def __init__(
        self,
        *,
        conn_id: str,
        endpoint: str,
        done_field: str,
        done_values: Sequence[Any],
        deadline: float,
        poll_seconds: float,
        params: dict[str, Any] | None = None,
        started: float | None = None,
        first_poll_at: float | None = None,
    ) -> None:
        super().__init__()
        self.conn_id, self.endpoint, self.params = conn_id, endpoint, dict(params or {})
        self.done_field, self.done_values = done_field, list(done_values)
        self.deadline, self.poll_seconds = float(deadline), float(poll_seconds)
        self.started = float(started if started is not None else time.time())
        # one interval after the deferral unless the task says otherwise (see the module's docstring)
        self.first_poll_at = float(first_poll_at if first_poll_at is not None else time.time() + self.poll_seconds)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "conn_id": self.conn_id,
                "endpoint": self.endpoint,
                "params": self.params,
                "done_field": self.done_field,
                "done_values": self.done_values,
                "deadline": self.deadline,
                "poll_seconds": self.poll_seconds,
                "started": self.started,
                "first_poll_at": self.first_poll_at,
            },
        )

    async def _settings(self) -> ApiSettings:
        from airflow.sdk import BaseHook

        conn = await BaseHook.aget_connection(self.conn_id)
        return ApiSettings.from_connection(conn, await conn.aextra_dejson())

    async def _poll(self, session: aiohttp.ClientSession, url: str) -> Any:
        where = f"GET {self.endpoint}"
        try:
            async with session.get(url, params=self.params) as resp:
                text = await resp.text()
                if resp.status >= 400:
                    raise status_error(where, resp.status, text, resp.headers.get("Retry-After"))
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransientApiError(f"{where}: {type(exc).__name__} {exc}".strip()) from None
        try:
            return json.loads(text)
        except ValueError:
            raise TransientApiError(f"{where}: body is not JSON: {text[:EXCERPT]}") from None

    async def _answer(self, session: aiohttp.ClientSession, url: str, settings: ApiSettings,
                      tally: dict[str, Any]) -> Any:
        """One poll's body, transient faults retried by the platform's one retry policy
        (``ApiSettings.async_retrying``) until the deadline, never waiting past the poll interval
        unless a Retry-After says so."""
        async for attempt in settings.async_retrying(until=self.deadline, backoff_cap=self.poll_seconds):
            with attempt:
                tally["polls"] += 1
                try:
                    return await self._poll(session, url)
                except TransientApiError as exc:
                    tally["last_error"] = str(exc)
                    raise
        raise AssertionError("unreachable: the retry policy re-raises the last error")  # pragma: no cover

    async def run(self) -> AsyncIterator[TriggerEvent]:
        base = {"started": self.started, "deadline": self.deadline}
        try:
            settings = await self._settings()
        except Exception as exc:  # a missing connection: say so instead of retrying for hours
            yield TriggerEvent({**base, "status": "error", "polls": 0,
                                "message": f"connection {self.conn_id!r}: {type(exc).__name__}: {exc}"})
            return
        url = settings.url(self.endpoint)
        tally: dict[str, Any] = {"polls": 0, "last_error": None}
        body = None
        await asyncio.sleep(max(0.0, min(self.first_poll_at, self.deadline) - time.time()))
        async with aiohttp.ClientSession(headers=settings.headers, auth=settings.aiohttp_auth(),
                                         timeout=settings.aiohttp_timeout()) as session:
            while time.time() < self.deadline:
                try:
                    body = await self._answer(session, url, settings, tally)
                except PermanentApiError as exc:
                    yield TriggerEvent({**base, "status": "error", "polls": tally["polls"], "message": str(exc)})
                    return
                except TransientApiError:  # still failing when the next try would pass the deadline
                    await asyncio.sleep(max(0.0, self.deadline - time.time()))
                    break
                if field_at(body, self.done_field) in self.done_values:
                    self.log.info("%s: done after %d poll(s)", self.endpoint, tally["polls"])
                    yield TriggerEvent({**base, "status": "done", "body": body, "polls": tally["polls"]})
                    return
                await asyncio.sleep(max(0.0, min(self.poll_seconds, self.deadline - time.time())))
        self.log.info("%s: not done after %d poll(s); deadline passed", self.endpoint, tally["polls"])
        yield TriggerEvent({**base, "status": "timed_out", "body": body, "polls": tally["polls"],
                            "last_error": tally["last_error"]})
