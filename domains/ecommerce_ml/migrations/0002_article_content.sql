-- DAG 2 (ecommerce_ml_article_content): the current articles' structured features and the
-- text assembled for embeddings (read by DAG 3, ecommerce_ml_article_embeddings), their
-- content history and the per-day changes. Documented in README.md.
CREATE TABLE article_features (
    article_id                   text    PRIMARY KEY CHECK (article_id ~ '^[0-9]{10}$'),
    product_code                 text    NOT NULL,
    prod_name                    text    NOT NULL,
    product_type_no              integer,
    product_type_name            text,
    product_group_name           text,   -- canonical spelling (see README: varying spellings)
    graphical_appearance_no      integer,
    graphical_appearance_name    text,
    colour_group_code            integer,
    colour_group_name            text,
    perceived_colour_value_id    integer,
    perceived_colour_value_name  text,
    perceived_colour_master_id   integer,
    perceived_colour_master_name text,
    department_no                integer,
    department_name              text,
    index_code                   text,
    index_name                   text,
    index_group_no               integer,
    index_group_name             text,
    section_no                   integer,
    section_name                 text,
    garment_group_no             integer,
    garment_group_name           text,
    detail_desc                  text,   -- NULL where H&M has none
    has_detail_desc              boolean NOT NULL,
    desc_word_count              integer NOT NULL,
    variants_in_product          integer NOT NULL,   -- articles sharing the product_code
    image_path                   text,   -- lake path relative to the lake's base; NULL: no image
    embedding_text               text    NOT NULL,   -- the text DAG 3 embeds
    text_hash                    text    NOT NULL,   -- sha256 of embedding_text
    content_hash                 text    NOT NULL,   -- sha256 of the 25 H&M columns + image presence
    first_seen_on                date    NOT NULL,
    content_changed_on           date    NOT NULL,   -- the day content_hash last changed
    snapshot_day                 date    NOT NULL    -- the drop these values come from
);
CREATE INDEX article_features_changed ON article_features (content_changed_on);

-- One row per article per day its content changed (NULL content_hash: removed that day).
CREATE TABLE article_content_history (
    article_id   text NOT NULL,
    valid_from   date NOT NULL,
    content_hash text,
    text_hash    text,
    PRIMARY KEY (article_id, valid_from)
);

CREATE TABLE article_changes (
    day        date NOT NULL,
    article_id text NOT NULL,
    change     text NOT NULL CHECK (change IN ('new', 'changed', 'removed')),
    old_hash   text,
    new_hash   text,
    PRIMARY KEY (day, article_id)
);
