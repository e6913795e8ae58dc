"""domains/ecommerce_ml/common.py manual_window: every daily stage triggered without a logical date
processes the same, complete day, at any time of day (Airflow's own inference alone does not
between 02:00 and 05:00 UTC: the 02:00 stage would process yesterday, the 04:00 one the day before)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from airflow.timetables.interval import CronDataIntervalTimetable

from domains.ecommerce_ml.common import manual_window
from shared.runs import last_complete_interval

DAILY = ["0 1 * * *", "0 2 * * *", "0 3 * * *", "0 4 * * *", "0 5 * * *"]  # the domain's daily stages


def windows(run_after: datetime, crons=DAILY) -> list[tuple[datetime, datetime]]:
    out = []
    for cron in crons:
        start, end = last_complete_interval(CronDataIntervalTimetable(cron, "UTC"), run_after)
        out.append(manual_window(start, end, run_after))
    return out


@pytest.mark.parametrize("minute", range(0, 24 * 60, 20))
def test_every_daily_stage_triggered_by_hand_processes_the_same_complete_day(minute):
    run_after = datetime(2026, 12, 6, tzinfo=UTC) + timedelta(minutes=minute)
    got = windows(run_after)
    assert all(end <= run_after and end - start == timedelta(days=1) for start, end in got)
    days = {start.date() for start, _ in got}
    assert days == {date(2026, 12, 5) if minute >= 5 * 60 else date(2026, 12, 4)}, (run_after, got)


def test_airflows_inference_alone_disagrees_between_two_and_five():
    run_after = datetime(2026, 12, 6, 2, 55, tzinfo=UTC)
    inferred = {last_complete_interval(CronDataIntervalTimetable(c, "UTC"), run_after)[0].date() for c in DAILY}
    assert inferred == {date(2026, 12, 4), date(2026, 12, 5)}  # what manual_window fixes


def test_windows_other_than_a_day_are_left_as_they_are():
    run_after = datetime(2026, 12, 6, 3, 7, tzinfo=UTC)
    start, end = last_complete_interval(CronDataIntervalTimetable("*/15 * * * *", "UTC"), run_after)
    assert manual_window(start, end, run_after) == (start, end)
