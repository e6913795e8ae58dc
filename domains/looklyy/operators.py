"""WaitForReviewOperator: waits for the admin review of a run's session on the triggerer
(deferrable: no worker slot is held while waiting). A timeout is not a failure: the
operator returns ``{"status": "timed_out"}`` and the pipeline carries on."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from shared.http import run_key

TIMEOUT_VAR = "looklyy_review_timeout_seconds"
POLL_VAR = "looklyy_review_poll_seconds"


class WaitForReviewOperator(BaseOperator):
    template_fields = ("session_id",)

    def __init__(self, *, session_id: str, conn_id: str = "looklyy_api", timeout_seconds: float | None = None,
                 poll_seconds: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.session_id, self.conn_id = session_id, conn_id
        self.timeout_seconds, self.poll_seconds = timeout_seconds, poll_seconds

    def execute(self, context) -> None:
        from airflow.sdk import Variable

        from domains.looklyy.triggers import ReviewCompletedTrigger

        timeout = self.timeout_seconds or float(Variable.get(TIMEOUT_VAR, default=str(6 * 3600)))
        poll = self.poll_seconds or float(Variable.get(POLL_VAR, default="60"))
        now = time.time()
        self.log.info("Waiting up to %.0f s for review %s (polling every %.0f s)", timeout, self.session_id, poll)
        self.defer(trigger=ReviewCompletedTrigger(self.session_id, deadline=now + timeout, started=now,
                                                  conn_id=self.conn_id, poll_interval=poll),
                   method_name="execute_complete", timeout=timedelta(seconds=timeout + 600))

    def execute_complete(self, context, event: dict[str, Any]) -> dict[str, Any]:
        from domains.looklyy.db import connect, log_step

        if event["status"] == "error":
            raise AirflowFailException(event["message"])
        finished = datetime.now(UTC)
        conn = connect()
        try:
            log_step(conn, run_key(context), self.task_id, "success", event,
                 finished - timedelta(seconds=event["waited_seconds"]), finished)
        finally:
            conn.close()
        self.log.info("Review %s: %s", event["session_id"], event["status"])
        return event
