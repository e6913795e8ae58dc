"""The user-item matrix, built incrementally from the previous day's (the day leaving the window
filtered out, the new day merged in), equals the matrix regrouped from every interactions file of
the window, on generated days through the real steps (embedded PostgreSQL registry, DuckDB, lake
files), and is the very file a build from every partial of the window writes; a day whose
interactions change gets its partial rebuilt and replaced in the next matrix."""

from __future__ import annotations

import os
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
        purchases = g[6]  # the window's days of the pair, oldest first, that the other columns come from
        assert [p["day"] for p in purchases] == sorted({p["day"] for p in purchases}), key
        assert (len(purchases), sum(p["items"] for p in purchases), purchases[0]["day"], purchases[-1]["day"]) \
            == (days, items, first, last), key


def _run_day(ecom, day, window_days: int, incremental: bool = True, step: bool = True, matrix: bool = True,
             range_rows: int | None = None) -> dict:
    from domains.ecommerce_ml import interactions
    from domains.ecommerce_ml.common import Run

    run = Run.for_day("ecommerce_ml_user_item_interactions", day, f"t-{day}")
    if step:
        interactions.load_interactions(run, interactions.build_interactions(run, ecom.root()), ecom.root())
    return interactions.build_matrix(run, ecom.root(), window_days=window_days, incremental=incremental,
                                     range_rows=range_rows) if matrix else {}


def test_matrix_from_day_partials_equals_full_rebuild(ecom):
    from airflow.sdk import ObjectStoragePath

    from domains.ecommerce_ml.local.generator import generate_day

    for day in DAYS:
        ecom.generate(day, scale=30, parts=("articles", "customers", "transactions"))
    window = 3  # the first day leaves the window on the last day
    for day in DAYS:
        out = _run_day(ecom, day, window)
        assert out["days"] == min(window, DAYS.index(day) + 1)
        # day 1 from its partial; then from the previous matrix plus the new day's partial only
        assert (out["mode"], out["days_added"]) == (("full", 1) if day == DAYS[0] else ("incremental", 1)), out
        _assert_same(_matrix(_registered(ecom, "user_item_matrix", day)), _full(ecom, day, window))
    # the last day's matrix dropped the first day (it left the window) from every pair
    assert all(p["day"] != DAYS[0] for v in _matrix(_registered(ecom, "user_item_matrix", DAY)).values() for p in v[6])
    # built from every partial of the window instead: the same bytes, so the same file (nothing new written)
    files = ecom.lake_files()
    incremental_path = _registered(ecom, "user_item_matrix", DAY)
    out = _run_day(ecom, DAY, window, incremental=False, step=False)
    assert (out["mode"], out["days_added"], out["path"].removeprefix("file://")) == ("full", window, incremental_path)
    assert ecom.lake_files() == files
    # repeated pairs (a customer buying an article again on another day) are in the test data
    assert any(v[0] > 1 for v in _full(ecom, DAY, window).values())
    # the first day's partial left with the window (retention); the others are the window's
    assert [v for (v,) in ecom.query("SELECT version FROM dataset_registry WHERE dataset = 'user_item_day'"
                                     " ORDER BY version")] == [str(d) for d in DAYS[1:]]
    partials = {d: _registered(ecom, "user_item_day", d) for d in DAYS[1:]}

    # a rerun rebuilds no partial and writes nothing new
    files = ecom.lake_files()
    _run_day(ecom, DAY, window)
    assert ecom.lake_files() == files

    # the middle day delivered again with other content: its partial is rebuilt, the others reused
    changed = DAYS[2]
    generate_day(ObjectStoragePath(ecom.lake_url + "/"), changed, scale=30, seed=13,
                 parts=("articles", "customers", "transactions"))
    _run_day(ecom, changed, window, matrix=False)  # its interactions only: the matrices still hold the old day
    out = _run_day(ecom, DAY, window)
    # the changed day's old partial is taken out of the previous matrix and its new one merged in with the last day
    assert (out["mode"], out["days_added"], out["days_kept"]) == ("incremental", 2, 1), out
    now = {d: _registered(ecom, "user_item_day", d) for d in DAYS[1:]}
    assert now[changed] != partials[changed]
    assert {d: p for d, p in now.items() if d != changed} == {d: p for d, p in partials.items() if d != changed}
    _assert_same(_matrix(_registered(ecom, "user_item_matrix", DAY)), _full(ecom, DAY, window))


def test_matrix_after_missed_days_merges_the_missed_days_into_the_last_matrix(ecom):
    """The build after days without a matrix (a failed or skipped build) starts from the last matrix
    and merges the missed days' partials with the new day's: the same matrix as the full regroup,
    and as the build from every partial."""
    for day in DAYS:
        ecom.generate(day, scale=30, parts=("articles", "customers", "transactions"))
    window = 4
    assert _run_day(ecom, DAYS[0], window)["mode"] == "full"
    for day in DAYS[1:3]:  # interactions loaded, no matrix built
        _run_day(ecom, day, window, matrix=False)
    out = _run_day(ecom, DAYS[3], window)
    assert (out["mode"], out["days_added"], out["days_kept"]) == ("incremental", 3, 1), out
    incremental = _matrix(_registered(ecom, "user_item_matrix", DAYS[3]))
    _assert_same(incremental, _full(ecom, DAYS[3], window))
    assert any(len(v[6]) == 4 for v in incremental.values())  # pairs bought on every day of the window
    out = _run_day(ecom, DAYS[3], window, incremental=False, step=False)
    assert (out["mode"], out["path"].removeprefix("file://")) == ("full", _registered(ecom, "user_item_matrix", DAYS[3]))


def test_matrix_without_window_footer_is_built_from_partials(ecom):
    """A previous matrix written before the footer (the release before this one) is not a base: the
    next day's matrix is built from every partial of its window, and the day after is incremental again."""
    for day in DAYS[:3]:
        ecom.generate(day, scale=10, parts=("articles", "customers", "transactions"))
    window = 90
    assert _run_day(ecom, DAYS[0], window)["mode"] == "full"
    old = _registered(ecom, "user_item_matrix", DAYS[0])
    # as the previous release wrote it: no footer key
    duckdb.sql(f"COPY (SELECT * FROM read_parquet('{old}')) TO '{old}.tmp' (FORMAT parquet)")
    os.replace(f"{old}.tmp", old)
    assert not duckdb.sql(f"SELECT * FROM parquet_kv_metadata('{old}')").fetchall()
    out = _run_day(ecom, DAYS[1], window)
    assert (out["mode"], out["days_added"]) == ("full", 2), out
    _assert_same(_matrix(_registered(ecom, "user_item_matrix", DAYS[1])), _full(ecom, DAYS[1], window))
    out = _run_day(ecom, DAYS[2], window)
    assert (out["mode"], out["days_added"], out["days_kept"]) == ("incremental", 1, 2), out
    _assert_same(_matrix(_registered(ecom, "user_item_matrix", DAYS[2])), _full(ecom, DAYS[2], window))


def test_partials_out_of_the_window_and_old_matrices_expire(ecom, monkeypatch):
    """Each matrix build removes the partials of days out of its window and the matrices older than
    MATRIX_KEEP_DAYS (registry rows, then files); a rerun of an older day rebuilds what it needs."""
    from domains.ecommerce_ml import interactions

    monkeypatch.setattr(interactions, "MATRIX_KEEP_DAYS", 2)
    for day in DAYS:
        ecom.generate(day, scale=10, parts=("articles", "customers", "transactions"))
    window = 2
    outs = [_run_day(ecom, day, window) for day in DAYS]
    assert [o["expired_files"] for o in outs] == [0, 0, 2, 2]  # from day 3: one partial and one matrix a day

    def versions(dataset):
        return [v for (v,) in ecom.query("SELECT version FROM dataset_registry WHERE dataset = %s"
                                         " AND kind = 'artifact' ORDER BY version", (dataset,))]

    def files(dataset):
        return sorted(k.split("/")[2] for k in ecom.lake_files() if k.startswith(f"curated/{dataset}/"))

    kept = [str(d) for d in DAYS[2:]]
    assert versions("user_item_day") == versions("user_item_matrix") == kept
    assert files("user_item_day") == files("user_item_matrix") == [f"v={d}" for d in kept]
    _assert_same(_matrix(_registered(ecom, "user_item_matrix", DAY)), _full(ecom, DAY, window))

    # a rerun of an older day: its partials rebuilt, its matrix from them (no base left), correct again
    old = DAYS[1]
    out = _run_day(ecom, old, window, step=False)
    assert out["mode"] == "full" and out["days_added"] == 2, out
    _assert_same(_matrix(_registered(ecom, "user_item_matrix", old)), _full(ecom, old, window))


def test_matrix_built_in_customer_ranges_is_the_one_range_matrix(ecom):
    """Inputs larger than a range (``range_rows`` input rows, cut at the inputs' row groups; 6 M at 1x,
    where one query over every customer ran out of DuckDB's 512 MB once the window held 25 days) are
    built one customer range at a time: several ranges here, and the very file the one-range build
    writes, incremental (previous matrix merged with 2 missed days and the new one) and full alike."""
    for day in DAYS:
        ecom.generate(day, scale=30, parts=("articles", "customers", "transactions"))
    window = 4
    _run_day(ecom, DAYS[0], window)
    for day in DAYS[1:3]:
        _run_day(ecom, day, window, matrix=False)
    one = _run_day(ecom, DAYS[3], window, range_rows=10**9)
    assert (one["mode"], one["ranges"], one["days_added"]) == ("incremental", 1, 3), one
    one_path = one["path"].removeprefix("file://")
    ((rows,),) = duckdb.sql(f"SELECT count(*) FROM read_parquet('{one_path}')").fetchall()
    files = ecom.lake_files()
    for incremental in (True, False):
        # rebuild as another version: the file is content-addressed, so the same bytes give the same path
        # range_rows=1: a cut at every input row group's first customer (one row group per file here)
        ranged = _run_day(ecom, DAYS[3], window, incremental=incremental, step=False, range_rows=1)
        assert ranged["ranges"] >= 3, ranged
        assert ranged["mode"] == ("incremental" if incremental else "full")
        assert ranged["path"].removeprefix("file://") == one_path, ranged
    assert ecom.lake_files() == files
    keys = [(r[0], r[1]) for r in duckdb.sql(f"SELECT customer_id, article_id FROM read_parquet('{one_path}')").fetchall()]
    assert keys == sorted(keys) and len(keys) == len(set(keys)) == rows
    _assert_same(_matrix(one_path), _full(ecom, DAYS[3], window))


def test_training_read_by_customer_range_gives_the_matrix_pairs_as_codes(ecom):
    """``open_matrix`` (recommendation training's input) reads the registered matrix one customer range
    at a time: integer codes and weights per batch, a customer's pairs never split across batches, and
    together exactly the file's pairs, the same as one batch of everything."""
    import pytest

    from domains.ecommerce_ml import interactions

    for day in DAYS[:2]:
        ecom.generate(day, scale=30, parts=("articles", "customers", "transactions"))
        _run_day(ecom, day, 2)
    path = _registered(ecom, "user_item_matrix", DAYS[1])
    want = sorted(duckdb.sql(f"SELECT customer_id, article_id, weight FROM read_parquet('{path}')").fetchall())
    # small row groups, as a 1x matrix has hundreds of them (the ranges are cut at row groups)
    duckdb.sql(f"COPY (SELECT * FROM read_parquet('{path}')) TO '{path}.tmp' (FORMAT parquet, ROW_GROUP_SIZE 200)")
    os.replace(f"{path}.tmp", path)

    def read(range_rows: int) -> tuple[list, list]:
        with interactions.open_matrix(DAYS[1], ecom.root(), range_rows=range_rows) as matrix:
            articles = list(matrix.articles)
            batches = list(matrix.batches())
        got, seen = [], 0
        for b in batches:
            assert b.first_customer == seen and len(b.customer) == len(b.article) == len(b.weight)
            assert sorted(set(b.customer.tolist())) == list(range(len(b.customers)))  # every code used
            seen += len(b.customers)
            got += [(b.customers[c], articles[a], w) for c, a, w in zip(b.customer, b.article, b.weight, strict=True)]
        customers = [c for b in batches for c in b.customers]
        assert customers == sorted(set(customers)) and articles == sorted(set(articles))
        return batches, sorted(got)  # a batch's pairs come in no particular order

    batches, got = read(500)
    assert len(batches) >= 3, len(batches)
    assert got == want
    one, got_one = read(10**9)
    assert len(one) == 1 and got_one == want
    with pytest.raises(FileNotFoundError, match="no registered user_item_matrix for"):
        with interactions.open_matrix(DAY, ecom.root()):
            pass
