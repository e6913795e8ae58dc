"""Debian's chromium for the browser tests (``make browser`` installs it; Playwright never
downloads a browser). The ``browser`` fixture is in tests/conftest.py."""

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: run `make browser`")
