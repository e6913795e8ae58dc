"""DAG 2, article content: a day's ``articles.csv`` -> ``article_features`` (structured
features + the text DAG 3 embeds), the content history and the day's changed articles.

1. :func:`validate_articles` reads the drop strictly (a corrupt file fails here, naming file,
   line and column, before anything is written).
2. :func:`build_article_features` computes the features in DuckDB and publishes them as a
   Parquet artifact ``curated/article_content/v=<day>/articles-<sha>.parquet``.
3. :func:`load_article_features` loads that artifact into PostgreSQL in one transaction:
   ``article_features`` (only when the day is the newest snapshot), ``article_content_history``
   and ``article_changes`` for the day, and the registry rows.

Changed-article detection: ``content_hash`` is the sha256 of the 25 H&M columns (as
published) plus whether the article has an image; ``text_hash`` that of the embedding
text. An article is ``new`` the first day it appears, ``changed`` on a day its
``content_hash`` differs from the one before that day, ``removed`` on the first day it is
missing from the drop. Reruns of a day replace exactly that day's history and changes.
"""

from __future__ import annotations

import tempfile
from contextlib import closing
from pathlib import Path

from domains.ecommerce_ml import assets, formats, ingest, lake, registry
from domains.ecommerce_ml.common import Run, copy_from_duckdb, duck_rows, refuse_future_day
from domains.ecommerce_ml.db import DATABASE

DATASET = "article_content"
FEATURE_COLUMNS = [
    *formats.ARTICLES.names, "has_detail_desc", "desc_word_count", "variants_in_product", "image_path",
    "embedding_text", "text_hash", "content_hash",
]
# categorical name columns whose spelling varies in the drops; canonical = the most used spelling
CATEGORICAL = ["product_type_name", "product_group_name", "graphical_appearance_name", "colour_group_name",
               "perceived_colour_value_name", "perceived_colour_master_name", "department_name", "index_name",
               "index_group_name", "section_name", "garment_group_name"]


def articles_file(root, day) -> lake.ObjectStoragePath:
    return lake.hm_day(root, day) / "articles.csv"


@ingest.fails_fast
def validate_articles(run: Run, root=None) -> dict:
    root = root or lake.lake_root()
    path = articles_file(root, run.day)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no articles drop for {run.day}")
    with lake.readable(path) as local, ingest.duckdb_session() as con:
        rows = ingest.load_csv(con, "articles", local, formats.ARTICLES, lake.url(path))
        bad_ids = ingest.fetch(con, "SELECT _line, article_id FROM articles WHERE NOT regexp_full_match("
                               "coalesce(article_id, ''), '[0-9]{10}') ORDER BY _line LIMIT 1")
        if bad_ids:
            line, value = bad_ids[0]
            raise ingest.CorruptFile(lake.url(path), line, "article_id",
                                     f"{value!r} is not a zero-padded 10-digit article id")
        dup = ingest.fetch(con, "SELECT article_id, min(_line), max(_line) FROM articles GROUP BY article_id"
                           " HAVING count(*) > 1 ORDER BY 2 LIMIT 1")
        if dup:
            raise ingest.CorruptFile(lake.url(path), dup[0][2], "article_id",
                                     f"article {dup[0][0]} appears again (first on line {dup[0][1]})")
    return {"path": lake.url(path), "rows": rows}


def _features_sql(image_ids_table: str) -> str:
    canon = []
    for c in CATEGORICAL:
        canon.append(
            f"canon_{c} AS (SELECT k, arg_max(v, n) AS v FROM (SELECT lower(regexp_replace(trim({c}), '\\s+', ' ', 'g'))"
            f" AS k, trim({c}) AS v, count(*) AS n FROM articles WHERE {c} IS NOT NULL GROUP BY 1, 2) GROUP BY k)")
    select_cols = []
    joins = []
    for c in formats.ARTICLES.names:
        if c in CATEGORICAL:
            select_cols.append(f"canon_{c}.v AS {c}")
            joins.append(f"LEFT JOIN canon_{c} ON canon_{c}.k = lower(regexp_replace(trim(a.{c}), '\\s+', ' ', 'g'))")
        elif c == "detail_desc":
            select_cols.append("nullif(trim(a.detail_desc), '') AS detail_desc")
        else:
            select_cols.append(f"a.{c}")
    raw_concat = " || chr(31) || ".join(f"coalesce(a.{c}::VARCHAR, '')" for c in formats.ARTICLES.names)
    return f"""
    WITH {', '.join(canon)},
    base AS (
        SELECT {', '.join(select_cols)},
               sha256({raw_concat} || chr(31) || (img.article_id IS NOT NULL)::VARCHAR) AS content_hash,
               CASE WHEN img.article_id IS NOT NULL
                    THEN 'raw/hm/images/' || substr(a.article_id, 1, 3) || '/' || a.article_id || '.jpg' END AS image_path,
               count(*) OVER (PARTITION BY a.product_code) AS variants_in_product
        FROM articles a {' '.join(joins)}
        LEFT JOIN {image_ids_table} img ON img.article_id = a.article_id
    ),
    texts AS (
        SELECT *, concat_ws('. ', prod_name,
                  concat_ws(', ', product_type_name, product_group_name),
                  concat_ws(' ', colour_group_name, '(' || lower(perceived_colour_value_name) || ')'),
                  graphical_appearance_name,
                  concat_ws(' / ', index_group_name, section_name, garment_group_name),
                  rtrim(detail_desc, '.')) || '.' AS embedding_text
        FROM base
    )
    SELECT {', '.join(formats.ARTICLES.names)},
           detail_desc IS NOT NULL AS has_detail_desc,
           coalesce(len(string_split(trim(detail_desc), ' ')), 0)::INTEGER AS desc_word_count,
           variants_in_product::INTEGER AS variants_in_product, image_path, embedding_text,
           sha256(embedding_text) AS text_hash, content_hash
    FROM texts ORDER BY article_id
    """


def _image_ids(root) -> list[str]:
    folder = lake.images_dir(root)
    if not folder.exists():
        return []
    return sorted(p.name[:-4] for p in folder.rglob("*.jpg") if not p.name.startswith("."))


def build_article_features(run: Run, root=None) -> dict:
    """DuckDB: the features of the day's articles -> a Parquet artifact in the lake (never overwritten)."""
    refuse_future_day(run, run.day)
    root = root or lake.lake_root()
    path = articles_file(root, run.day)
    with lake.readable(path) as local, ingest.duckdb_session() as con, tempfile.TemporaryDirectory() as tmp:
        ingest.load_csv(con, "articles", local, formats.ARTICLES, lake.url(path))
        con.execute("CREATE TABLE image_ids (article_id VARCHAR)")
        image_ids = _image_ids(root)
        if image_ids:
            con.executemany("INSERT INTO image_ids VALUES (?)", [(i,) for i in image_ids])
        out = Path(tmp) / "articles.parquet"
        con.execute(f"COPY ({_features_sql('image_ids')}) TO '{out}' (FORMAT parquet, COMPRESSION zstd)")
        rows = ingest.fetch(con, f"SELECT count(*) FROM read_parquet('{out}')")[0][0]
        dest, written = lake.publish(out, lake.curated_dir(root, DATASET, run.day_version), "articles", "parquet")
        sha = lake.sha256_file(out)
    return {"path": lake.url(dest), "relative": lake.url(dest).split("/curated/", 1)[-1], "rows": rows, "written": written,
            "sha256": sha}


def load_article_features(run: Run, artifact: dict, root=None) -> dict:
    """The artifact -> PostgreSQL, one transaction: history and changes of the day, current features, registry."""
    from shared.lineage import record_postgres_io

    refuse_future_day(run, run.day)
    root = root or lake.lake_root()
    artifact_path = root / "curated" / artifact["relative"]
    day = run.day
    pg = DATABASE.hook()
    with lake.readable(artifact_path) as local, ingest.duckdb_session() as con, closing(DATABASE.connect(pg)) as conn:
        con.execute(f"CREATE TABLE feats AS SELECT * FROM read_parquet('{local}')")
        with conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE day_articles (article_id text PRIMARY KEY, content_hash text, text_hash text)"
                        " ON COMMIT DROP")
            copy_from_duckdb(con, "SELECT article_id, content_hash, text_hash FROM feats", cur, "day_articles",
                             ["article_id", "content_hash", "text_hash"])
            cur.execute("DELETE FROM article_content_history WHERE valid_from = %s", (day,))
            cur.execute("DELETE FROM article_changes WHERE day = %s", (day,))
            cur.execute("""
                CREATE TEMP TABLE prev ON COMMIT DROP AS
                SELECT DISTINCT ON (article_id) article_id, content_hash FROM article_content_history
                WHERE valid_from < %s ORDER BY article_id, valid_from DESC""", (day,))
            cur.execute("""
                INSERT INTO article_changes (day, article_id, change, old_hash, new_hash)
                SELECT %(day)s, coalesce(d.article_id, p.article_id),
                       CASE WHEN d.article_id IS NULL THEN 'removed'
                            WHEN p.article_id IS NULL OR p.content_hash IS NULL THEN 'new' ELSE 'changed' END,
                       p.content_hash, d.content_hash
                FROM day_articles d FULL JOIN prev p ON p.article_id = d.article_id
                WHERE (d.article_id IS NULL AND p.content_hash IS NOT NULL)
                   OR (d.article_id IS NOT NULL AND p.content_hash IS DISTINCT FROM d.content_hash)""", {"day": day})
            cur.execute("""
                INSERT INTO article_content_history (article_id, valid_from, content_hash, text_hash)
                SELECT c.article_id, %(day)s, d.content_hash, d.text_hash FROM article_changes c
                LEFT JOIN day_articles d ON d.article_id = c.article_id WHERE c.day = %(day)s""", {"day": day})
            cur.execute("SELECT max(snapshot_day) FROM article_features")
            newest = cur.fetchone()[0]
            current = newest is None or newest <= day
            if current:
                _load_current(con, cur, day)
            outputs = [
                registry.Output(DATASET, "artifact", lake.url(artifact_path), artifact["rows"],
                                [{"name": n, "type": t} for n, t in ingest.fetch(con, "SELECT column_name, data_type"
                                 " FROM duckdb_columns() WHERE table_name = 'feats' ORDER BY column_index")],
                                f"sha256:{artifact['sha256']}", assets.artifact(DATASET)),
                registry.table_output(cur, "article_features", "article_features", assets.table("article_features"),
                                      "snapshot_day = %s", (day,)),
                registry.table_output(cur, "article_changes", "article_changes", assets.table("article_changes"),
                                      "day = %s", (day,)),
            ]
            for out in outputs:
                registry.register(cur, out, run.day_version, run.dag_id, run.run_id)
            cur.execute("SELECT change, count(*) FROM article_changes WHERE day = %s GROUP BY change", (day,))
            changes = dict(cur.fetchall())
        conn.commit()
    record_postgres_io(pg, outputs=["article_features", "article_changes", "article_content_history", "dataset_registry"])
    registry.emit_asset_events(outputs, run.day_version)
    return {"rows": artifact["rows"], "current": current, "changes": changes}


def _load_current(con, cur, day) -> None:
    """Replace ``article_features`` with the day's snapshot (unchanged rows are left alone)."""
    from shared.db import bulk_upsert

    cols = [*FEATURE_COLUMNS, "first_seen_on", "content_changed_on", "snapshot_day"]
    cur.execute("CREATE TEMP TABLE since ON COMMIT DROP AS SELECT article_id, min(valid_from) AS first_seen,"
                " max(valid_from) FILTER (WHERE content_hash IS NOT NULL) AS changed FROM article_content_history"
                " WHERE valid_from <= %s GROUP BY article_id", (day,))
    cur.execute("SELECT article_id, first_seen, changed FROM since")
    since = {a: (f, c) for a, f, c in cur.fetchall()}
    rows = ([*r, since[r[0]][0], since[r[0]][1], day]
            for r in duck_rows(con, f"SELECT {', '.join(FEATURE_COLUMNS)} FROM feats ORDER BY article_id"))
    bulk_upsert(cur.connection, "article_features", cols, rows, ["article_id"], commit=False)
    cur.execute("DELETE FROM article_features a WHERE NOT EXISTS (SELECT 1 FROM day_articles d"
                " WHERE d.article_id = a.article_id)")
