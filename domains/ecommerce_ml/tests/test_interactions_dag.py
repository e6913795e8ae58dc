"""ecommerce_ml_user_item_interactions end to end with dag.test() on the embedded PostgreSQL
and a generated lake; expected values are recounted from the raw CSV files in plain Python."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import duckdb
import pendulum
import pytest

from conftest import lineage_io, run_dag
from domains.ecommerce_ml.tests.conftest import DAY, lake_io, read_csv

DAG_ID = "ecommerce_ml_user_item_interactions"
TABLES = ("interaction_rejections", "dataset_registry")


def logical(day) -> pendulum.DateTime:
    """dag.test() takes the logical date as the trigger time: the run at D+1 02:00 processes day D."""
    nxt = day + timedelta(days=1)
    return pendulum.datetime(nxt.year, nxt.month, nxt.day, 2, tz="UTC")


def asset_event_extras(dr, task_id: str) -> list[dict]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return [e.extra for e in session.scalars(select(AssetEvent).where(
            AssetEvent.source_dag_id == dr.dag_id, AssetEvent.source_run_id == dr.run_id,
            AssetEvent.source_task_id == task_id))]


def lake_interactions(ecom, day) -> list[tuple]:
    """The day's registered interactions artifact (the system of record since migration 0006), read by DuckDB."""
    (path,) = [p for (p,) in ecom.query("SELECT path FROM dataset_registry WHERE dataset = 'interactions'"
                                         " AND kind = 'artifact' AND version = %s", (str(day),))]
    return duckdb.sql(f"SELECT day, customer_id, article_id, sales_channel_id, price, quantity"
                      f" FROM read_parquet('{path.removeprefix('file://')}')").fetchall()


def recount(ecom, day):
    """Classify the day's transactions in plain Python, as the README's rules say."""
    folder = ecom.raw("raw", "hm", f"dt={day}")
    articles = {r["article_id"] for r in read_csv(folder / "articles.csv")}
    customers = {r["customer_id"] for r in read_csv(folder / "customers.csv")}
    reasons, clean = Counter(), Counter()
    for r in read_csv(folder / "transactions_train.csv"):
        if r["t_dat"] != str(day):
            reasons["other_day"] += 1
        elif r["article_id"] not in articles:
            reasons["unknown_article"] += 1
        elif r["customer_id"] not in customers:
            reasons["unknown_customer"] += 1
        else:
            clean[(r["customer_id"], r["article_id"], int(r["sales_channel_id"]), float(r["price"]))] += 1
    return reasons, clean


def test_interactions_rejections_matrix_and_rerun(ecom, lineage_events):
    from domains.ecommerce_ml import interactions
    from domains.ecommerce_ml.common import Run

    prev = DAY - timedelta(days=1)
    ecom.generate(prev, parts=("articles", "customers", "transactions"))
    truths = ecom.generate(DAY, parts=("articles", "customers", "transactions"))
    # the previous day through the domain functions (the DAG's own tasks), this day through the DAG
    run = Run.for_day(DAG_ID, prev, "earlier")
    interactions.load_interactions(run, interactions.build_interactions(run, ecom.root()), ecom.root())
    interactions.build_matrix(run, ecom.root())

    dr, states = run_dag(DAG_ID, logical_date=logical(DAY))
    assert dr.state == "success", states
    # each Asset event names the OpenLineage dataset its task reported (one dataset, two names)
    events = lineage_events()
    for task_id, outlets in (("load_interactions", 2), ("build_user_item_matrix", 1)):  # tables and artifacts
        named = {(e["openlineage"]["namespace"], e["openlineage"]["name"]) for e in asset_event_extras(dr, task_id)}
        assert len(named) == outlets
        assert named <= lineage_io(events, f"{DAG_ID}.{task_id}")[1], (task_id, named)
    # lineage (issue 23): the check reads the day's drop in the lake, as the build does
    drop = {f"raw/hm/dt={DAY}/{name}" for name in ("articles.csv", "customers.csv", "transactions_train.csv")}
    assert lake_io(events, f"{DAG_ID}.validate_transactions") == (drop, set())
    assert drop <= lake_io(events, f"{DAG_ID}.build_interactions")[0]
    reasons, clean = recount(ecom, DAY)
    c = truths.counts
    assert reasons == {"other_day": c["transactions_other_day"], "unknown_article": c["transactions_unknown_article"],
                       "unknown_customer": c["transactions_unknown_customer"]}
    assert ecom.query("SELECT reason, count(*) FROM interaction_rejections WHERE day = %s GROUP BY reason"
                      " ORDER BY reason", (DAY,)) == sorted(reasons.items())
    # the interactions live in the lake only (migration 0006): no PostgreSQL copy, the artifact holds each row
    assert ecom.query("SELECT to_regclass('interactions')") == [(None,)]
    assert ecom.query("SELECT kind, row_count FROM dataset_registry WHERE dataset = 'interactions' AND version = %s",
                      (str(DAY),)) == [("artifact", len(clean))]
    stored = lake_interactions(ecom, DAY)
    assert {(cu, a, ch, p): q for d, cu, a, ch, p, q in stored if d == DAY} == dict(clean)
    assert len(stored) == len(clean)
    assert sum(clean.values()) + sum(reasons.values()) == c["transactions"]
    assert max(clean.values()) > 1  # identical rows became a quantity
    ids = {r[2] for r in stored}
    assert all(len(i) == 10 and i.startswith("0") for i in ids)  # leading zeros kept
    # what the domain's users query: a DuckDB view over the registered days
    with interactions.open_interactions(prev, DAY, ecom.root()) as con:
        assert con.sql("SELECT day, count(*), sum(quantity) FROM interactions GROUP BY day ORDER BY day").fetchall() \
            == [(prev, len(recount(ecom, prev)[1]), sum(recount(ecom, prev)[1].values())),
                (DAY, len(clean), sum(clean.values()))]
    # rejected rows name their line in the file
    raw = read_csv(ecom.raw("raw", "hm", f"dt={DAY}", "transactions_train.csv"))
    line, article = ecom.query("SELECT line, article_id FROM interaction_rejections WHERE reason = 'unknown_article'"
                               " AND day = %s"
                               " ORDER BY line LIMIT 1", (DAY,))[0]
    assert raw[line - 2]["article_id"] == article

    # the matrix covers both days: pairs and items recounted
    _, clean_prev = recount(ecom, prev)
    pairs = Counter()
    for (cust, art, _, _), q in (clean_prev + Counter()).items():
        pairs[(cust, art)] += q
    for (cust, art, _, _), q in clean.items():
        pairs[(cust, art)] += q
    path, rows = ecom.query("SELECT path, row_count FROM dataset_registry WHERE dataset = 'user_item_matrix'"
                            " AND version = %s", (str(DAY),))[0]
    local = path.split("@", 1)[-1] if "@" in path else path.removeprefix("file://")
    got = duckdb.sql(f"SELECT customer_id, article_id, items, recency_days FROM read_parquet('{local}')").fetchall()
    assert rows == len(pairs) == len(got)
    assert {(cu, a): i for cu, a, i, _ in got} == dict(pairs)
    assert {r for *_, r in got} == {0, 1}

    before, files = ecom.tables_snapshot(*TABLES), ecom.lake_files()
    dr, states = run_dag(DAG_ID, logical_date=logical(DAY))
    assert dr.state == "success", states
    assert ecom.tables_snapshot(*TABLES) == before
    assert ecom.lake_files() == files


@pytest.mark.parametrize("damage, line, column", [("type", 5, "price"), ("truncate", None, None)])
def test_corrupt_transactions_fail_naming_file_line_column_and_write_nothing(ecom, damage, line, column):
    from domains.ecommerce_ml import ingest, interactions
    from domains.ecommerce_ml.common import Run

    ecom.generate(DAY, parts=("articles", "customers", "transactions"))
    path = ecom.raw("raw", "hm", f"dt={DAY}", "transactions_train.csv")
    lines = path.read_text().splitlines(keepends=True)
    if damage == "type":
        fields = lines[4].split(",")
        fields[3] = "0.05EUR"
        lines[4] = ",".join(fields)
        path.write_text("".join(lines))
    else:
        path.write_text("".join(lines)[:-30])
        line = len(lines)
        cut_fields = len(path.read_text().splitlines()[-1].split(","))
        column = ["t_dat", "customer_id", "article_id", "price", "sales_channel_id"][cut_fields - 1]
    with pytest.raises(ingest.CorruptFile) as err:
        interactions.validate_transactions(Run.for_day(DAG_ID, DAY), ecom.root())
    assert str(err.value).startswith(f"{ecom.root() / 'raw' / 'hm' / f'dt={DAY}' / 'transactions_train.csv'}: "
                                     f"line {line}, column {column!r}")
    if damage == "truncate":
        return
    dr, states = run_dag(DAG_ID, logical_date=logical(DAY))
    assert dr.state == "failed" and states["validate_transactions"] == "failed"
    assert states["load_interactions"] != "success"
    for table in TABLES:
        assert ecom.rows(table) == 0
    assert not ecom.raw("curated").exists()


def test_a_run_without_a_logical_date_processes_the_last_complete_day_like_the_scheduled_run(ecom):
    """Triggered at D+1 10:30 without a logical date (REST ``{"logical_date": null}``): no data
    interval in the context; the run processes day D, the last complete interval of
    ``0 2 * * *``, and the scheduled run of the same day then changes nothing."""
    ecom.generate(DAY, parts=("articles", "customers", "transactions"))
    dr, states = run_dag(DAG_ID, logical_date=None, run_after=logical(DAY).add(hours=8, minutes=30))
    assert dr.state == "success", states
    assert dr.logical_date is None and dr.data_interval_start is None
    assert {r[0] for r in lake_interactions(ecom, DAY)} == {DAY}
    assert ecom.query("SELECT DISTINCT version FROM dataset_registry WHERE dag_id = %s", (DAG_ID,)) == [(str(DAY),)]
    before, files = ecom.tables_snapshot(*TABLES), ecom.lake_files()
    dr, states = run_dag(DAG_ID, logical_date=logical(DAY))
    assert dr.state == "success", states
    assert ecom.tables_snapshot(*TABLES) == before
    assert ecom.lake_files() == files
