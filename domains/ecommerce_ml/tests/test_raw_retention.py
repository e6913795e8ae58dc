"""The raw H&M drops' retention (``interactions.expire_raw_drops``, DAG 1's last task): a day's raw files
leave the lake ``ECOMMERCE_ML_RAW_KEEP_DAYS`` days after the day, each file only once every DAG reading it
registered its output for that day; what a rerun still needs stays (the days within the retention, a day not
processed, a file another DAG has not read yet), and a rerun of such a day works. Real steps on generated
days (embedded PostgreSQL registry, DuckDB, lake files)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domains.ecommerce_ml.tests.conftest import DAY

DAG_ID = "ecommerce_ml_user_item_interactions"
D3, D2, D1 = (DAY - timedelta(days=k) for k in (3, 2, 1))
FILES = {"articles.csv", "customers.csv", "transactions_train.csv"}


def _files(ecom, day) -> set[str]:
    folder = ecom.raw("raw", "hm", f"dt={day}")
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def _step(ecom, day) -> dict:
    from domains.ecommerce_ml import interactions
    from domains.ecommerce_ml.common import Run

    run = Run.for_day(DAG_ID, day, f"t-{day}")
    return interactions.load_interactions(run, interactions.build_interactions(run, ecom.root()), ecom.root())


def test_raw_drops_leave_after_their_readers_and_the_retention(ecom, monkeypatch):
    from domains.ecommerce_ml import article_content, features, interactions
    from domains.ecommerce_ml.common import Run

    for day in (D3, D2, D1, DAY):
        ecom.generate(day, parts=("articles", "customers", "transactions"))
    for day in (D3, D2, DAY):  # D1 not processed (its run failed, say)
        _step(ecom, day)
    # DAG 2 and DAG 4 processed D3 only
    run = Run.for_day("ecommerce_ml_article_content", D3, "t")
    article_content.load_article_features(run, article_content.build_article_features(run, ecom.root()), ecom.root())
    features.build_customer_features(Run.for_day("ecommerce_ml_customer_features", D3, "t"), ecom.root())

    # read when used: the variable set after the module was imported
    monkeypatch.setenv("ECOMMERCE_ML_RAW_KEEP_DAYS", "2")
    out = interactions.expire_raw_drops(Run.for_day(DAG_ID, DAY, "t"), ecom.root())
    # D3 and D2 are 2+ days old: their transactions go (DAG 1 registered them); D3's customers too (DAGs 1 and 4),
    # D2's wait for DAG 4; every articles.csv stays for the events' 8-day lookback; D1 and DAY are within it
    assert _files(ecom, D3) == {"articles.csv"}
    assert _files(ecom, D2) == {"articles.csv", "customers.csv"}
    assert _files(ecom, D1) == _files(ecom, DAY) == FILES
    assert {"/".join(p.rsplit("/", 2)[-2:]) for p in out["removed"]} == {
        f"dt={D2}/transactions_train.csv", f"dt={D3}/customers.csv", f"dt={D3}/transactions_train.csv"}
    assert out["waiting"] == {str(D2): {"customers.csv": ["customer_features"]}}

    # a shorter retention reaches D1, which DAG 1 never processed: it keeps all of its files
    out = interactions.expire_raw_drops(Run.for_day(DAG_ID, DAY, "t"), ecom.root(), keep_days=1)
    assert _files(ecom, D1) == FILES and out["removed"] == []
    assert out["waiting"][str(D1)]["transactions_train.csv"] == ["interactions"]
    # ... so its rerun (the run that failed, retried) still works, and the day within the retention reruns too
    assert _step(ecom, D1)["interactions"] > 0 and _step(ecom, DAY)["interactions"] > 0
    out = interactions.expire_raw_drops(Run.for_day(DAG_ID, DAY, "t"), ecom.root(), keep_days=1)
    assert [p.rsplit("/", 2)[-2] for p in out["removed"]] == [f"dt={D1}"]
    assert _files(ecom, DAY) == FILES

    # past the articles' lookback: D3's articles.csv goes (DAGs 1, 2 and 4 read it), the folder with it
    later = Run.for_day(DAG_ID, D3 + timedelta(days=interactions.ARTICLES_MIN_KEEP_DAYS), "t")
    interactions.expire_raw_drops(later, ecom.root())
    assert not ecom.raw("raw", "hm", f"dt={D3}").exists()
    assert _files(ecom, D2) == {"articles.csv", "customers.csv"}  # DAGs 2 and 4 never read D2
    # the rest of the lake untouched: the curated interactions of every processed day are still registered
    for day in (D3, D2, D1, DAY):
        (path,) = [p for (p,) in ecom.query("SELECT path FROM dataset_registry WHERE dataset = 'interactions'"
                                             " AND kind = 'artifact' AND version = %s", (str(day),))]
        assert ecom.raw(*path.split("/lake/", 1)[1].split("/")).exists()


def test_raw_keep_days_from_the_environment(monkeypatch):
    from domains.ecommerce_ml import interactions

    monkeypatch.delenv("ECOMMERCE_ML_RAW_KEEP_DAYS", raising=False)
    assert interactions.raw_keep_days() == interactions.RAW_KEEP_DAYS
    monkeypatch.setenv("ECOMMERCE_ML_RAW_KEEP_DAYS", "30")
    assert interactions.raw_keep_days() == 30
    monkeypatch.setenv("ECOMMERCE_ML_RAW_KEEP_DAYS", "0")
    with pytest.raises(ValueError, match="at least"):
        interactions.raw_keep_days()
