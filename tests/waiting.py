"""One polling helper for tests that wait on real processes."""

from __future__ import annotations

import time


def wait_for(predicate, timeout: float = 60.0, step: float = 0.2):
    """``predicate()``'s first truthy value within ``timeout`` seconds (polled every ``step``), else its last."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()
