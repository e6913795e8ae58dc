"""DAG 4 (customer features) and DAG 5 (time series), both from the lake's curated files:
the interaction artifacts DAG 1 registered (``interactions``) and the article features
artifact DAG 2 registered (``article_content``) for the same day, read by DuckDB.

Customer features (one row per customer of the day's ``customers.csv``, window
``CUSTOMER_WINDOW_DAYS`` = 365): RFM (recency in days, purchase days, spend; quintile scores
among buyers, ties broken by customer_id), the most bought product group and colour (ties:
alphabetical), the online share of items, age band, club status and news frequency in one
spelling each, FN/Active as booleans. The table holds the newest day's snapshot.

Time series (day D, window 28 days; days without sales count as zero): per article with
sales in the window and per product group: units and revenue of D, 7- and 28-day units,
``trend_score`` = (units_7d/7 + 1) / (units_28d/28 + 1), and per group ``weekday_index`` =
mean units on D's weekday / mean daily units over the 28 days.
"""

from __future__ import annotations

from contextlib import ExitStack, closing
from datetime import timedelta

from domains.ecommerce_ml import assets, formats, ingest, lake, registry
from domains.ecommerce_ml.common import (
    Run,
    artifact_output,
    copy_from_duckdb,
    lake_path,
    publish_parquet,
    refuse_future_day,
    registered_paths,
)
from domains.ecommerce_ml.db import DATABASE

CUSTOMER_WINDOW_DAYS = 365
SERIES_WINDOW_DAYS = 28
CUSTOMER_COLUMNS = [
    "customer_id", "as_of", "age", "age_band", "club_member_status", "fashion_news_frequency", "fn", "active",
    "postal_code", "first_purchase_day", "last_purchase_day", "recency_days", "frequency", "items", "monetary",
    "online_share", "r_score", "f_score", "m_score", "rfm_segment", "preferred_product_group", "preferred_colour",
]
ARTICLE_SERIES_COLUMNS = ["day", "article_id", "units", "revenue", "units_7d", "units_28d", "trend_score"]
GROUP_SERIES_COLUMNS = ["day", "product_group_name", "units", "revenue", "units_7d", "units_28d", "weekday_index",
                        "trend_score"]


def _inputs(cur, root, run: Run, window_days: int, stack: ExitStack) -> tuple[list[str], str]:
    """Local names of the registered interaction files in the window and of the day's article features."""
    first = (run.day - timedelta(days=window_days - 1)).isoformat()
    days = registered_paths(cur, "interactions", first, run.day_version)
    if not days or days[-1][0] != run.day_version:
        raise FileNotFoundError(f"no registered interactions for {run.day}: ecommerce_ml_user_item_interactions "
                                "has not processed that day yet")
    content = registered_paths(cur, "article_content", run.day_version, run.day_version)
    if not content:
        raise FileNotFoundError(f"no registered article_content for {run.day}: ecommerce_ml_article_content "
                                "has not processed that day yet")
    files = [stack.enter_context(lake.readable(lake_path(root, p))) for _, p in days]
    return files, stack.enter_context(lake.readable(lake_path(root, content[0][1])))


@ingest.fails_fast
def validate_customers(run: Run, root=None) -> dict:
    root = root or lake.lake_root()
    path = lake.hm_day(root, run.day) / "customers.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no customers drop for {run.day}")
    with lake.readable(path) as local, ingest.duckdb_session() as con:
        rows = ingest.load_csv(con, "customers", local, formats.CUSTOMERS, lake.url(path))
        dup = ingest.fetch(con, "SELECT customer_id, min(_line), max(_line) FROM customers GROUP BY 1"
                                " HAVING count(*) > 1 ORDER BY 2 LIMIT 1")
        if dup:
            raise ingest.CorruptFile(lake.url(path), dup[0][2], "customer_id",
                                     f"customer {dup[0][0]} appears again (first on line {dup[0][1]})")
    return {"path": lake.url(path), "rows": rows}


CUSTOMER_SQL = """
WITH tx AS (SELECT t.*, a.product_group_name, a.colour_group_name
            FROM read_parquet({files}) t LEFT JOIN read_parquet('{articles}') a USING (article_id)),
agg AS (
    SELECT customer_id, min(day) AS first_day, max(day) AS last_day, count(DISTINCT day)::INTEGER AS frequency,
           sum(quantity)::INTEGER AS items, round(sum(price * quantity), 6) AS monetary,
           round(sum(quantity) FILTER (WHERE sales_channel_id = 2) / sum(quantity), 6) AS online_share
    FROM tx GROUP BY customer_id),
grp AS (SELECT customer_id, first(product_group_name ORDER BY n DESC, product_group_name) AS g FROM
        (SELECT customer_id, product_group_name, sum(quantity) AS n FROM tx WHERE product_group_name IS NOT NULL
         GROUP BY ALL) GROUP BY customer_id),
col AS (SELECT customer_id, first(colour_group_name ORDER BY n DESC, colour_group_name) AS c FROM
        (SELECT customer_id, colour_group_name, sum(quantity) AS n FROM tx WHERE colour_group_name IS NOT NULL
         GROUP BY ALL) GROUP BY customer_id),
scored AS (
    SELECT *, (DATE '{day}' - last_day)::INTEGER AS recency_days,
           ntile(5) OVER (ORDER BY last_day, customer_id)::SMALLINT AS r_score,
           ntile(5) OVER (ORDER BY frequency, customer_id)::SMALLINT AS f_score,
           ntile(5) OVER (ORDER BY monetary, customer_id)::SMALLINT AS m_score
    FROM agg)
SELECT c.customer_id, DATE '{day}' AS as_of, c.age,
       CASE WHEN c.age IS NULL THEN 'unknown' WHEN c.age < 25 THEN '16-24' WHEN c.age < 35 THEN '25-34'
            WHEN c.age < 45 THEN '35-44' WHEN c.age < 55 THEN '45-54' WHEN c.age < 65 THEN '55-64' ELSE '65+' END
         AS age_band,
       coalesce(nullif(upper(trim(c.club_member_status)), ''), 'UNKNOWN') AS club_member_status,
       CASE upper(trim(coalesce(c.fashion_news_frequency, ''))) WHEN 'NONE' THEN 'NONE' WHEN 'REGULARLY' THEN 'REGULARLY'
            WHEN 'MONTHLY' THEN 'MONTHLY' ELSE 'UNKNOWN' END AS fashion_news_frequency,
       coalesce(c.FN = 1, false) AS fn, coalesce(c.Active = 1, false) AS active, c.postal_code,
       s.first_day AS first_purchase_day, s.last_day AS last_purchase_day, s.recency_days,
       coalesce(s.frequency, 0) AS frequency, coalesce(s.items, 0) AS items, coalesce(s.monetary, 0) AS monetary,
       s.online_share, s.r_score, s.f_score, s.m_score,
       s.r_score::VARCHAR || s.f_score::VARCHAR || s.m_score::VARCHAR AS rfm_segment,
       grp.g AS preferred_product_group, col.c AS preferred_colour
FROM customers c LEFT JOIN scored s USING (customer_id) LEFT JOIN grp USING (customer_id)
LEFT JOIN col USING (customer_id)
ORDER BY c.customer_id
"""


def build_customer_features(run: Run, root=None) -> dict:
    from shared.lineage import record_postgres_io

    refuse_future_day(run, run.day)
    root = root or lake.lake_root()
    pg = DATABASE.hook()
    path = lake.hm_day(root, run.day) / "customers.csv"
    with ExitStack() as stack, closing(DATABASE.connect(pg)) as conn:
        con = stack.enter_context(ingest.duckdb_session())
        with conn.cursor() as cur:
            files, articles = _inputs(cur, root, run, CUSTOMER_WINDOW_DAYS, stack)
        local = stack.enter_context(lake.readable(path))
        ingest.load_csv(con, "customers", local, formats.CUSTOMERS, lake.url(path))
        sql = CUSTOMER_SQL.format(files=files, articles=articles, day=run.day)
        artifact = publish_parquet(con, sql, root, "customer_features", run.day_version, "customers")
        with conn.cursor() as cur:
            cur.execute("SELECT max(as_of) FROM customer_features")
            newest = cur.fetchone()[0]
            current = newest is None or newest <= run.day
            if current:
                cur.execute("DELETE FROM customer_features")
                with lake.readable(lake_path(root, artifact["path"])) as out:
                    copy_from_duckdb(con, f"SELECT {', '.join(CUSTOMER_COLUMNS)} FROM read_parquet('{out}')", cur,
                                     "customer_features", CUSTOMER_COLUMNS)
            outputs = [artifact_output(artifact, "customer_features"),
                       registry.table_output(cur, "customer_features", "customer_features",
                                             assets.table("customer_features"), "as_of = %s", (run.day,))]
            for out in outputs:
                registry.register(cur, out, run.day_version, run.dag_id, run.run_id)
        conn.commit()
    record_postgres_io(pg, outputs=["customer_features", "dataset_registry"])
    registry.emit_asset_events(outputs, run.day_version)
    return {"rows": artifact["rows"], "current": current, "interaction_days": len(files)}


SERIES_DAILY = """
CREATE TABLE daily AS
SELECT t.day, t.article_id, coalesce(a.product_group_name, 'Unknown') AS product_group_name,
       sum(t.quantity)::INTEGER AS units, sum(t.price * t.quantity) AS revenue
FROM read_parquet({files}) t LEFT JOIN read_parquet('{articles}') a USING (article_id)
WHERE t.day > DATE '{day}' - INTERVAL 28 DAY AND t.day <= DATE '{day}'
GROUP BY ALL
"""

SERIES_ARTICLE = """
SELECT DATE '{day}' AS day, article_id,
       coalesce(sum(units) FILTER (WHERE day = DATE '{day}'), 0)::INTEGER AS units,
       round(coalesce(sum(revenue) FILTER (WHERE day = DATE '{day}'), 0), 6) AS revenue,
       coalesce(sum(units) FILTER (WHERE day > DATE '{day}' - INTERVAL 7 DAY), 0)::INTEGER AS units_7d,
       sum(units)::INTEGER AS units_28d,
       round((coalesce(sum(units) FILTER (WHERE day > DATE '{day}' - INTERVAL 7 DAY), 0) / 7.0 + 1)
             / (sum(units) / 28.0 + 1), 6) AS trend_score
FROM daily GROUP BY article_id ORDER BY article_id
"""

SERIES_GROUP = """
SELECT DATE '{day}' AS day, product_group_name,
       coalesce(sum(units) FILTER (WHERE day = DATE '{day}'), 0)::INTEGER AS units,
       round(coalesce(sum(revenue) FILTER (WHERE day = DATE '{day}'), 0), 6) AS revenue,
       coalesce(sum(units) FILTER (WHERE day > DATE '{day}' - INTERVAL 7 DAY), 0)::INTEGER AS units_7d,
       sum(units)::INTEGER AS units_28d,
       round((coalesce(sum(units) FILTER (WHERE dayofweek(day) = dayofweek(DATE '{day}')), 0) / 4.0)
             / (sum(units) / 28.0), 6) AS weekday_index,
       round((coalesce(sum(units) FILTER (WHERE day > DATE '{day}' - INTERVAL 7 DAY), 0) / 7.0 + 1)
             / (sum(units) / 28.0 + 1), 6) AS trend_score
FROM daily GROUP BY product_group_name ORDER BY product_group_name
"""


def build_time_series(run: Run, root=None) -> dict:
    from shared.lineage import record_postgres_io

    root = root or lake.lake_root()
    pg = DATABASE.hook()
    day = run.day
    with ExitStack() as stack, closing(DATABASE.connect(pg)) as conn:
        con = stack.enter_context(ingest.duckdb_session())
        with conn.cursor() as cur:
            files, articles = _inputs(cur, root, run, SERIES_WINDOW_DAYS, stack)
        con.execute(SERIES_DAILY.format(files=files, articles=articles, day=day))
        art = publish_parquet(con, SERIES_ARTICLE.format(day=day), root, "sales_daily_article", run.day_version,
                              "articles")
        grp = publish_parquet(con, SERIES_GROUP.format(day=day), root, "sales_daily_group", run.day_version, "groups")
        with conn.cursor() as cur:
            for table, artifact, cols in (("sales_daily_article", art, ARTICLE_SERIES_COLUMNS),
                                          ("sales_daily_group", grp, GROUP_SERIES_COLUMNS)):
                cur.execute(f"DELETE FROM {table} WHERE day = %s", (day,))
                with lake.readable(lake_path(root, artifact["path"])) as out:
                    copy_from_duckdb(con, f"SELECT {', '.join(cols)} FROM read_parquet('{out}')", cur, table, cols)
            outputs = [artifact_output(art, "sales_daily_article"), artifact_output(grp, "sales_daily_group")] + [
                registry.table_output(cur, t, t, assets.table(t), "day = %s", (day,))
                for t in ("sales_daily_article", "sales_daily_group")]
            for out in outputs:
                registry.register(cur, out, run.day_version, run.dag_id, run.run_id)
        conn.commit()
    record_postgres_io(pg, outputs=["sales_daily_article", "sales_daily_group", "dataset_registry"])
    registry.emit_asset_events(outputs, run.day_version)
    return {"articles": art["rows"], "groups": grp["rows"], "interaction_days": len(files)}
