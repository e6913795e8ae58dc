-- ecommerce_ml: article embeddings (DAG 3) and reviews NLP (DAG 6), issue 12.
-- pgvector: the platform's admin creates the extension when it creates the domain database
-- (devplatform/pg.py; a managed PostgreSQL: its admin does the same once); IF NOT EXISTS then
-- lets the domain's role run this file. Without it, this fails with "permission denied to create
-- extension", which says what to ask the admin for.
CREATE EXTENSION IF NOT EXISTS vector;

-- Fitted models whose state the vectors depend on (the frozen TF-IDF vocabulary and idf).
CREATE TABLE embedding_models (
    model_name    text        NOT NULL,
    model_version text        NOT NULL,
    kind          text        NOT NULL,
    dims          integer     NOT NULL,
    state         jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_name, model_version)
);

-- One row per article and kind of vector; content_hash is what the vector was computed from
-- (the article's text, or its image file's bytes), so a changed article is one whose hash differs.
CREATE TABLE article_sentence_embeddings (
    article_id    varchar(10) PRIMARY KEY CHECK (article_id ~ '^[0-9]{10}$'),
    model_name    text        NOT NULL,
    model_version text        NOT NULL,
    content_hash  text        NOT NULL,
    embedding     vector(384) NOT NULL,
    computed_at   timestamptz NOT NULL,
    run_id        text        NOT NULL
);
CREATE INDEX article_sentence_embeddings_hnsw ON article_sentence_embeddings USING hnsw (embedding vector_cosine_ops);

CREATE TABLE article_tfidf_vectors (
    article_id    varchar(10) PRIMARY KEY CHECK (article_id ~ '^[0-9]{10}$'),
    model_name    text        NOT NULL,
    model_version text        NOT NULL,
    content_hash  text        NOT NULL,
    dims          integer     NOT NULL,
    embedding     sparsevec   NOT NULL,
    computed_at   timestamptz NOT NULL,
    run_id        text        NOT NULL
);

-- dims vary with the configured encoder (hand-made features: 94; an ONNX encoder: its own).
CREATE TABLE article_image_embeddings (
    article_id    varchar(10) PRIMARY KEY CHECK (article_id ~ '^[0-9]{10}$'),
    model_name    text        NOT NULL,
    model_version text        NOT NULL,
    content_hash  text        NOT NULL,
    dims          integer     NOT NULL,
    embedding     vector      NOT NULL,
    computed_at   timestamptz NOT NULL,
    run_id        text        NOT NULL
);

-- Reviews (format in the domain README), loaded from the lake's raw drops per data interval.
CREATE TABLE reviews (
    review_id    text        PRIMARY KEY,
    article_id   varchar(10) NOT NULL CHECK (article_id ~ '^[0-9]{10}$'),
    customer_id  text        NOT NULL,
    rating       smallint    NOT NULL CHECK (rating BETWEEN 1 AND 5),
    text         text        NOT NULL,
    created_at   timestamptz NOT NULL,
    source_file  text        NOT NULL
);
CREATE INDEX reviews_created_at ON reviews (created_at);
CREATE INDEX reviews_article ON reviews (article_id);

CREATE TABLE review_sentiment (
    review_id     text        PRIMARY KEY REFERENCES reviews (review_id),
    article_id    varchar(10) NOT NULL,
    model_name    text        NOT NULL,
    model_version text        NOT NULL,
    text_hash     text        NOT NULL,
    compound      real        NOT NULL,
    pos           real        NOT NULL,
    neu           real        NOT NULL,
    neg           real        NOT NULL,
    label         text        NOT NULL CHECK (label IN ('positive', 'neutral', 'negative')),
    computed_at   timestamptz NOT NULL,
    run_id        text        NOT NULL
);

CREATE TABLE review_embeddings (
    review_id     text        PRIMARY KEY REFERENCES reviews (review_id),
    article_id    varchar(10) NOT NULL,
    model_name    text        NOT NULL,
    model_version text        NOT NULL,
    text_hash     text        NOT NULL,
    embedding     vector(384) NOT NULL,
    computed_at   timestamptz NOT NULL,
    run_id        text        NOT NULL
);
CREATE INDEX review_embeddings_hnsw ON review_embeddings USING hnsw (embedding vector_cosine_ops);

-- Per-article aggregates over every review created before the data interval's end.
CREATE TABLE article_review_aggregates (
    article_id       varchar(10) PRIMARY KEY,
    as_of            timestamptz NOT NULL,
    n_reviews        integer     NOT NULL,
    avg_rating       numeric(4, 3) NOT NULL,
    avg_compound     numeric(5, 4) NOT NULL,
    share_positive   numeric(5, 4) NOT NULL,
    share_negative   numeric(5, 4) NOT NULL,
    last_review_at   timestamptz NOT NULL
);
