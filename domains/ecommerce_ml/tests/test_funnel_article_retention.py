"""funnel_article's retention in PostgreSQL: processing an interval removes from the table the slots
older than the retention whose Parquet artifact is registered (with the registry row that described
them); the lake keeps those rows, and a slot without a registered artifact stays in the table. Real
steps on a generated day of events (embedded PostgreSQL, DuckDB, lake files)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb

from domains.ecommerce_ml.tests.conftest import DAY

SLOT = timedelta(minutes=15)
DAG_ID = "ecommerce_ml_events_funnels"
COLS = "article_id, views, carts, purchases, sessions_viewed, sessions_carted, sessions_purchased"


def _pg_rows(ecom, slot: datetime) -> list[tuple]:
    return sorted(ecom.query(f"SELECT {COLS} FROM funnel_article WHERE slot_start = %s", (slot,)))


def _registry(ecom, kind: str) -> set[str]:
    return {v for (v,) in ecom.query("SELECT version FROM dataset_registry WHERE dataset = 'funnel_article'"
                                     " AND kind = %s", (kind,))}


def test_old_slots_leave_postgres_once_in_the_lake(ecom, monkeypatch):
    from domains.ecommerce_ml import events
    from domains.ecommerce_ml.common import Run

    ecom.generate(DAY, scale=1, parts=("articles", "events"))
    s1, s2, s3 = (datetime(DAY.year, DAY.month, DAY.day, 20, 0, tzinfo=UTC) + k * SLOT for k in range(3))

    def process(slot):
        return events.process_interval(Run(DAG_ID, f"r-{slot:%H%M}", slot, slot + SLOT), root=ecom.root())

    assert process(s1)["funnel_article_expired"] == {"versions": 0, "rows": 0, "kept_not_in_lake": []}
    process(s2)
    first = _pg_rows(ecom, s1)
    assert first and _pg_rows(ecom, s2)
    # s2 as if its artifact had never been registered: it must stay in PostgreSQL
    ecom.query("DELETE FROM dataset_registry WHERE dataset = 'funnel_article' AND kind = 'artifact'"
               " AND version = %s", (events.version(s2, s2 + SLOT),))
    (path,) = [p for (p,) in ecom.query("SELECT path FROM dataset_registry WHERE dataset = 'funnel_article'"
                                          " AND kind = 'artifact' AND version = %s", (events.version(s1, s1 + SLOT),))]

    # set after the module was imported: read when the run uses it
    monkeypatch.setenv("ECOMMERCE_ML_FUNNEL_ARTICLE_PG_DAYS", "0")  # everything before the processed interval expires
    out = process(s3)["funnel_article_expired"]
    v1, v2, v3 = (events.version(s, s + SLOT) for s in (s1, s2, s3))
    assert out == {"versions": 1, "rows": len(first), "kept_not_in_lake": [v2]}
    assert _pg_rows(ecom, s1) == [] and _pg_rows(ecom, s2) and _pg_rows(ecom, s3)
    assert _registry(ecom, "table") == {v2, v3} and _registry(ecom, "artifact") == {v1, v3}
    # the expired slot is still in the lake, row for row
    lake = sorted(duckdb.sql(f"SELECT {COLS} FROM read_parquet('{path.removeprefix('file://')}')").fetchall())
    assert lake == first

    # retention far away (the default): a rerun of the last slot expires nothing more
    monkeypatch.delenv("ECOMMERCE_ML_FUNNEL_ARTICLE_PG_DAYS")
    assert process(s3)["funnel_article_expired"] == {"versions": 0, "rows": 0, "kept_not_in_lake": []}
    assert ecom.query("SELECT count(DISTINCT slot_start) FROM funnel_article") == [(2,)]


def test_retention_days_read_when_used(monkeypatch):
    from domains.ecommerce_ml import events

    monkeypatch.delenv("ECOMMERCE_ML_FUNNEL_ARTICLE_PG_DAYS", raising=False)
    assert events.funnel_article_pg_days() == 90
    monkeypatch.setenv("ECOMMERCE_ML_FUNNEL_ARTICLE_PG_DAYS", "3")
    assert events.funnel_article_pg_days() == 3
    monkeypatch.setenv("ECOMMERCE_ML_FUNNEL_ARTICLE_PG_DAYS", "")
    assert events.funnel_article_pg_days() == 90


def test_version_bounds():
    from domains.ecommerce_ml import events

    s = datetime(2024, 6, 3, 20, 0, tzinfo=UTC)
    assert events.version_bounds(events.version(s, s + SLOT)) == (s, s + SLOT)
    assert events.version_bounds(events.version(s, s + 4 * SLOT)) == (s, s + 4 * SLOT)
