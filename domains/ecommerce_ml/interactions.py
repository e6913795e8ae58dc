"""DAG 1, user-item interactions: a day's ``transactions_train.csv`` -> ``interactions`` (the
lake artifact ``curated/interactions/v=<day>/``; cleaned, one row per customer, article,
channel and price with the quantity bought),
``interaction_rejections`` (each rejected row with its line and reason) and the
implicit-feedback matrix artifact (customer x article: purchases, quantity, recency).

Rejection reasons, checked in this order:

- ``missing_value``: an empty t_dat, customer_id, article_id, price or sales_channel_id;
- ``other_day``: ``t_dat`` is not the run's day (a row of another day delivered again: a
  duplicate of that day's data, never counted twice);
- ``unknown_article`` / ``unknown_customer``: not in the same day's ``articles.csv`` /
  ``customers.csv``;
- ``invalid_price`` (not > 0), ``invalid_channel`` (not 1 or 2).

Identical rows within the day are H&M's way of writing a quantity (one row per item): they
are kept as ``quantity``, not rejected.

The matrix (``curated/user_item_matrix/v=<day>/``) aggregates the cleaned interaction
artifacts of the ``window_days`` (default 90) days up to the run's day, through one partial
aggregate per day (``curated/user_item_day/v=<day>/``: customer, article, day, items; built
when the day first enters a matrix, rebuilt only if its interactions change): per customer and
article the purchase days, items, first and last day, ``recency_days`` (run day - last day),
``weight`` = sum over items of 0.5 ** (age in days / 30) (a 30-day half-life) and ``purchases``
(the window's (day, items), oldest first, from which the other columns are derived). The matrix is
built incrementally from the previous one: its Parquet footer names the day partials it holds, the
days that left the window (or whose interactions changed) are filtered out of each pair's
``purchases`` and the days new to it merged in, so a day reads one matrix and one partial instead
of the window's 90; without a usable previous matrix it is built from every partial of the window.
Everything runs in DuckDB with a memory limit over the files; a large matrix is built one customer
range at a time (:func:`_matrix_sql`), so its memory does not grow with the window. The day's cleaned interactions are
kept in the lake only (the registered artifact is the system of record; migration 0006 dropped the
PostgreSQL copy): :func:`open_interactions` gives a DuckDB view over a range of days, and
:func:`open_matrix` a day's matrix as training input, one customer range at a time.
PostgreSQL gets the rejections (by COPY) and the registry rows.
"""

from __future__ import annotations

import json
import os
import tempfile
from bisect import bisect_left
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from itertools import accumulate, pairwise
from pathlib import Path
from typing import Any

from domains.ecommerce_ml import assets, formats, ingest, lake, registry
from domains.ecommerce_ml.common import (
    Run,
    artifact_output,
    copy_from_duckdb,
    lake_path,
    publish_parquet,
    registered_paths,
)
from domains.ecommerce_ml.db import DATABASE

DATASET = "interactions"
MATRIX = "user_item_matrix"
DAY_PAIRS = "user_item_day"
WINDOW_DAYS = 90
INTERACTION_COLUMNS = ["day", "customer_id", "article_id", "sales_channel_id", "price", "quantity"]
REJECTION_COLUMNS = ["day", "line", "reason", "t_dat", "customer_id", "article_id", "price", "sales_channel_id"]


def _load_day(con, root, run: Run) -> dict:
    day_dir = lake.hm_day(root, run.day)
    counts = {}
    for name, fmt, table in (("transactions_train.csv", formats.TRANSACTIONS, "tx"),
                             ("articles.csv", formats.ARTICLES, "articles"),
                             ("customers.csv", formats.CUSTOMERS, "customers")):
        path = day_dir / name
        if not path.exists():
            raise FileNotFoundError(f"{path}: no {name} drop for {run.day}")
        with lake.readable(path) as local:
            counts[table] = ingest.load_csv(con, table, local, fmt, lake.url(path))
    return counts


@ingest.fails_fast
def validate_transactions(run: Run, root=None) -> dict:
    """Read the day's three H&M files strictly; a corrupt one fails here, before any write."""
    root = root or lake.lake_root()
    with ingest.duckdb_session() as con:
        return _load_day(con, root, run)


CLASSIFY = """
CREATE VIEW classified AS
SELECT tx.*,
  CASE WHEN t_dat IS NULL OR customer_id IS NULL OR article_id IS NULL OR price IS NULL OR sales_channel_id IS NULL
         THEN 'missing_value'
       WHEN t_dat <> DATE '{day}' THEN 'other_day'
       WHEN NOT EXISTS (SELECT 1 FROM article_ids a WHERE a.article_id = tx.article_id) THEN 'unknown_article'
       WHEN NOT EXISTS (SELECT 1 FROM customer_ids c WHERE c.customer_id = tx.customer_id) THEN 'unknown_customer'
       WHEN price <= 0 THEN 'invalid_price'
       WHEN sales_channel_id NOT IN (1, 2) THEN 'invalid_channel'
  END AS reason
FROM tx
"""


@ingest.fails_fast
def build_interactions(run: Run, root=None) -> dict:
    """Clean the day and publish it as ``curated/interactions/v=<day>/`` (one Parquet file)."""
    root = root or lake.lake_root()
    with ingest.duckdb_session() as con:
        counts = _load_day(con, root, run)
        con.execute("CREATE TABLE article_ids AS SELECT DISTINCT article_id FROM articles")
        con.execute("CREATE TABLE customer_ids AS SELECT DISTINCT customer_id FROM customers")
        con.execute("DROP TABLE articles")
        con.execute("DROP TABLE customers")
        # a view, not a table: the day's rows are classified twice while they stream (into the clean
        # artifact, then into the small rejections table) instead of being written into DuckDB once more
        con.execute(CLASSIFY.format(day=run.day.isoformat()))
        clean = publish_parquet(con, f"""
            SELECT DATE '{run.day}' AS day, customer_id, article_id, sales_channel_id::SMALLINT AS sales_channel_id,
                   price, count(*)::INTEGER AS quantity
            FROM classified WHERE reason IS NULL
            GROUP BY ALL ORDER BY customer_id, article_id, sales_channel_id, price""", root, DATASET, run.day_version)
        con.execute("CREATE TABLE rejected AS SELECT * FROM classified WHERE reason IS NOT NULL")
        con.execute("DROP TABLE tx")
        rejected = publish_parquet(con, f"""
            SELECT DATE '{run.day}' AS day, _line::INTEGER AS line, reason, t_dat, customer_id, article_id, price,
                   sales_channel_id
            FROM rejected ORDER BY _line""", root, "interaction_rejections", run.day_version)
        reasons = dict(ingest.fetch(con, "SELECT reason, count(*) FROM rejected GROUP BY reason ORDER BY reason"))
    return {"rows_read": counts["tx"], "interactions": clean, "rejections": rejected, "rejected": reasons}


def load_interactions(run: Run, built: dict, root=None) -> dict:
    """Register the day: the cleaned interactions artifact (the system of record, read by DuckDB)
    and its rejections, COPYed into ``interaction_rejections`` (served by day and line), in one
    transaction. The interactions themselves are not loaded into PostgreSQL (migration 0006)."""
    from shared.lineage import record_postgres_io

    root = root or lake.lake_root()
    pg = DATABASE.hook()
    clean, rejected = built["interactions"], built["rejections"]
    with ingest.duckdb_session() as con, closing(DATABASE.connect(pg)) as conn, \
            lake.readable(root / "curated" / rejected["relative"]) as rejected_local:
        with conn.cursor() as cur:
            cur.execute("DELETE FROM interaction_rejections WHERE day = %s", (run.day,))
            copy_from_duckdb(con, f"SELECT {', '.join(REJECTION_COLUMNS)} FROM read_parquet('{rejected_local}')",
                             cur, "interaction_rejections", REJECTION_COLUMNS)
            outputs = [
                artifact_output(clean, DATASET),
                registry.table_output(cur, "interaction_rejections", "interaction_rejections",
                                      assets.table("interaction_rejections"), "day = %s", (run.day,)),
            ]
            for out in outputs:
                registry.register(cur, out, run.day_version, run.dag_id, run.run_id)
        conn.commit()
    record_postgres_io(pg, outputs=["interaction_rejections", "dataset_registry"])
    registry.emit_asset_events(outputs, run.day_version)
    return {"interactions": outputs[0].row_count, "rejections": outputs[1].row_count}


def interaction_files(first, last, root=None) -> list[tuple[str, Any]]:
    """(day, ObjectStoragePath) of the registered interaction days in ``[first, last]``, oldest first."""
    root = root or lake.lake_root()
    with closing(DATABASE.connect()) as conn, conn.cursor() as cur:
        days = registered_paths(cur, DATASET, str(first), str(last))
    return [(version, lake_path(root, path)) for version, path in days]


@contextmanager
def open_interactions(first, last, root=None):
    """A DuckDB connection with the view ``interactions`` (the columns of the old table: day,
    customer_id, article_id, sales_channel_id, price, quantity) over the registered days in
    ``[first, last]``: what the domain's users query (recommendation training, features)::

        with open_interactions("2024-03-06", "2024-06-03") as con:
            con.sql("SELECT article_id, sum(quantity) FROM interactions GROUP BY 1 ORDER BY 2 DESC LIMIT 20")
    """
    files = interaction_files(first, last, root)
    if not files:
        raise FileNotFoundError(f"no registered interactions between {first} and {last}")
    with ingest.duckdb_session() as con, _local_files([p for _, p in files]) as local:
        con.execute(f"CREATE VIEW interactions AS SELECT {', '.join(INTERACTION_COLUMNS)} FROM read_parquet({local!r})")
        yield con


@dataclass(frozen=True)
class MatrixBatch:
    """One customer range of a matrix as a recommender's input: the pair ``i`` is customer
    ``first_customer + customer[i]``'s purchase of article ``article[i]`` (an index into the matrix's
    ``articles``) with ``weight[i]``; ``customers`` are the range's customer ids, in code order
    (``customers[customer[i]]`` is the pair's customer)."""

    first_customer: int
    customers: Any
    customer: Any
    article: Any
    weight: Any


class TrainingMatrix:
    """A matrix file read for training: ``articles`` (every article id of the matrix, sorted; an
    article's code is its index) and :meth:`batches`, the pairs one customer range at a time, so the
    reader's memory does not grow with the matrix (a pair is 16 bytes in the batch's arrays)."""

    def __init__(self, con, path: str, range_rows: int) -> None:
        self._con, self._path, self._range_rows = con, path, range_rows
        con.execute(f"CREATE OR REPLACE TEMP TABLE matrix_articles AS SELECT article_id,"
                    f" (row_number() OVER (ORDER BY article_id) - 1)::INTEGER AS ai"
                    f" FROM (SELECT DISTINCT article_id FROM read_parquet('{path}'))")
        self.articles = con.execute("SELECT article_id FROM matrix_articles ORDER BY ai").fetchnumpy()["article_id"]

    def batches(self):
        """The pairs by customer range (cut at the file's row groups, about ``range_rows`` pairs each;
        a customer's pairs are never split), ranges in customer order, a range's pairs in no particular
        order (sorting them would double the read's time)."""
        con, path = self._con, self._path
        bounds = [None, *_customer_ranges(con, [path], self._range_rows), None]
        first = 0
        for low, high in pairwise(bounds):
            where = _where(low, high)
            con.execute(f"CREATE OR REPLACE TEMP TABLE matrix_customers AS SELECT customer_id,"
                        f" (row_number() OVER (ORDER BY customer_id) - 1)::INTEGER AS ci"
                        f" FROM (SELECT DISTINCT customer_id FROM read_parquet('{path}'){where})")
            customers = con.execute("SELECT customer_id FROM matrix_customers ORDER BY ci").fetchnumpy()["customer_id"]
            pairs = con.execute(f"SELECT c.ci, a.ai, m.weight FROM (SELECT * FROM read_parquet('{path}'){where}) m"
                                " JOIN matrix_customers c USING (customer_id) JOIN matrix_articles a USING (article_id)"
                                ).fetchnumpy()
            if len(customers):
                yield MatrixBatch(first, customers, pairs["ci"], pairs["ai"], pairs["weight"])
            first += len(customers)


@contextmanager
def open_matrix(day, root=None, range_rows: int | None = None):
    """The registered user-item matrix of ``day`` as a :class:`TrainingMatrix` (recommendation
    training's input), read one customer range of about ``range_rows`` pairs at a time (default
    ``ECOMMERCE_ML_MATRIX_RANGE_ROWS`` or :data:`RANGE_ROWS`, read when used)::

        with open_matrix("2024-06-03") as matrix:
            for batch in matrix.batches():
                model.partial_fit(batch.first_customer + batch.customer, batch.article, batch.weight)
    """
    root = root or lake.lake_root()
    range_rows = _range_rows(range_rows)
    with closing(DATABASE.connect()) as conn, conn.cursor() as cur:
        found = registered_paths(cur, MATRIX, str(day), str(day))
    if not found:
        raise FileNotFoundError(f"no registered {MATRIX} for {day}: run build_matrix first")
    with ingest.duckdb_session() as con, _local_files([lake_path(root, found[0][1])]) as (local,):
        yield TrainingMatrix(con, local, range_rows)


# the matrix's columns from each pair's purchases in the window (a list of {day, items}, oldest first);
# both builds, from the day partials or from the previous matrix, derive them here
MATRIX_SQL = """
SELECT customer_id, article_id,
       len(purchases)::INTEGER AS purchase_days,
       list_sum(list_transform(purchases, lambda p: p.items))::INTEGER AS items,
       purchases[1].day AS first_day, purchases[-1].day AS last_day,
       (DATE '{day}' - purchases[-1].day)::INTEGER AS recency_days,
       round(list_sum(list_transform(purchases, lambda p: p.items * pow(0.5, (DATE '{day}' - p.day) / 30.0))), 6)
           AS weight,
       purchases
FROM ({pairs}) WHERE len(purchases) > 0
ORDER BY customer_id, article_id"""
# one row per customer, article and day: what a day adds to the matrix (its channels and prices summed)
DAY_PAIRS_SQL = """
SELECT customer_id, article_id, day, sum(quantity)::INTEGER AS items
FROM read_parquet({files}) GROUP BY customer_id, article_id, day"""
# the purchases of day partials per pair. list() without ORDER BY: DuckDB spills a plain list aggregate
# beyond its memory limit, an ordered one it does not (list_sort orders the days instead)
PURCHASES_SQL = """
SELECT customer_id, article_id, list_sort(list({{'day': day, 'items': items}})) AS purchases
FROM read_parquet({files}){where} GROUP BY customer_id, article_id"""
# a single partial holds one row per pair: no grouping
ONE_DAY_SQL = """
SELECT customer_id, article_id, [{{'day': day, 'items': items}}] AS purchases FROM read_parquet({files}){where}"""
# the previous matrix's purchases on the days it keeps, merged with the new days' (a full outer join on the pair)
MERGE_SQL = """
SELECT coalesce(o.customer_id, n.customer_id) AS customer_id, coalesce(o.article_id, n.article_id) AS article_id,
       CASE WHEN n.purchases IS NULL THEN o.purchases WHEN o.purchases IS NULL THEN n.purchases
            ELSE list_sort(list_concat(o.purchases, n.purchases)) END AS purchases
FROM (SELECT customer_id, article_id, {kept} AS purchases FROM read_parquet('{base}'){where}) o
FULL OUTER JOIN ({added}) n ON o.customer_id = n.customer_id AND o.article_id = n.article_id"""
# the reference: the matrix regrouped from every interactions file of the window (full_matrix_sql)
REGROUP_SQL = """
SELECT customer_id, article_id,
       count(*)::INTEGER AS purchase_days,
       sum(items)::INTEGER AS items,
       min(day) AS first_day, max(day) AS last_day,
       (DATE '{day}' - max(day))::INTEGER AS recency_days,
       round(sum(items * pow(0.5, (DATE '{day}' - day) / 30.0)), 6) AS weight
FROM {pairs} GROUP BY customer_id, article_id
ORDER BY customer_id, article_id"""
WINDOW_KEY = "user_item_window"  # the matrix file's key-value metadata: {day: partial file name} it holds
MATRIX_KEEP_DAYS = 7  # matrix versions kept (the run's day and the 6 before): one is several hundred MB at 1x


def _day_pairs(cur, con, root, run: Run, first: str) -> list[Any]:
    """The per-day partial aggregates of the window (``curated/user_item_day/v=<day>/``), one per
    registered interactions day: built once, when a day first enters a matrix, and rebuilt only when
    that day's interactions change (the file name carries their content hash)."""
    cur.execute("SELECT i.version, i.path, i.content_hash, p.path FROM dataset_registry i"
                " LEFT JOIN dataset_registry p ON p.dataset = %s AND p.kind = 'artifact' AND p.version = i.version"
                " WHERE i.dataset = %s AND i.kind = 'artifact' AND i.version BETWEEN %s AND %s ORDER BY i.version",
                (DAY_PAIRS, DATASET, first, run.day_version))
    out = []
    for version, path, content_hash, pairs_path in cur.fetchall():
        stem = f"pairs-{content_hash.removeprefix('sha256:')[:16]}"
        if pairs_path is None or not pairs_path.rsplit("/", 1)[-1].startswith(stem + "-"):
            with lake.readable(lake_path(root, path)) as local:
                built = publish_parquet(con, DAY_PAIRS_SQL.format(files=[local]) + " ORDER BY customer_id, article_id",
                                        root, DAY_PAIRS, version, stem)
            registry.register(cur, artifact_output(built, DAY_PAIRS), version, run.dag_id, run.run_id)
            pairs_path = built["path"]
        out.append((version, lake_path(root, pairs_path)))
    return out


def _base_matrix(cur, con, root, run: Run) -> tuple[Any, dict] | None:
    """The latest registered matrix before the run's day and the window it holds ({day: partial file
    name}, from its footer); None when there is none or it predates the footer."""
    cur.execute("SELECT path FROM dataset_registry WHERE dataset = %s AND kind = 'artifact' AND version < %s"
                " ORDER BY version DESC LIMIT 1", (MATRIX, run.day_version))
    row = cur.fetchone()
    if row is None:
        return None
    path = lake_path(root, row[0])
    with lake.readable(path) as local:
        meta = dict(ingest.fetch(con, f"SELECT decode(key), decode(value) FROM parquet_kv_metadata('{local}')"))
    return (path, json.loads(meta[WINDOW_KEY])) if WINDOW_KEY in meta else None


# input rows (previous matrix + partials) per customer range of a matrix build (ECOMMERCE_ML_MATRIX_RANGE_ROWS
# overrides, read when used): DuckDB's 512 MB holds the merge, the grouping of several days into lists and
# the sort of about this many at 1x
RANGE_ROWS = 6_000_000


def _range_rows(range_rows: int | None = None) -> int:
    """Rows per customer range: ``range_rows``, else ``ECOMMERCE_ML_MATRIX_RANGE_ROWS`` (read here,
    when used), else :data:`RANGE_ROWS`."""
    return range_rows or int(os.environ.get("ECOMMERCE_ML_MATRIX_RANGE_ROWS") or RANGE_ROWS)


def _customer_ranges(con, files: list[str], range_rows: int) -> list[str]:
    """Split points on ``customer_id`` cutting the inputs (each sorted by customer and article) into
    ranges of about ``range_rows`` input rows, from their row groups' first and last customers in the
    Parquet footers (nothing else is read): a row group counts as below a point when it ends before
    it, half when it straddles it. Empty when the inputs fit one range."""
    groups = ingest.fetch(con, "SELECT coalesce(stats_min_value, stats_min), coalesce(stats_max_value, stats_max),"
                          f" row_group_num_rows FROM parquet_metadata({files!r}) WHERE path_in_schema = 'customer_id'")
    ends = {}
    for side in (0, 1):
        points = sorted((g[side], g[2]) for g in groups)
        ends[side] = ([v for v, _ in points], list(accumulate((n for _, n in points), initial=0)))

    def below(point: str) -> float:
        return sum(sums[bisect_left(values, point)] for values, sums in ends.values()) / 2

    cuts, last = [], 0.0
    for point in sorted({g[0] for g in groups} | {g[1] for g in groups}):
        if (rows := below(point)) - last >= range_rows:
            cuts.append(point)
            last = rows
    return cuts


def _where(low: str | None, high: str | None) -> str:
    """The filter of the customer range [low, high) (None: unbounded)."""
    terms = [f"customer_id {op} '{value.replace(chr(39), chr(39) * 2)}'"
             for op, value in ((">=", low), ("<", high)) if value is not None]
    return f" WHERE {' AND '.join(terms)}" if terms else ""


def _pairs_sql(base: str | None, keep: str, files: list[str], where: str) -> str:
    """The window's purchases per pair within one customer range: the previous matrix's kept days
    merged with the added days' partials, or the partials alone (no usable previous matrix)."""
    added = (ONE_DAY_SQL if len(files) == 1 else PURCHASES_SQL).format(files=files, where=where) if files else None
    if base is None:
        return added
    if added is None:
        return f"SELECT customer_id, article_id, {keep} AS purchases FROM read_parquet('{base}'){where}"
    return MERGE_SQL.format(kept=keep, base=base, added=added, where=where)


def _matrix_sql(con, day, base: str | None, keep: str, files: list[str], scratch: Path,
                range_rows: int | None = None) -> tuple[str, int]:
    """The matrix's query and its number of customer ranges: one query when the inputs fit one customer range; otherwise each range's
    matrix (merge, grouping and sort of that range's customers only) written to ``scratch`` in
    customer order and the query reads the parts in that order. (One query over every customer ran
    out of DuckDB's 512 MB at 1x once the window held 25 days; a range's memory does not grow with
    the window.)"""
    range_rows = _range_rows(range_rows)
    cuts = _customer_ranges(con, ([base] if base else []) + files, range_rows)
    if not cuts:
        return MATRIX_SQL.format(day=day, pairs=_pairs_sql(base, keep, files, "")), 1
    bounds = [None, *cuts, None]
    parts = []
    for i, (low, high) in enumerate(pairwise(bounds)):
        part = scratch / f"range-{i:04d}.parquet"
        sql = MATRIX_SQL.format(day=day, pairs=_pairs_sql(base, keep, files, _where(low, high)))
        con.execute(f"COPY ({sql}) TO '{part}' (FORMAT parquet)")
        parts.append(str(part))
    return f"SELECT * FROM read_parquet({parts!r})", len(parts)  # in list order: preserve_insertion_order is on


def build_matrix(run: Run, root=None, window_days: int = WINDOW_DAYS, incremental: bool = True,
                 range_rows: int | None = None) -> dict:
    """The implicit-feedback matrix over the registered interaction days in the window: the previous
    matrix (:func:`_base_matrix`) with the days it should no longer hold filtered out and the window's
    other days (:func:`_day_pairs`) merged in; from every partial of the window when there is no usable
    previous matrix (none, one without the footer, none of its days still in the window) or
    ``incremental`` is false."""
    from shared.lineage import record_postgres_io

    root = root or lake.lake_root()
    pg = DATABASE.hook()
    first = (run.day - timedelta(days=window_days - 1)).isoformat()
    with closing(DATABASE.connect(pg)) as conn, ingest.duckdb_session() as con:
        with conn.cursor() as cur:
            days = _day_pairs(cur, con, root, run, first)
            base = _base_matrix(cur, con, root, run) if incremental else None
        if not days or days[-1][0] != run.day_version:
            raise FileNotFoundError(f"no registered interactions for {run.day}: run load_interactions first")
        window = {version: p.name for version, p in days}
        kept = sorted(v for v, name in window.items() if base and base[1].get(v) == name)
        added = [p for v, p in days if v not in kept]
        with _local_files(added) as files, _local_files([base[0]] if kept else []) as base_local, \
                tempfile.TemporaryDirectory(prefix="ecommerce-ml-matrix-") as scratch:
            keep = "purchases"
            if kept and sorted(base[1]) != kept:
                keep = f"list_filter(purchases, lambda p: p.day IN ({', '.join(f'DATE {v!r}' for v in kept)}))"
            sql, ranges = _matrix_sql(con, run.day, base_local[0] if kept else None, keep, files, Path(scratch), range_rows)
            matrix = publish_parquet(con, sql, root, MATRIX, run.day_version,
                                     "matrix", kv_metadata={WINDOW_KEY: json.dumps(window, sort_keys=True)})
        with conn.cursor() as cur:
            out = artifact_output(matrix, MATRIX)
            registry.register(cur, out, run.day_version, run.dag_id, run.run_id)
            expired = _expire(cur, {DAY_PAIRS: first, MATRIX: str(run.day - timedelta(days=MATRIX_KEEP_DAYS - 1))})
        conn.commit()
    removed = _remove_files(root, expired)
    record_postgres_io(pg, outputs=["dataset_registry"])
    registry.emit_asset_events([out], run.day_version)
    return {"rows": matrix["rows"], "days": len(days), "path": matrix["path"],
            "mode": "incremental" if kept else "full", "days_added": len(added), "days_kept": len(kept), "ranges": ranges,
            "expired_files": removed}


# The raw H&M drops (raw/hm/dt=<day>/, 546 MB a day at 1x, 196 GiB a year) are read by the day's DAGs only;
# each file leaves the lake RAW_KEEP_DAYS days after its day, once every DAG that reads it has registered
# its output for that day (a day that failed, or is not processed yet, keeps its files: a rerun needs them).
RAW_KEEP_DAYS = 7
RAW_READERS = {  # file -> the registered artifacts (one per DAG reading it) that say its day was processed
    "transactions_train.csv": ("interactions",),
    "customers.csv": ("interactions", "customer_features"),
    "articles.csv": ("interactions", "article_content", "customer_features"),
}
# the events DAG checks a slot's article ids against the latest articles.csv of the 7 days before (events.py)
ARTICLES_MIN_KEEP_DAYS = 8


def raw_keep_days() -> int:
    """``ECOMMERCE_ML_RAW_KEEP_DAYS`` when set (read when used), else :data:`RAW_KEEP_DAYS`."""
    days = int(os.environ.get("ECOMMERCE_ML_RAW_KEEP_DAYS") or RAW_KEEP_DAYS)
    if days < 1:
        raise ValueError(f"ECOMMERCE_ML_RAW_KEEP_DAYS={days}: keep at least the run's own day (1)")
    return days


def expire_raw_drops(run: Run, root=None, keep_days: int | None = None) -> dict:
    """Remove the raw H&M files of the days at least ``keep_days`` (:func:`raw_keep_days`) before the run's
    day whose readers (:data:`RAW_READERS`) have all registered their output for that day; ``articles.csv``
    stays at least :data:`ARTICLES_MIN_KEEP_DAYS` days (the events' lookback). A day folder left empty is
    removed. Returns the files removed and, per day, the files kept because a reader has not processed it."""
    root = root or lake.lake_root()
    keep_days = raw_keep_days() if keep_days is None else keep_days
    base = lake.hm_root(root)
    if not base.exists():
        return {"removed": [], "waiting": {}}
    lake.record_reads(base)  # the raw drops' folder, listed (its expired files removed below)
    days = sorted(p.name.removeprefix("dt=") for p in base.iterdir() if p.name.startswith("dt="))
    cutoff = (run.day - timedelta(days=keep_days)).isoformat()
    days = [d for d in days if d <= cutoff]
    if not days:
        return {"removed": [], "waiting": {}}
    from shared.lineage import record_postgres_io

    readers = sorted({r for rs in RAW_READERS.values() for r in rs})
    pg = DATABASE.hook()
    with closing(DATABASE.connect(pg)) as conn, conn.cursor() as cur:
        cur.execute("SELECT DISTINCT dataset, version FROM dataset_registry WHERE kind = 'artifact'"
                    " AND dataset = ANY(%s) AND version BETWEEN %s AND %s", (readers, days[0], days[-1]))
        done = set(cur.fetchall())
    record_postgres_io(pg, inputs=["dataset_registry"])  # what says a day was processed
    articles_cutoff = (run.day - timedelta(days=max(keep_days, ARTICLES_MIN_KEEP_DAYS))).isoformat()
    removed, waiting = [], {}
    for day in days:
        folder = lake.hm_day(root, day)
        for name, needs in RAW_READERS.items():
            path = folder / name
            if not path.exists() or (name == "articles.csv" and day > articles_cutoff):
                continue
            missing = [r for r in needs if (r, day) not in done]
            if missing:
                waiting.setdefault(day, {})[name] = missing
                continue
            path.unlink()
            removed.append(lake.url(path))
        if folder.exists() and not any(folder.iterdir()):
            folder.rmdir()
    return {"removed": removed, "waiting": waiting}


def _expire(cur, before: dict[str, str]) -> list[str]:
    """Retention of the matrix's intermediate and older outputs: the registry rows of each dataset's
    versions before its cutoff (``user_item_day``: the partials of days out of the run's window, which
    no later day reads and a rerun of an older day rebuilds; ``user_item_matrix``: the versions older
    than :data:`MATRIX_KEEP_DAYS`). Returns their paths, to delete once the transaction is committed."""
    paths = []
    for dataset, cutoff in before.items():
        cur.execute("DELETE FROM dataset_registry WHERE dataset = %s AND kind = 'artifact' AND version < %s"
                    " RETURNING path", (dataset, cutoff))
        paths += [p for (p,) in cur.fetchall()]
    return paths


def _remove_files(root, paths: list[str]) -> int:
    """Delete the expired files (after the commit: a crash in between leaves files no registry row names,
    never a row naming a missing file); a file already gone is skipped."""
    removed = 0
    for path in paths:
        target = lake_path(root, path)
        if target.exists():
            target.unlink()
            removed += 1
    return removed


def full_matrix_sql(day, files: list[str]) -> str:
    """The matrix straight from the window's interaction files (every day regrouped): what
    :func:`build_matrix` computes from the partial aggregates, as one query (the tests and the
    year benchmark compare the two)."""
    return REGROUP_SQL.format(day=day, pairs=f"({DAY_PAIRS_SQL.format(files=files)})")


class _local_files:
    """Local names for lake files (themselves on a file:// lake, temporary copies otherwise)."""

    def __init__(self, paths) -> None:
        self.paths = paths
        self._stack = None

    def __enter__(self) -> list[str]:
        from contextlib import ExitStack

        self._stack = ExitStack()
        return [self._stack.enter_context(lake.readable(p)) for p in self.paths]

    def __exit__(self, *exc) -> None:
        self._stack.close()
