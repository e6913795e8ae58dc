"""WaitForReviewOperator: waits for the admin review of a run's session, deferrable.

Between checks the task is deferred to a timer on its team's triggerer, so no worker slot
is held while waiting. Each check runs in the worker, where the team's ``looklyy_api``
connection resolves (Airflow 3.3's triggerer cannot resolve team-scoped connections, and
a secret passed in trigger kwargs would be readable through the task-instance API).
The deadline is absolute and kept in the task's XCom (``review_wait``), which survives
resumes and triggerer restarts (``dag.test()`` drops deferral kwargs). A timeout is not a
failure: the operator returns ``{"status": "timed_out"}`` and the pipeline carries on.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator

from shared.runs import run_key

TIMEOUT_VAR = "looklyy_review_timeout_seconds"
POLL_VAR = "looklyy_review_poll_seconds"


class WaitForReviewOperator(BaseOperator):
    template_fields = ("session_id",)

    def __init__(self, *, session_id: str, conn_id: str = "looklyy_api", timeout_seconds: float | None = None,
                 poll_seconds: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.session_id, self.conn_id = session_id, conn_id
        self.timeout_seconds, self.poll_seconds = timeout_seconds, poll_seconds

    def execute(self, context) -> dict[str, Any] | None:
        from airflow.sdk import Variable

        timeout = self.timeout_seconds or float(Variable.get(TIMEOUT_VAR, default=str(6 * 3600)))
        poll = self.poll_seconds or float(Variable.get(POLL_VAR, default="60"))
        started = time.time()
        self.log.info("Waiting up to %.0f s for review %s (checking every %.0f s)", timeout, self.session_id, poll)
        context["ti"].xcom_push(key="review_wait", value={"deadline": started + timeout, "started": started, "poll": poll})
        return self.check(context)

    def check(self, context, event: Any = None) -> dict[str, Any] | None:
        from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

        from domains.looklyy.api import LooklyyApiHook

        wait = context["ti"].xcom_pull(task_ids=self.task_id, key="review_wait")
        deadline, started, poll = wait["deadline"], wait["started"], wait["poll"]
        status = LooklyyApiHook(self.conn_id).review_status(self.session_id)
        now = time.time()
        if status.status == "completed":
            return self._finish(context, {"status": "completed", "decisions": status.decisions}, started)
        if now >= deadline:
            return self._finish(context, {"status": "timed_out"}, started)
        self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=min(poll, deadline - now))), method_name="check")
        return None

    def _finish(self, context, outcome: dict[str, Any], started: float) -> dict[str, Any]:
        from domains.looklyy.db import DATABASE, log_step

        event = {**outcome, "session_id": self.session_id, "waited_seconds": round(time.time() - started, 3)}
        finished = datetime.now(UTC)
        conn = DATABASE.connect()
        try:
            log_step(conn, run_key(context), self.task_id, "success", event,
                     finished - timedelta(seconds=event["waited_seconds"]), finished)
        finally:
            conn.close()
        self.log.info("Review %s: %s", self.session_id, event["status"])
        return event
