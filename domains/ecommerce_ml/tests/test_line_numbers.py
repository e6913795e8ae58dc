"""A rejected record is reported at the physical line it starts on, not at its record number:
quoted values (``detail_desc``, a review's text) may span lines."""

from __future__ import annotations

import csv
import io

import pytest

from domains.ecommerce_ml import formats, ingest
from domains.ecommerce_ml.tests.conftest import DAY

MULTILINE = 11  # two-line detail_desc values before the 60th record: it starts on line 61 + 11 = 72


def _article(n: int, desc: str) -> list[str]:
    return [f"{108775000 + n:010d}", f"{108775 + n:07d}", f"Strap top {n}", "253", "Vest top", "Garment Upper body",
            "1010016", "Solid", "9", "Black", "4", "Dark", "5", "Black", "1676", "Jersey Basic", "A", "Ladieswear",
            "1", "Ladieswear", "16", "Womens Everyday Basics", "1002", "Jersey Basic", desc]


def _articles_csv(last: list[str]) -> str:
    """A header, 59 good records (the first 11 with a two-line ``detail_desc``), then ``last`` as record 60."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(formats.ARTICLES.names)
    for n in range(1, 60):
        w.writerow(_article(n, f"Jersey top.\nLine two of {n}." if n <= MULTILINE else "Jersey top."))
    w.writerow(last)
    w.writerow(_article(61, "After the bad one."))
    text = buf.getvalue()
    assert text.splitlines()[71].startswith(last[0]) and text.count("\n") == 62 + MULTILINE + sum(v.count("\n") for v in last)
    return text


def _validate(tmp_path, text: str):
    from airflow.sdk import ObjectStoragePath

    from domains.ecommerce_ml import article_content
    from domains.ecommerce_ml.common import Run

    folder = tmp_path / "raw" / "hm" / f"dt={DAY}"
    folder.mkdir(parents=True)
    (folder / "articles.csv").write_text(text)
    with pytest.raises(ingest.CorruptFile) as err:
        article_content.validate_articles(Run.for_day("ecommerce_ml_article_content", DAY),
                                          ObjectStoragePath(f"file://{tmp_path}/"))
    return str(err.value)


@pytest.mark.parametrize("last, column", [
    (_article(60, "x")[:3] + ["two-five-three"] + _article(60, "x")[4:], "product_type_no"),  # DuckDB's rejects
    (["12345", *_article(60, "x")[1:]], "article_id"),  # a check on the loaded rows' _line
])
def test_articles_bad_record_after_multiline_values_is_reported_at_its_physical_line(tmp_path, last, column):
    message = _validate(tmp_path, _articles_csv(last))
    assert "articles.csv: line 72, column " + repr(column) in message, message


def test_articles_duplicate_after_multiline_values_names_both_physical_lines(tmp_path):
    message = _validate(tmp_path, _articles_csv(_article(5, "Again.")))
    assert "line 72, column 'article_id'" in message and "(first on line 10)" in message, message


def test_loaded_rows_carry_the_physical_line_they_start_on(tmp_path):
    text = _articles_csv(_article(60, "fine\nand two\nand three"))
    local = tmp_path / "articles.csv"
    local.write_text(text)
    starts, end = {}, 1
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)
    for row in reader:
        starts[row[0]], end = end + 1, reader.line_num
    with ingest.duckdb_session(threads=1) as con:
        ingest.load_csv(con, "articles", str(local), formats.ARTICLES, "articles.csv")
        got = dict(ingest.fetch(con, "SELECT article_id, _line FROM articles"))
    assert got == starts and got[f"{108775060:010d}"] == 72 and got[f"{108775061:010d}"] == 75


def test_reviews_bad_record_after_multiline_texts_is_reported_at_the_line_it_starts_on():
    from domains.ecommerce_ml.reviews_nlp import COLUMNS, ReviewFileError, parse_reviews

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for n in range(1, 60):
        text = f"Nice,\nreally {n}" if n <= MULTILINE else "Nice"
        w.writerow([f"r{n}", "0108775015", "c1", "4", text, "2024-06-03T10:00:00+00:00"])
    w.writerow(["r60", "0108775015", "c1", "4", "Long\nreview", "yesterday"])
    with pytest.raises(ReviewFileError) as err:
        parse_reviews(buf.getvalue(), "f.csv")
    assert str(err.value).startswith("f.csv: line 72: column 'created_at'"), str(err.value)


def test_reviews_article_id_with_a_trailing_newline_is_refused():
    from domains.ecommerce_ml.reviews_nlp import COLUMNS, ReviewFileError, parse_reviews

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(
        [COLUMNS, ["r1", "0108775015\n", "c1", "4", "Nice", "2024-06-03T10:00:00+00:00"]])
    with pytest.raises(ReviewFileError) as err:
        parse_reviews(buf.getvalue(), "f.csv")
    assert str(err.value).startswith("f.csv: line 2: column 'article_id'"), str(err.value)
