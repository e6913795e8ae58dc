"""Retention by age: ``[lineage_explorer] retention_days`` (default 90, 0 keeps everything).

The api-server runs :func:`purge` once an hour in a background thread (the app's
lifespan); ``python -m lineage_explorer purge`` runs it once.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from lineage_explorer.store import LineageStore

log = logging.getLogger(__name__)
INTERVAL_SECONDS = 3600


def purge(store: LineageStore, retention_days: int, now: datetime | None = None) -> dict[str, int]:
    """Delete what was last seen more than ``retention_days`` ago; returns rows deleted per table."""
    if retention_days <= 0:
        return {}
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    out = store.purge_older_than(cutoff)
    log.info("lineage retention: purged what was last seen before %s: %s", cutoff.isoformat(), out)
    return out


class PurgeLoop:
    """Every ``interval`` seconds: ``target()`` -> (store, retention_days), then :func:`purge`.
    A failure (database down, settings missing) is logged and retried next round."""

    def __init__(self, target, interval: float = INTERVAL_SECONDS) -> None:
        self.target = target
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lineage-retention", daemon=True)

    def start(self) -> PurgeLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                store, days = self.target()
                purge(store, days)
            except Exception:  # the next round retries; the api-server keeps serving
                log.exception("lineage retention purge failed")
            self._stop.wait(self.interval)
