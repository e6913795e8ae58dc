"""ReviewCompletedTrigger: polls the Looklyy API on the triggerer until a review completes or
its deadline passes. The deadline is absolute, so a triggerer restart does not extend it;
the API key is read from the connection at run time, never stored in the trigger."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class ReviewCompletedTrigger(BaseTrigger):
    def __init__(self, session_id: str, deadline: float, started: float, conn_id: str = "looklyy_api",
                 poll_interval: float = 60.0) -> None:
        super().__init__()
        self.session_id, self.deadline, self.started = session_id, deadline, started
        self.conn_id, self.poll_interval = conn_id, poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("domains.looklyy.triggers.ReviewCompletedTrigger", {
            "session_id": self.session_id, "deadline": self.deadline, "started": self.started,
            "conn_id": self.conn_id, "poll_interval": self.poll_interval})

    def _event(self, status: str, **extra: Any) -> TriggerEvent:
        return TriggerEvent({"status": status, "session_id": self.session_id,
                             "waited_seconds": round(time.time() - self.started, 3), **extra})

    async def run(self):
        import httpx
        from airflow.sdk import BaseHook

        conn = await BaseHook.aget_connection(self.conn_id)
        base = conn.host if "://" in (conn.host or "") else f"{conn.schema or 'http'}://{conn.host}"
        if conn.port:
            base = f"{base}:{conn.port}"
        header = conn.extra_dejson.get("api_key_header", "X-API-Key")
        url = f"{base.rstrip('/')}/api/training/review-status"
        async with httpx.AsyncClient(headers={header: conn.password or ""}, timeout=30) as client:
            while True:
                try:
                    resp = await client.get(url, params={"session_id": self.session_id})
                    if resp.status_code == 200:
                        body = resp.json()
                        if body.get("status") == "completed":
                            yield self._event("completed", decisions=int(body.get("decisions", 0)))
                            return
                    elif resp.status_code in (401, 403, 404):
                        yield self._event("error", message=f"GET /api/training/review-status answered "
                                                            f"{resp.status_code}: {resp.text[:200]}")
                        return
                    else:
                        self.log.warning("review status answered %s; polling on", resp.status_code)
                except (httpx.HTTPError, ValueError) as exc:
                    self.log.warning("review status check failed (%s); polling on", type(exc).__name__)
                if time.time() >= self.deadline:
                    yield self._event("timed_out")
                    return
                await asyncio.sleep(min(self.poll_interval, max(0.0, self.deadline - time.time())))
