"""The generator: exact H&M formats and quirks, determinism, and the realism the issue asks
for, each checked on the files as written (plain Python reads)."""

from __future__ import annotations

import filecmp
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta

from PIL import Image

from domains.ecommerce_ml import formats
from domains.ecommerce_ml.tests.conftest import DAY, read_csv


def test_formats_quirks_and_determinism(ecom, tmp_path):
    truths = ecom.generate(DAY, scale=1)
    hm = ecom.raw("raw", "hm", f"dt={DAY}")
    for name, fmt in (("articles.csv", formats.ARTICLES), ("customers.csv", formats.CUSTOMERS),
                      ("transactions_train.csv", formats.TRANSACTIONS)):
        assert (hm / name).read_text().splitlines()[0] == fmt.header
    articles = read_csv(hm / "articles.csv")
    assert len(formats.ARTICLES.names) == 25 and len(articles) == truths.counts["articles"]
    assert all(len(a["article_id"]) == 10 and a["article_id"][0] == "0" and len(a["product_code"]) == 7
               and a["article_id"].startswith(a["product_code"]) for a in articles)
    assert any(a["detail_desc"] == "" for a in articles)
    customers = read_csv(hm / "customers.csv")
    assert {c["FN"] for c in customers} == {"1.0", ""} and {c["Active"] for c in customers} == {"1.0", ""}
    assert any(c["age"] == "" for c in customers) and all(len(c["customer_id"]) == 64 for c in customers)
    assert {"NONE", "None", "Regularly"} <= {c["fashion_news_frequency"] for c in customers}
    # images: real JPEGs at images/<first 3 digits>/<article_id>.jpg
    one = articles[0]["article_id"]
    with Image.open(ecom.raw("raw", "hm", "images", one[:3], f"{one}.jpg")) as img:
        assert img.format == "JPEG" and img.size == (64, 96)
    # deterministic: the same seed, day and scale give byte-identical files
    from airflow.sdk import ObjectStoragePath

    from domains.ecommerce_ml.local.generator import generate_day

    generate_day(ObjectStoragePath(f"file://{tmp_path}/again/"), DAY, scale=1, seed=12)
    cmp = filecmp.dircmp(ecom.lake_dir / "raw", tmp_path / "again" / "raw")
    assert not cmp.diff_files and not cmp.left_only and not cmp.right_only
    for sub in ("hm", "reviews"):
        assert not filecmp.dircmp(ecom.lake_dir / "raw" / sub, tmp_path / "again" / "raw" / sub).diff_files


def test_realism(ecom):
    saturday, monday = date(2024, 6, 8), date(2024, 6, 10)
    sat, mon = ecom.generate(saturday, scale=3), ecom.generate(monday, scale=3)
    assert sat.counts["transactions"] > 1.2 * mon.counts["transactions"]  # weekly pattern
    tx = read_csv(ecom.raw("raw", "hm", f"dt={monday}", "transactions_train.csv"))
    by_article = Counter(t["article_id"] for t in tx)
    top = sum(n for _, n in by_article.most_common(max(1, len(by_article) // 10)))
    assert top > 0.4 * len(tx)  # long tail: the top 10% of articles sell over 40% of items
    buyers = Counter(t["customer_id"] for t in tx)
    repeat = set(buyers) & {t["customer_id"] for t in read_csv(
        ecom.raw("raw", "hm", f"dt={saturday}", "transactions_train.csv"))}
    assert len(repeat) > 0.05 * len(buyers)  # repeat buyers across days
    reviews = read_csv(ecom.raw("raw", "reviews", f"dt={monday}", "reviews.csv"))
    from domains.ecommerce_ml.local.generator import NEGATIVE, POSITIVE

    positive = [int(r["rating"]) for r in reviews if r["text"].startswith(tuple(POSITIVE))]
    negative = [int(r["rating"]) for r in reviews if r["text"].startswith(tuple(NEGATIVE))]
    assert positive and negative
    assert min(positive) >= 4 and max(negative) <= 2
    sessions = defaultdict(set)
    for path in ecom.raw("raw", "events", f"dt={monday}").rglob("part-*.csv"):
        for e in read_csv(path):
            sessions[e["session_key"]].add(e["event_type"])
            assert datetime.fromisoformat(e["ts"]).date() == monday
    bought = sum(1 for s in sessions.values() if "purchase" in s) / len(sessions)
    carted = sum(1 for s in sessions.values() if "add_to_cart" in s) / len(sessions)
    assert 0.01 < bought < 0.08 and bought < carted < 0.4  # plausible conversion
    assert mon.counts["events_late"] > 0 and mon.counts["events_duplicate"] >= 0
    assert monday - saturday == timedelta(days=2)


def test_transactions_reference_the_days_catalogue(ecom, monkeypatch):
    """Written in several chunks: every row's article and customer are the day's own, but for exactly
    the bad rows the generator counts (each row at most one problem), and the same files again."""
    from airflow.sdk import ObjectStoragePath

    from domains.ecommerce_ml.local import generator

    monkeypatch.setattr(generator, "TX_CHUNK", 4_000)
    truths = ecom.generate(DAY, scale=20, parts=("articles", "customers", "transactions"))
    folder = ecom.raw("raw", "hm", f"dt={DAY}")
    articles = {a["article_id"] for a in read_csv(folder / "articles.csv")}
    customers = {c["customer_id"] for c in read_csv(folder / "customers.csv")}
    tx = read_csv(folder / "transactions_train.csv")
    c = truths.counts
    assert len(tx) == c["transactions"] > 5 * 4_000  # several chunks
    unknown_article = [t for t in tx if t["article_id"] not in articles]
    unknown_customer = [t for t in tx if t["customer_id"] not in customers]
    other_day = [t for t in tx if t["t_dat"] != str(DAY)]
    assert len(unknown_article) == c["transactions_unknown_article"] > 0
    assert len(unknown_customer) == c["transactions_unknown_customer"] > 0
    assert len(other_day) == c["transactions_other_day"] > 0
    assert all(t["article_id"].endswith("999") and len(t["article_id"]) == 10 for t in unknown_article)
    assert {t["t_dat"] for t in other_day} == {str(DAY - timedelta(days=1))}
    bad = [id(t) for t in unknown_article + unknown_customer + other_day]
    assert len(bad) == len(set(bad))  # one problem a row: the rejection reasons count them exactly
    assert all(0 < float(t["price"]) < 1 and t["sales_channel_id"] in ("1", "2") for t in tx)
    from domains.ecommerce_ml.local.generator import generate_day

    again = ecom.lake_dir.parent / "again"
    generate_day(ObjectStoragePath(f"file://{again}/"), DAY, scale=20, seed=12,
                 parts=("articles", "customers", "transactions"))
    assert filecmp.cmp(folder / "transactions_train.csv", again / "raw" / "hm" / f"dt={DAY}" / "transactions_train.csv",
                       shallow=False)
