"""The user-item matrix combined from per-day partial aggregates equals the matrix regrouped from
every interactions file of the window, on generated days through the real steps (embedded
PostgreSQL registry, DuckDB, lake files); a day whose interactions change gets its partial rebuilt."""

from __future__ import annotations

from datetime import timedelta

import duckdb

from domains.ecommerce_ml.tests.conftest import DAY

DAYS = [DAY - timedelta(days=k) for k in (3, 2, 1, 0)]


def _registered(ecom, dataset: str, day) -> str:
    (path,) = [p for (p,) in ecom.query("SELECT path FROM dataset_registry WHERE dataset = %s AND kind = 'artifact'"
                                         " AND version = %s", (dataset, str(day)))]
    return path.removeprefix("file://")


def _matrix(path: str) -> dict:
    rows = duckdb.sql(f"SELECT * FROM read_parquet('{path}')").fetchall()
    return {(r[0], r[1]): r[2:] for r in rows}


def _full(ecom, day, window_days: int) -> dict:
    from domains.ecommerce_ml.interactions import full_matrix_sql

    first = str(day - timedelta(days=window_days - 1))
    files = [p.removeprefix("file://") for (p,) in ecom.query(
        "SELECT path FROM dataset_registry WHERE dataset = 'interactions' AND kind = 'artifact'"
        " AND version BETWEEN %s AND %s ORDER BY version", (first, str(day)))]
    rows = duckdb.sql(full_matrix_sql(day, files)).fetchall()
    return {(r[0], r[1]): r[2:] for r in rows}


def _assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key, (days, items, first, last, recency, weight) in want.items():
        g = got[key]
        assert g[:5] == (days, items, first, last, recency), key
        assert abs(g[5] - weight) <= 1e-6, key  # float sums in another order: equal at the stored 6 decimals


def _run_day(ecom, day, window_days: int) -> dict:
    from domains.ecommerce_ml import interactions
    from domains.ecommerce_ml.common import Run

    run = Run.for_day("ecommerce_ml_user_item_interactions", day, f"t-{day}")
    interactions.load_interactions(run, interactions.build_interactions(run, ecom.root()), ecom.root())
    return interactions.build_matrix(run, ecom.root(), window_days=window_days)


def test_matrix_from_day_partials_equals_full_rebuild(ecom):
    from airflow.sdk import ObjectStoragePath

    from domains.ecommerce_ml.local.generator import generate_day

    for day in DAYS:
        ecom.generate(day, scale=30, parts=("articles", "customers", "transactions"))
    window = 3  # the first day leaves the window on the last day
    for day in DAYS:
        out = _run_day(ecom, day, window)
        assert out["days"] == min(window, DAYS.index(day) + 1)
        _assert_same(_matrix(_registered(ecom, "user_item_matrix", day)), _full(ecom, day, window))
    # repeated pairs (a customer buying an article again on another day) are in the test data
    assert any(v[0] > 1 for v in _full(ecom, DAY, window).values())
    partials = {d: _registered(ecom, "user_item_day", d) for d in DAYS}

    # a rerun rebuilds no partial and writes nothing new
    files = ecom.lake_files()
    _run_day(ecom, DAY, window)
    assert ecom.lake_files() == files

    # the middle day delivered again with other content: its partial is rebuilt, the others reused
    changed = DAYS[2]
    generate_day(ObjectStoragePath(ecom.lake_url + "/"), changed, scale=30, seed=13,
                 parts=("articles", "customers", "transactions"))
    _run_day(ecom, changed, window)
    _run_day(ecom, DAY, window)
    now = {d: _registered(ecom, "user_item_day", d) for d in DAYS}
    assert now[changed] != partials[changed]
    assert {d: p for d, p in now.items() if d != changed} == {d: p for d, p in partials.items() if d != changed}
    _assert_same(_matrix(_registered(ecom, "user_item_matrix", DAY)), _full(ecom, DAY, window))
