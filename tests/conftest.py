"""Fixtures of the platform tests (tests/); the root conftest.py has the session's PostgreSQL."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.chromium import CHROMIUM


@pytest.fixture(scope="session")
def live_platform() -> Iterator:
    """One real platform (tests/live_platform.py) for tests/test_first_day.py and
    tests/test_isolation.py. Failed tasks wait at most 5 s between tries (Airflow's
    ``[core] max_task_retry_delay``), so a test can watch a task fail for good."""
    from tests.live_platform import running_platform

    with running_platform("celery", max_task_retry_delay=5) as platform:
        yield platform


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"])
        debian = subprocess.run([str(CHROMIUM), "--version"], capture_output=True, text=True, check=True).stdout
        assert b.version in debian, (b.version, debian)  # Debian's chromium, not a downloaded browser
        yield b
        b.close()
