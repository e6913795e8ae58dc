"""The looklyy database (``looklyy_postgres``, the seed's tables in ``migrations/``) and the
pipeline log. Open it with ``DATABASE.connect()`` (see :class:`shared.db.DomainDatabase`)."""

from __future__ import annotations

import json
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.db import DomainDatabase
from shared.lineage import record_postgres_io

DATABASE = DomainDatabase("looklyy", Path(__file__).parent / "migrations")


@contextmanager
def pipeline_step(run_id: str, step: str):
    """Record a step of a run in ``pipeline_logs`` (running -> success/failed, with details).

    Yields a dict the step fills with details; a rerun of the step overwrites its row.
    """
    details: dict[str, Any] = {}
    started = datetime.now(UTC)
    with closing(DATABASE.connect()) as conn:
        log_step(conn, run_id, step, "running", details, started, None)
        try:
            yield details
        except BaseException as exc:
            details["error"] = str(exc)[:500]
            log_step(conn, run_id, step, "failed", details, started, datetime.now(UTC))
            raise
        log_step(conn, run_id, step, "success", details, started, datetime.now(UTC))
    record_postgres_io(DATABASE.hook(), outputs=["pipeline_logs"])


def log_step(conn, run_id, step, status, details, started, finished) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO pipeline_logs (run_id, step, status, details, started_at, finished_at)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (run_id, step) DO UPDATE SET status = EXCLUDED.status,"
            " details = EXCLUDED.details, started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at",
            (run_id, step, status, json.dumps(details, default=str), started, finished))
    conn.commit()


def run_log(run_id: str) -> list[dict]:
    record_postgres_io(DATABASE.hook(), inputs=["pipeline_logs"])
    with closing(DATABASE.connect()) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT step, status, details, extract(epoch FROM finished_at - started_at)"
                        " FROM pipeline_logs WHERE run_id = %s ORDER BY started_at", (run_id,))
            return [{"step": s, "status": st, "details": d, "seconds": float(sec or 0)} for s, st, d, sec in cur.fetchall()]
