"""Fixtures of the platform tests (tests/); the root conftest.py has the session's PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def live_platform() -> Iterator:
    """One real platform (tests/live_platform.py) for tests/test_first_day.py and
    tests/test_isolation.py. Failed tasks wait at most 5 s between tries (Airflow's
    ``[core] max_task_retry_delay``), so a test can watch a task fail for good."""
    from tests.live_platform import running_platform

    with running_platform("celery", max_task_retry_delay=5) as platform:
        yield platform
