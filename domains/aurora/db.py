"""The aurora database (``aurora_postgres``; schema in ``migrations/``, plus the outbox's
``event_outbox`` table from ``shared/migrations/outbox/``, applied before aurora's own).

Open it with ``closing(DATABASE.connect())`` (see :class:`shared.db.DomainDatabase`)."""

from __future__ import annotations

from pathlib import Path

from shared import outbox
from shared.db import DomainDatabase

DATABASE = DomainDatabase("aurora", Path(__file__).parent / "migrations", uses=(outbox.SCHEMA,))
# aurora's Redis (the feature store's cache, the predictions' cache, training's metrics)
REDIS_CONN_ID = "aurora_redis"

# The app's tables the features read (``history.read_history``; ``history.TABLES`` is this):
# the history's name for each (a ``history.History`` field) -> the app's table.
HISTORY_TABLES = {"users": "users", "events": "life_events", "sleep": "sleep_records",
                  "exercise": "exercise_sessions", "friends": "social_connections"}


def record_tables(*, inputs: tuple[str, ...] | list[str] = (), outputs: tuple[str, ...] | list[str] = ()) -> None:
    """Report the aurora tables a task read and wrote (OpenLineage, through shared.lineage)."""
    from shared.lineage import record_postgres_io

    record_postgres_io(DATABASE.hook(), inputs=list(inputs), outputs=list(outputs))
