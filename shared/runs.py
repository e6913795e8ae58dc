"""What identifies a run's unit of work, and the idempotency keys derived from it.

Dependency-free on purpose: DAG files and operators may import it at parse time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any


def _context(context: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if context is not None:
        return context
    try:
        from airflow.sdk import get_current_context

        return get_current_context()
    except Exception:  # not inside a running task
        return None


def run_key(context: Mapping[str, Any] | None = None) -> str | None:
    """What identifies a run's unit of work: its logical date when it has one (a rerun of the
    same logical date is the same work), else its run_id. None outside a task."""
    context = _context(context)
    if context is None:
        return None
    ti = context["ti"]
    logical_date = context.get("logical_date")
    return f"{ti.dag_id}@{logical_date.isoformat()}" if logical_date else f"{ti.dag_id}/{ti.run_id}"


def idempotency_key(context: Mapping[str, Any] | None = None, suffix: str = "") -> str | None:
    """A key stable across the retries and reruns of one task for one run (see ``run_key``),
    different for every other run. Uses the current task's context when none is given."""
    context = _context(context)
    if context is None:
        return None
    ti = context["ti"]
    raw = f"{run_key(context)}/{ti.task_id}/{getattr(ti, 'map_index', -1)}/{suffix}"
    return hashlib.sha256(raw.encode()).hexdigest()[:40]
