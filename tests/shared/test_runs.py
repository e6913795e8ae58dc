"""shared.runs: a run's window however the run was started (scheduled, REST with or without a
logical date, the UI's button, ``airflow dags trigger``, ``dag.test()``)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from shared.runs import RunWindow, last_complete_interval, run_key


def _dag(schedule):
    from airflow.sdk import DAG

    return DAG("d", schedule=schedule, start_date=datetime(2024, 1, 1, tzinfo=UTC))


def _context(dag, run_after, **interval):
    """A task's context as the Task SDK builds it: a run without a logical date has none of
    ``logical_date``, ``data_interval_start``, ``data_interval_end`` (the keys are missing)."""
    dag_run = SimpleNamespace(dag_id=dag.dag_id, run_id="manual__x", run_after=run_after,
                              logical_date=interval.get("logical_date"),
                              data_interval_start=interval.get("data_interval_start"),
                              data_interval_end=interval.get("data_interval_end"))
    ti = SimpleNamespace(dag_id=dag.dag_id, task_id="t", run_id="manual__x", map_index=-1)
    return {"dag": dag, "dag_run": dag_run, "ti": ti, "run_id": "manual__x", **interval}


AT = datetime(2026, 12, 5, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize(("schedule", "start", "end"), [
    # a plain cron string: Airflow 3's CronTriggerTimetable (scheduled runs have an instant interval)
    ("0 */6 * * *", datetime(2026, 12, 5, 0, tzinfo=UTC), datetime(2026, 12, 5, 6, tzinfo=UTC)),
    ("0 2 * * *", datetime(2026, 12, 4, 2, tzinfo=UTC), datetime(2026, 12, 5, 2, tzinfo=UTC)),
    ("*/15 * * * *", datetime(2026, 12, 5, 10, 15, tzinfo=UTC), AT),  # a tick at the trigger closes an interval
    ("0 6 * * 1", datetime(2026, 11, 23, 6, tzinfo=UTC), datetime(2026, 11, 30, 6, tzinfo=UTC)),  # weekly, Mondays
    (None, AT, AT),  # triggered only: the instant it was triggered
])
def test_a_run_without_a_logical_date_gets_the_last_complete_interval_of_its_schedule(schedule, start, end):
    window = RunWindow.from_context(_context(_dag(schedule), AT))
    assert (window.start, window.end, window.as_of, window.inferred) == (start, end, end, True)
    assert window.run_after == AT  # what it was inferred at: a domain adjusting the window needs no context
    assert window.logical_date is None and window.key == "d/manual__x"


def test_a_data_interval_timetable_gives_what_airflow_gives_a_manual_run():
    """ecommerce_ml's schedules are ``CronDataIntervalTimetable``s: the same answer as Airflow's
    ``infer_manual_data_interval`` (the interval the API would give a run with a logical date)."""
    from airflow.timetables.interval import CronDataIntervalTimetable

    timetable = CronDataIntervalTimetable("0 2 * * *", timezone="UTC")
    window = RunWindow.from_context(_context(_dag(timetable), AT))
    assert (window.start, window.end) == (datetime(2026, 12, 4, 2, tzinfo=UTC), datetime(2026, 12, 5, 2, tzinfo=UTC))
    assert window.day.isoformat() == "2026-12-04"
    assert last_complete_interval(timetable, AT) == (window.start, window.end)


def test_a_run_with_a_data_interval_keeps_it():
    start, end = datetime(2026, 12, 3, 2, tzinfo=UTC), datetime(2026, 12, 4, 2, tzinfo=UTC)
    context = _context(_dag("0 2 * * *"), AT, logical_date=end, data_interval_start=start, data_interval_end=end)
    window = RunWindow.from_context(context)
    assert (window.start, window.end, window.inferred, window.run_after) == (start, end, False, None)
    assert window.key == run_key(context) == "d@2026-12-04T02:00:00+00:00"


def test_a_timezone_schedule_is_read_in_its_zone():
    import pendulum
    from airflow.sdk import DAG

    dag = DAG("d", schedule="0 2 * * *", start_date=pendulum.datetime(2024, 1, 1, tz="Europe/Berlin"))
    window = RunWindow.from_context(_context(dag, AT))
    assert (window.start, window.end) == (datetime(2026, 12, 4, 1, tzinfo=UTC), datetime(2026, 12, 5, 1, tzinfo=UTC))


def test_outside_a_task_it_says_so():
    with pytest.raises(RuntimeError, match="inside a running task"):
        RunWindow.from_context()


def test_no_domain_reads_the_run_interval_from_the_context_by_hand():
    """One way to get a run's window: ``shared.runs``. A task reading ``data_interval_*`` or
    ``logical_date`` from the context breaks on a run triggered without a logical date."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    pattern = re.compile(r"""\[\s*["'](data_interval_start|data_interval_end|logical_date)["']\s*\]"""
                         r"""|\.get\(\s*["'](data_interval_start|data_interval_end|logical_date)["']""")
    offenders = [f"{p.relative_to(root)}:{n}" for p in (root / "domains").rglob("*.py") if "/tests/" not in str(p)
                 for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []
