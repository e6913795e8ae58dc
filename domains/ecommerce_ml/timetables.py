"""The domain's schedules (from the seed) as data-interval timetables, so every run, scheduled
or triggered by hand, owns one whole interval: the daily runs at 02:00/03:00/04:00/05:00
process the day before (``[D-1 hh:00, D hh:00)``, see :class:`domains.ecommerce_ml.common.Run`),
and the 15-minute run processes the quarter hour that just closed. A manual trigger gets the
last complete interval (Airflow's ``infer_manual_data_interval``)."""

from __future__ import annotations

from airflow.timetables.interval import CronDataIntervalTimetable


def cron_intervals(cron: str) -> CronDataIntervalTimetable:
    return CronDataIntervalTimetable(cron, timezone="UTC")
