"""Load an existing OpenLineage events file (JSON lines, as the provider's ``file``
transport writes, e.g. ``.local/openlineage/events.jsonl``) into the store.

Each job's owner (DAG and team) is resolved like the ingest endpoint does; an event already
stored is skipped, so loading a file twice changes nothing; an event the store refuses (its
run belongs to another job) is skipped and reported. ``make lineage-load FILE=...``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from lineage_explorer.ownership import OwnerResolver
from lineage_explorer.store import InvalidEvent, LineageStore, RunEvent

log = logging.getLogger(__name__)


@dataclass
class LoadReport:
    stored: int = 0
    duplicates: int = 0
    invalid: list[str] = field(default_factory=list)  # "line N: reason"
    refused: list[str] = field(default_factory=list)  # "run <id> of job <name>: reason" (see store.RefusedEvent)


def read_events(path: Path, report: LoadReport):
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield RunEvent.parse(json.loads(line))
            except (json.JSONDecodeError, InvalidEvent) as e:
                report.invalid.append(f"line {n}: {e}")


def load_file(path: Path, store: LineageStore, resolver: OwnerResolver, batch: int = 500) -> LoadReport:
    report = LoadReport()
    report.stored, report.duplicates = store.ingest_many(read_events(Path(path), report), resolver.owner, batch=batch,
                                                         refused=report.refused)
    return report
