-- DAG 1 (ecommerce_ml_user_item_interactions): the cleaned interactions of each day and the
-- rows rejected with their reason. The implicit-feedback matrix is a lake artifact only.
CREATE TABLE interactions (
    day              date     NOT NULL,
    customer_id      text     NOT NULL,
    article_id       text     NOT NULL CHECK (article_id ~ '^[0-9]{10}$'),
    sales_channel_id smallint NOT NULL CHECK (sales_channel_id IN (1, 2)),
    price            double precision NOT NULL CHECK (price > 0),
    quantity         integer  NOT NULL CHECK (quantity > 0),   -- identical rows of the file (H&M: one row per item)
    PRIMARY KEY (day, customer_id, article_id, sales_channel_id, price)
);
CREATE INDEX interactions_customer ON interactions (customer_id, day);

CREATE TABLE interaction_rejections (
    day              date    NOT NULL,
    line             integer NOT NULL,   -- line in transactions_train.csv
    reason           text    NOT NULL CHECK (reason IN ('other_day', 'unknown_article', 'unknown_customer',
                                                        'missing_value', 'invalid_price', 'invalid_channel')),
    t_dat            date,
    customer_id      text,
    article_id       text,
    price            double precision,
    sales_channel_id integer,
    PRIMARY KEY (day, line)
);
