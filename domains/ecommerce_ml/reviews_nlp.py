"""Reviews NLP (DAG ``ecommerce_ml_reviews_nlp``): the light side.

The nightly run at 01:00 on day D (data interval ``[D-1 01:00, D 01:00)``, see
:class:`domains.ecommerce_ml.common.Run`) handles the reviews drop of day D-1
(``raw/reviews/dt=D-1/reviews.csv``, format in README.md): it is validated whole and loaded into
``reviews`` (nothing is written when any line is wrong); the heavy environment scores sentiment
(vaderSentiment) and sentence embeddings of that file's reviews
(:func:`domains.ecommerce_ml.heavy.jobs.score_reviews`); then ``article_review_aggregates`` holds,
per article, the aggregates over every review created before the end of day D-1.
Re-running a day changes nothing: loads are upserts of unchanged rows, a review already scored by
the same model from the same text is not scored again, aggregates are recomputed to equal values.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from contextlib import closing
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from domains.ecommerce_ml.db import DATABASE

if TYPE_CHECKING:
    from domains.ecommerce_ml.common import Run

log = logging.getLogger(__name__)

COLUMNS = ["review_id", "article_id", "customer_id", "rating", "text", "created_at"]
ARTICLE_ID = re.compile(r"[0-9]{10}")  # the whole value (fullmatch): "$" would allow a final "\n"


def day_window(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


class ReviewFileError(ValueError):
    """A reviews file that breaks its format: names the file, line and column."""


def parse_reviews(text: str, name: str) -> list[tuple]:
    """Validated rows of a reviews.csv; raises :class:`ReviewFileError` at the first bad line."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header != COLUMNS:
        raise ReviewFileError(f"{name}: line 1: header {header} is not {COLUMNS}")
    rows, seen = [], set()
    end = reader.line_num
    for row in reader:
        line, end = end + 1, reader.line_num  # the physical line the record starts on (a text may span lines)

        def bad(col: str, why: str, line: int = line) -> ReviewFileError:
            return ReviewFileError(f"{name}: line {line}: column {col!r}: {why}")

        if len(row) != len(COLUMNS):
            raise ReviewFileError(f"{name}: line {line}: {len(row)} fields, expected {len(COLUMNS)} (truncated or malformed line)")
        rid, aid, cid, rating, body, created = row
        if not rid:
            raise bad("review_id", "empty")
        if rid in seen:
            raise bad("review_id", f"duplicate {rid!r}")
        seen.add(rid)
        if not ARTICLE_ID.fullmatch(aid):
            raise bad("article_id", f"{aid!r} is not a 10-digit zero-padded id")
        if not cid:
            raise bad("customer_id", "empty")
        if not rating.isdigit() or not 1 <= int(rating) <= 5:
            raise bad("rating", f"{rating!r} is not an integer from 1 to 5")
        try:
            ts = datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            raise bad("created_at", f"{created!r} is not an ISO timestamp") from None
        if ts.tzinfo is None:
            raise bad("created_at", f"{created!r} has no time zone")
        rows.append((rid, aid, cid, int(rating), body, ts.astimezone(UTC)))
    return rows


def load_reviews(run: Run) -> dict:
    from domains.ecommerce_ml import assets, lake, registry
    from shared.db import bulk_upsert

    day = run.day
    path = lake.reviews_file(lake.lake_root(), day)
    if not path.exists():
        raise FileNotFoundError(f"no reviews drop for {day}: {path} does not exist")
    with path.open("rb") as f:
        text = f.read().decode("utf-8")
    try:
        rows = parse_reviews(text, str(path))
    except ReviewFileError as e:  # a broken file does not mend itself: fail now, without retries
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(str(e)) from e
    with closing(DATABASE.connect()) as conn:
        result = bulk_upsert(conn, "reviews", [*COLUMNS, "source_file"], [(*r, str(path)) for r in rows], key=["review_id"],
                             commit=False)
        with conn.cursor() as cur:
            out = registry.table_output(cur, "reviews", "reviews", assets.table("reviews"), "source_file = %s", (str(path),))
            registry.register(cur, out, run.day_version, run.dag_id, run.run_id)
        conn.commit()
    registry.emit_asset_events([out], run.day_version)
    log.info("%s: %d reviews, %d inserted, %d updated", path, len(rows), result.inserted, result.updated)
    return {"file": str(path), "rows": len(rows), "inserted": result.inserted, "updated": result.updated}


def record_score_lineage(context, result=None) -> None:
    """``post_execute`` of the heavy ``score_reviews`` task (another interpreter, without Airflow):
    the worker reports what its job read and wrote, through the same hook lineage as every task."""
    from shared.lineage import record_postgres_io

    record_postgres_io(DATABASE.hook(), inputs=["reviews", "review_sentiment", "review_embeddings"],
                       outputs=["review_sentiment", "review_embeddings"])


AGGREGATE_SQL = """
INSERT INTO article_review_aggregates AS a
    (article_id, as_of, n_reviews, avg_rating, avg_compound, share_positive, share_negative, last_review_at)
SELECT r.article_id, %(end)s, count(*), round(avg(r.rating), 3), round(avg(s.compound)::numeric, 4),
       round(avg((s.label = 'positive')::int), 4), round(avg((s.label = 'negative')::int), 4), max(r.created_at)
FROM reviews r JOIN review_sentiment s USING (review_id)
WHERE r.created_at < %(end)s
GROUP BY r.article_id
ON CONFLICT (article_id) DO UPDATE SET
    as_of = EXCLUDED.as_of, n_reviews = EXCLUDED.n_reviews, avg_rating = EXCLUDED.avg_rating,
    avg_compound = EXCLUDED.avg_compound, share_positive = EXCLUDED.share_positive,
    share_negative = EXCLUDED.share_negative, last_review_at = EXCLUDED.last_review_at
WHERE a.as_of <= EXCLUDED.as_of
  AND (a.as_of, a.n_reviews, a.avg_rating, a.avg_compound, a.share_positive, a.share_negative, a.last_review_at)
      IS DISTINCT FROM (EXCLUDED.as_of, EXCLUDED.n_reviews, EXCLUDED.avg_rating, EXCLUDED.avg_compound,
                        EXCLUDED.share_positive, EXCLUDED.share_negative, EXCLUDED.last_review_at)
"""


def aggregate(run: Run, scored: dict) -> dict:
    """Per-article aggregates as of the end of ``day``; checks every review of the day is scored;
    registry rows and Asset events for the day's sentiment, embeddings and the aggregates."""
    from domains.ecommerce_ml import assets, registry
    from shared.lineage import record_postgres_io

    _, end = day_window(run.day)
    pg = DATABASE.hook()
    with closing(DATABASE.connect(pg)) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FILTER (WHERE s.review_id IS NULL), count(*) FILTER (WHERE e.review_id IS NULL)"
                        " FROM reviews r LEFT JOIN review_sentiment s USING (review_id)"
                        " LEFT JOIN review_embeddings e USING (review_id) WHERE r.source_file = %s", (scored["file"],))
            no_sentiment, no_embedding = cur.fetchone()
            if no_sentiment or no_embedding:
                raise RuntimeError(f"{scored['file']}: {no_sentiment} reviews without sentiment, {no_embedding} without embedding")
            cur.execute(AGGREGATE_SQL, {"end": end})
            changed = cur.rowcount
            cur.execute("SELECT count(*) FROM article_review_aggregates WHERE as_of = %s", (end,))
            articles = cur.fetchone()[0]
            day_reviews = "review_id IN (SELECT review_id FROM reviews WHERE source_file = %s)"
            outputs = [
                registry.table_output(cur, "review_sentiment", "review_sentiment", assets.table("review_sentiment"),
                                      day_reviews, (scored["file"],)),
                registry.table_output(cur, "review_embeddings", "review_embeddings", assets.table("review_embeddings"),
                                      day_reviews, (scored["file"],)),
                registry.table_output(cur, "article_review_aggregates", "article_review_aggregates",
                                      assets.table("article_review_aggregates")),
            ]
            for out in outputs:
                registry.register(cur, out, run.day_version, run.dag_id, run.run_id)
        conn.commit()
    registry.emit_asset_events(outputs, run.day_version)
    record_postgres_io(pg, inputs=["reviews", "review_sentiment", "review_embeddings"],
                       outputs=["review_sentiment", "review_embeddings", "article_review_aggregates"])
    return {"as_of": end.isoformat(), "articles": articles, "changed": changed}
