"""ecommerce_ml_customer_features and ecommerce_ml_time_series end to end with dag.test() on
the embedded PostgreSQL, over two generated days that DAGs 1 and 2 processed first (through
their domain functions); expected values recounted from the raw CSV files in plain Python."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta

import pendulum
import pytest

from conftest import run_dag
from domains.ecommerce_ml.tests.conftest import DAY, read_csv
from domains.ecommerce_ml.tests.test_interactions_dag import recount

PREV = DAY - timedelta(days=1)


def logical(day, hour) -> pendulum.DateTime:
    nxt = day + timedelta(days=1)
    return pendulum.datetime(nxt.year, nxt.month, nxt.day, hour, tz="UTC")


@pytest.fixture
def two_days(ecom):
    from domains.ecommerce_ml import article_content, interactions
    from domains.ecommerce_ml.common import Run

    for day in (PREV, DAY):
        ecom.generate(day, parts=("articles", "customers", "transactions"))
        run = Run.for_day("ecommerce_ml_user_item_interactions", day, "setup")
        interactions.load_interactions(run, interactions.build_interactions(run, ecom.root()), ecom.root())
    run = Run.for_day("ecommerce_ml_article_content", DAY, "setup")
    article_content.load_article_features(run, article_content.build_article_features(run, ecom.root()), ecom.root())
    return ecom


def test_customer_features(two_days):
    ecom = two_days
    dr, states = run_dag("ecommerce_ml_customer_features", logical_date=logical(DAY, 4))
    assert dr.state == "success", states
    customers = read_csv(ecom.raw("raw", "hm", f"dt={DAY}", "customers.csv"))
    days = defaultdict(set)
    spend, items = Counter(), Counter()
    for day in (PREV, DAY):
        for (cust, _, _, price), q in recount(ecom, day)[1].items():
            days[cust].add(day)
            spend[cust] += price * q
            items[cust] += q
    assert ecom.query("SELECT count(*), count(*) FILTER (WHERE frequency > 0) FROM customer_features") == [
        (len(customers), len(days))]
    heavy = max(days, key=lambda c: (items[c], c))
    got = ecom.query("SELECT frequency, items, monetary, recency_days, r_score IS NOT NULL FROM customer_features"
                     " WHERE customer_id = %s", (heavy,))[0]
    assert got[:2] == (len(days[heavy]), items[heavy]) and got[2] == pytest.approx(spend[heavy], abs=1e-5)
    assert got[3] == (DAY - max(days[heavy])).days and got[4]
    # H&M spellings collapse: NONE and None are one value; empty ages are 'unknown'
    raw_news = Counter(r["fashion_news_frequency"] for r in customers)
    assert raw_news["NONE"] and raw_news["None"]
    assert dict(ecom.query("SELECT fashion_news_frequency, count(*) FROM customer_features GROUP BY 1")) == {
        k: v for k, v in {"NONE": raw_news["NONE"] + raw_news["None"], "REGULARLY": raw_news["Regularly"],
                          "MONTHLY": raw_news["Monthly"], "UNKNOWN": raw_news[""]}.items() if v}
    assert ecom.query("SELECT count(*) FROM customer_features WHERE age_band = 'unknown'") == [
        (sum(1 for r in customers if r["age"] == ""),)]
    assert ecom.query("SELECT count(*) FROM customer_features WHERE fn") == [
        (sum(1 for r in customers if r["FN"] == "1.0"),)]

    # a rerun of the day (the task's own function) changes nothing, in the tables or the lake
    from domains.ecommerce_ml import features
    from domains.ecommerce_ml.common import Run

    before, files = ecom.tables_snapshot("customer_features", "dataset_registry"), ecom.lake_files()
    features.build_customer_features(Run.for_day("ecommerce_ml_customer_features", DAY, "again"), ecom.root())
    after = ecom.tables_snapshot("customer_features", "dataset_registry")
    assert set(after["dataset_registry"]) ^ set(before["dataset_registry"]) == set()
    assert after == before and ecom.lake_files() == files


def test_time_series(two_days):
    ecom = two_days
    dr, states = run_dag("ecommerce_ml_time_series", logical_date=logical(DAY, 5))
    assert dr.state == "success", states
    units = {day: Counter() for day in (PREV, DAY)}
    for day in (PREV, DAY):
        for (_, art, _, _), q in recount(ecom, day)[1].items():
            units[day][art] += q
    total = units[PREV] + units[DAY]
    got = {a: (u, u7, u28) for a, u, u7, u28 in ecom.query(
        "SELECT article_id, units, units_7d, units_28d FROM sales_daily_article WHERE day = %s", (DAY,))}
    assert got == {a: (units[DAY][a], total[a], total[a]) for a in total}
    assert all(len(a) == 10 and a.startswith("0") for a in got)
    group_of = {r[0]: r[1] for r in ecom.query("SELECT article_id, product_group_name FROM article_features")}
    groups = Counter()
    for a, q in units[DAY].items():
        groups[group_of[a]] += q
    assert dict(ecom.query("SELECT product_group_name, units FROM sales_daily_group WHERE day = %s AND units > 0",
                           (DAY,))) == dict(groups)
    # one of the two days is this weekday: index = (units today / 4) / (units of both days / 28)
    sums = ecom.query("SELECT sum(units), sum(units_28d), max(weekday_index), max(trend_score) FROM sales_daily_group"
                      " WHERE day = %s", (DAY,))[0]
    assert sums[0] == sum(units[DAY].values()) and sums[1] == sum(total.values())
    assert ecom.query("SELECT dataset FROM dataset_registry WHERE version = %s AND dag_id = 'ecommerce_ml_time_series'"
                      " ORDER BY dataset, kind", (str(DAY),)) == [
        ("sales_daily_article",), ("sales_daily_article",), ("sales_daily_group",), ("sales_daily_group",)]

    from domains.ecommerce_ml import features
    from domains.ecommerce_ml.common import Run

    tables = ("sales_daily_article", "sales_daily_group", "dataset_registry")
    before, files = ecom.tables_snapshot(*tables), ecom.lake_files()
    features.build_time_series(Run.for_day("ecommerce_ml_time_series", DAY, "again"), ecom.root())
    assert ecom.tables_snapshot(*tables) == before and ecom.lake_files() == files


def test_corrupt_customers_fail_naming_file_line_column_and_write_nothing(ecom):
    from domains.ecommerce_ml import features, ingest
    from domains.ecommerce_ml.common import Run

    ecom.generate(DAY, parts=("customers",))
    path = ecom.raw("raw", "hm", f"dt={DAY}", "customers.csv")
    lines = path.read_text().splitlines(keepends=True)
    fields = lines[6].split(",")
    fields[5] = "thirty"
    lines[6] = ",".join(fields)
    path.write_text("".join(lines))
    with pytest.raises(ingest.CorruptFile, match=r"customers.csv: line 7, column 'age': cast"):
        features.validate_customers(Run.for_day("ecommerce_ml_customer_features", DAY), ecom.root())
    dr, states = run_dag("ecommerce_ml_customer_features", logical_date=logical(DAY, 4))
    assert dr.state == "failed" and states["validate_customers"] == "failed"
    assert ecom.rows("customer_features") == 0 and ecom.rows("dataset_registry") == 0
