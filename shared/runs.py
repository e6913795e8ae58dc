"""What a run works on: its window, its identity, and the idempotency keys derived from them.

Every domain gets a run's window from here (:class:`RunWindow`), never by reading
``data_interval_*`` or ``logical_date`` from the context by hand: Airflow 3 gives a run
triggered without a logical date (REST ``{"logical_date": null}``, the UI's Trigger button
without a date, ``airflow dags trigger``) neither a logical date nor a data interval, and
those context keys are then missing altogether.

Dependency-free at import on purpose: DAG files and operators may import it at parse time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any


def _context(context: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if context is not None:
        return context
    try:
        from airflow.sdk import get_current_context

        return get_current_context()
    except Exception:  # not inside a running task
        return None


def _utc(value: Any) -> datetime:
    """A plain UTC ``datetime`` (pendulum's ``replace()`` drops the zone; strings are ISO)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return datetime.fromtimestamp(value.timestamp(), UTC)


def last_complete_interval(timetable: Any, run_after: datetime) -> tuple[datetime, datetime]:
    """The last complete interval of a DAG's schedule at ``run_after``: what a run without a
    data interval works on.

    - A cron schedule (a plain cron string, Airflow 3's ``CronTriggerTimetable``, or a
      ``CronDataIntervalTimetable``): ``[previous tick, last tick]`` where the last tick is the
      latest at or before ``run_after``, exactly what Airflow's ``infer_manual_data_interval``
      gives a manual run of a data-interval cron schedule. A run at 10:30 of a
      ``0 */6 * * *`` DAG covers ``[00:00, 06:00]``, so it does the same work as the
      scheduled 06:00 run (same ``as_of``, same day).
    - Any other timetable with ``infer_manual_data_interval`` (Airflow's core timetables): its answer.
    - No schedule, assets, or anything else: the instant ``[run_after, run_after]``.
    """
    import pendulum

    after = pendulum.instance(_utc(run_after))
    expression = getattr(timetable, "expression", None)  # the Task SDK's cron timetables
    if isinstance(expression, str):
        from airflow.timetables.interval import CronDataIntervalTimetable

        interval = CronDataIntervalTimetable(expression, timetable.timezone).infer_manual_data_interval(run_after=after)
        return _utc(interval.start), _utc(interval.end)
    infer = getattr(timetable, "infer_manual_data_interval", None)
    if infer is not None:
        interval = infer(run_after=after)
        return _utc(interval.start), _utc(interval.end)
    return _utc(after), _utc(after)


@dataclass(frozen=True)
class RunWindow:
    """A DAG run's identity and the window ``[start, end]`` of data it works on (UTC).

    The window is the run's data interval when it has one (a scheduled run, a manual run
    given a logical date, ``dag.test()``), else the last complete interval of the DAG's
    schedule at the time it was triggered (:func:`last_complete_interval`; ``inferred`` is
    True). ``as_of`` is the window's end: what a snapshot taken by the run is "as of".
    ``run_after`` is the time the window was inferred at (None for a run with a data interval),
    so that a domain can adjust an inferred window (``dataclasses.replace``) without reading
    the task's context again.
    """

    dag_id: str
    run_id: str
    start: datetime
    end: datetime
    logical_date: datetime | None = None
    inferred: bool = False
    run_after: datetime | None = None

    @property
    def as_of(self) -> datetime:
        return self.end

    @property
    def day(self) -> date:
        """The day a daily run processes: its window's first day (the 02:00 run of D does D-1)."""
        return self.start.date()

    @property
    def key(self) -> str:
        """See :func:`run_key`."""
        return _key(self.dag_id, self.run_id, self.logical_date)

    @classmethod
    def from_context(cls, context: Mapping[str, Any] | None = None) -> RunWindow:
        """The window of the running task's DAG run (``context`` defaults to the current one)."""
        context = _context(context)
        if context is None:
            raise RuntimeError("RunWindow.from_context() needs a task's context: call it inside a running task")
        dag_run = context.get("dag_run")
        ti = context.get("ti") or context.get("task_instance")
        dag = context.get("dag")
        dag_id = getattr(dag, "dag_id", None) or getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", None)
        run_id = context.get("run_id") or getattr(ti, "run_id", None) or getattr(dag_run, "run_id", None)
        logical_date = context.get("logical_date") or getattr(dag_run, "logical_date", None)
        start = context.get("data_interval_start") or getattr(dag_run, "data_interval_start", None)
        end = context.get("data_interval_end") or getattr(dag_run, "data_interval_end", None)
        if start is not None and end is not None:
            return cls(dag_id, run_id, _utc(start), _utc(end), _utc(logical_date) if logical_date else None)
        run_after = _utc(getattr(dag_run, "run_after", None) or datetime.now(UTC))
        start, end = last_complete_interval(getattr(dag, "timetable", None), run_after)
        return cls(dag_id, run_id, start, end, _utc(logical_date) if logical_date else None, inferred=True,
                   run_after=run_after)


def run_key(context: Mapping[str, Any] | None = None) -> str | None:
    """What identifies a run's unit of work: its logical date when it has one (a rerun of the
    same logical date is the same work), else its run_id. None outside a task."""
    context = _context(context)
    if context is None:
        return None
    ti, dag_run = context["ti"], context.get("dag_run")
    logical_date = context.get("logical_date") or getattr(dag_run, "logical_date", None)
    return _key(ti.dag_id, ti.run_id, _utc(logical_date) if logical_date else None)


def as_of_key(kind: str, as_of: Any) -> str:
    """The key of what a run computes "as of" an instant (a features snapshot, a prediction set):
    ``<kind>:<as_of in UTC, ISO>``, the same for every run over the same window, whatever its
    run id, so a rerun replaces its work instead of adding to it."""
    return f"{kind}:{_utc(as_of).isoformat()}"


def _key(dag_id: str, run_id: str, logical_date: datetime | None) -> str:
    return f"{dag_id}@{logical_date.isoformat()}" if logical_date is not None else f"{dag_id}/{run_id}"


def idempotency_key(context: Mapping[str, Any] | None = None, suffix: str = "") -> str | None:
    """A key stable across the retries and reruns of one task for one run (see ``run_key``),
    different for every other run. Uses the current task's context when none is given."""
    context = _context(context)
    if context is None:
        return None
    ti = context["ti"]
    raw = f"{run_key(context)}/{ti.task_id}/{getattr(ti, 'map_index', -1)}/{suffix}"
    return hashlib.sha256(raw.encode()).hexdigest()[:40]
