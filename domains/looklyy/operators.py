"""WaitForReviewOperator: waits for the admin review of a run's session on the team's triggerer.

``execute`` reads the wait (``looklyy_review_timeout_seconds``, default 6 h, counted from the
session's opening, and ``looklyy_review_poll_seconds``), checks the review once and, unless it
is already completed or past its deadline, defers to ``shared.triggers.HttpPollTrigger``,
which polls ``GET /api/training/review-status`` from the looklyy triggerer (first poll one
interval later) until the review is completed or the deadline passes: no worker slot is held
for the whole wait. The task
comes back to a worker once, in :meth:`WaitForReviewOperator.execute_complete`, to record
the outcome. A timeout is not a failure: the operator returns ``{"status": "timed_out"}``
and the pipeline carries on with the previous learning patterns; an answer that retrying
cannot fix (a wrong API key: 401) fails the task with the service's message.

Timeouts: in Airflow 3.3 ``execution_timeout`` bounds only the time on a worker (the task
runner does not apply it to a deferral), so the wait itself is bounded twice: by the
trigger's deadline (it fires ``timed_out``), and by the deferral timeout, the deadline plus
``DEFERRAL_MARGIN``, a backstop for when no triggerer ran the trigger. The worker parts are
short; their ``execution_timeout`` stays the platform's.
"""

from __future__ import annotations

import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator

from shared.lineage import LineageMixin, record_http_io, record_postgres_io
from shared.runs import run_key
from shared.triggers import HttpPollTrigger

TIMEOUT_VAR = "looklyy_review_timeout_seconds"
POLL_VAR = "looklyy_review_poll_seconds"
DEFAULT_TIMEOUT = 6 * 3600
DEFERRAL_MARGIN = timedelta(minutes=10)
REVIEW_STATUS = "/api/training/review-status"


class WaitForReviewOperator(LineageMixin, BaseOperator):
    """Wait for review ``session_id``; the deadline is ``opened_at`` (epoch seconds when the
    session was opened, from the task that opened it) plus the timeout, so a retry of the wait
    keeps the original deadline instead of starting a new one."""

    template_fields = ("session_id", "opened_at")

    def __init__(self, *, session_id: str, opened_at: float | str | None = None, conn_id: str = "looklyy_api",
                 timeout_seconds: float | None = None, poll_seconds: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.session_id, self.opened_at, self.conn_id = session_id, opened_at, conn_id
        self.timeout_seconds, self.poll_seconds = timeout_seconds, poll_seconds

    def execute(self, context) -> dict[str, Any] | None:
        from airflow.sdk import Variable

        from domains.looklyy.api import LooklyyApiHook

        timeout = self.timeout_seconds or float(Variable.get(TIMEOUT_VAR, default=str(DEFAULT_TIMEOUT)))
        poll = self.poll_seconds or float(Variable.get(POLL_VAR, default="60"))
        now = time.time()
        started = float(self.opened_at) if self.opened_at not in (None, "", "None") else now
        deadline = started + timeout
        # One check here before deferring: a review already completed (or a deadline already
        # passed, on a retry) ends the wait without a deferral, and the trigger's first poll
        # comes one interval later (see shared.triggers on why it must not fire at once).
        status = LooklyyApiHook(conn_id=self.conn_id).review_status(self.session_id)
        if status.status == "completed":
            return self._finish(context, {"status": "completed", "decisions": status.decisions, "polls": 1}, started)
        if now >= deadline:
            return self._finish(context, {"status": "timed_out", "polls": 1}, started)
        self.log.info("Waiting up to %.0f s more for review %s (checking every %.0f s on the triggerer)",
                      deadline - now, self.session_id, poll)
        self.defer(
            trigger=HttpPollTrigger(
                conn_id=self.conn_id, endpoint=REVIEW_STATUS, params={"session_id": self.session_id},
                done_field="status", done_values=["completed"], deadline=deadline, poll_seconds=poll,
                started=started,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=deadline - now) + DEFERRAL_MARGIN,
        )
        return None

    def execute_complete(self, context, event: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        if event["status"] == "error":
            raise AirflowFailException(f"review {self.session_id}: {event['message']}")
        outcome: dict[str, Any] = {"status": "timed_out"}
        if event["status"] == "done":
            outcome = {"status": "completed", "decisions": event["body"]["decisions"]}
        elif event.get("last_error"):
            outcome["last_error"] = event["last_error"]
        return self._finish(context, {**outcome, "polls": 1 + event["polls"]}, event["started"])

    def _finish(self, context, outcome: dict[str, Any], started: float) -> dict[str, Any]:
        from domains.looklyy.db import DATABASE, log_step

        event = {**outcome, "session_id": self.session_id, "waited_seconds": round(time.time() - started, 3)}
        finished = datetime.now(UTC)
        with closing(DATABASE.connect()) as conn:
            log_step(conn, run_key(context), self.task_id, "success", event,
                     finished - timedelta(seconds=event["waited_seconds"]), finished)
        # Lineage is recorded in the process that finishes the task (after a deferral, a new one).
        from domains.looklyy.api import LooklyyApiHook

        record_http_io(LooklyyApiHook(conn_id=self.conn_id), inputs=[REVIEW_STATUS])
        record_postgres_io(DATABASE.hook(), outputs=["pipeline_logs"])
        self.log.info("Review %s: %s after %d poll(s)", self.session_id, event["status"], event["polls"])
        return event
