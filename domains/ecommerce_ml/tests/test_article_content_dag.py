"""ecommerce_ml_article_content end to end with dag.test() on the embedded PostgreSQL and a
generated lake; expected values are recounted from the raw CSV in plain Python."""

from __future__ import annotations

from datetime import timedelta

import pendulum
import pytest

from conftest import run_dag
from domains.ecommerce_ml.tests.conftest import DAY, read_csv

DAG_ID = "ecommerce_ml_article_content"
TABLES = ("article_features", "article_changes", "article_content_history", "dataset_registry")


def logical(day) -> pendulum.DateTime:
    """dag.test() takes the logical date as the trigger time: the run at D+1 03:00 processes day D."""
    nxt = day + timedelta(days=1)
    return pendulum.datetime(nxt.year, nxt.month, nxt.day, 3, tz="UTC")


def test_articles_loaded_changes_detected_and_rerun_changes_nothing(ecom):
    ecom.generate(DAY, parts=("articles", "images"))
    dr, states = run_dag(DAG_ID, logical_date=logical(DAY))
    assert dr.state == "success", states
    raw = read_csv(ecom.raw("raw", "hm", f"dt={DAY}", "articles.csv"))
    ids = sorted(r["article_id"] for r in raw)
    assert sorted(r[0] for r in ecom.query("SELECT article_id FROM article_features")) == ids
    assert all(len(i) == 10 and i.startswith("0") for i in ids)  # leading zeros kept (H&M ids start with 0)
    empty_desc = sum(1 for r in raw if r["detail_desc"] == "")
    assert empty_desc > 0
    assert ecom.query("SELECT count(*) FROM article_features WHERE detail_desc IS NULL AND NOT has_detail_desc") == [
        (empty_desc,)]
    # canonical spellings: every variant of a category collapses to one spelling
    groups = {r["product_group_name"].strip().lower() for r in raw}
    assert len({r["product_group_name"] for r in raw}) > len(groups)  # the drop has varying spellings
    assert len(ecom.query("SELECT DISTINCT product_group_name FROM article_features")) == len(groups)
    assert ecom.query("SELECT count(*) FROM article_features WHERE image_path IS NOT NULL") == [(len(ids),)]
    one = raw[0]
    text = ecom.query("SELECT embedding_text FROM article_features WHERE article_id = %s", (one["article_id"],))[0][0]
    assert text.startswith(f"{one['prod_name']}. {one['product_type_name']}, ")
    assert ecom.query("SELECT change, count(*) FROM article_changes GROUP BY change") == [("new", len(ids))]
    reg = ecom.query("SELECT dataset, version, kind, row_count FROM dataset_registry ORDER BY dataset")
    assert reg == [("article_changes", str(DAY), "table", len(ids)), ("article_content", str(DAY), "artifact", len(ids)),
                   ("article_features", str(DAY), "table", len(ids))]
    artifact = ecom.query("SELECT path FROM dataset_registry WHERE dataset = 'article_content'")[0][0]
    assert f"/curated/article_content/v={DAY}/articles-" in artifact and artifact.endswith(".parquet")

    before, files = ecom.tables_snapshot(*TABLES), ecom.lake_files()
    dr, states = run_dag(DAG_ID, logical_date=logical(DAY))
    assert dr.state == "success", states
    assert ecom.tables_snapshot(*TABLES) == before
    assert ecom.lake_files() == files

    # the next day: ~1% of descriptions edited, compared in plain Python
    nxt = DAY + timedelta(days=1)
    ecom.generate(nxt, parts=("articles", "images"))
    raw2 = read_csv(ecom.raw("raw", "hm", f"dt={nxt}", "articles.csv"))
    old = {r["article_id"]: r for r in raw}
    new = {r["article_id"]: r for r in raw2}
    expected = {
        "new": len(new.keys() - old.keys()),
        "removed": len(old.keys() - new.keys()),
        "changed": sum(1 for a in new.keys() & old.keys() if new[a] != old[a]),
    }
    assert expected["changed"] > 0
    dr, states = run_dag(DAG_ID, logical_date=logical(nxt))
    assert dr.state == "success", states
    got = dict(ecom.query("SELECT change, count(*) FROM article_changes WHERE day = %s GROUP BY change", (nxt,)))
    assert got == {k: v for k, v in expected.items() if v}
    changed = {a for a in new.keys() & old.keys() if new[a] != old[a]}
    assert {r[0] for r in ecom.query("SELECT article_id FROM article_features WHERE content_changed_on = %s",
                                     (nxt,))} == changed | (new.keys() - old.keys())


@pytest.mark.parametrize("corruption, line, column", [
    ("truncate", None, None),
    ("header", 1, "colour_group_name"),
    ("type", 3, "product_type_no"),
])
def test_corrupt_articles_fail_naming_file_line_column_and_write_nothing(ecom, corruption, line, column):
    from domains.ecommerce_ml import article_content, ingest
    from domains.ecommerce_ml.common import Run

    ecom.generate(DAY, parts=("articles",))
    path = ecom.raw("raw", "hm", f"dt={DAY}", "articles.csv")
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    if corruption == "truncate":
        cut = text[: len(text) - len(lines[-1]) // 2]
        path.write_text(cut)
        line, column = len(lines), None
    elif corruption == "header":
        path.write_text(lines[0].replace("colour_group_name", "color_group_name") + "".join(lines[1:]))
    else:
        fields = lines[2].split(",")
        fields[3] = "two-five-three"
        lines[2] = ",".join(fields)
        path.write_text("".join(lines))
    with pytest.raises(ingest.CorruptFile) as err:
        article_content.validate_articles(Run.for_day(DAG_ID, DAY), ecom.root())
    assert str(path) in str(err.value) and f"line {line}," in str(err.value)
    if column:
        assert f"column {column!r}" in str(err.value)
    if corruption != "type":
        return  # the DAG run below is the same for every corruption: run it once
    dr, states = run_dag(DAG_ID, logical_date=logical(DAY))
    assert dr.state == "failed"
    assert states["validate_articles"] == "failed" and states["load_article_features"] != "success"
    for table in TABLES:
        assert ecom.rows(table) == 0
    assert not ecom.raw("curated").exists()
