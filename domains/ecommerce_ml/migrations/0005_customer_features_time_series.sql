-- DAG 4 (ecommerce_ml_customer_features) and DAG 5 (ecommerce_ml_time_series).
CREATE TABLE customer_features (
    customer_id             text PRIMARY KEY,
    as_of                   date NOT NULL,          -- the drop and the last interactions day used
    age                     integer,
    age_band                text NOT NULL,          -- 16-24 | 25-34 | 35-44 | 45-54 | 55-64 | 65+ | unknown
    club_member_status      text NOT NULL,          -- ACTIVE | PRE-CREATE | LEFT CLUB | UNKNOWN
    fashion_news_frequency  text NOT NULL,          -- NONE | REGULARLY | MONTHLY | UNKNOWN (H&M spells NONE/None)
    fn                      boolean NOT NULL,
    active                  boolean NOT NULL,
    postal_code             text,
    first_purchase_day      date,
    last_purchase_day       date,
    recency_days            integer,                -- as_of - last purchase day; NULL: never bought
    frequency               integer NOT NULL,       -- purchase days in the window
    items                   integer NOT NULL,
    monetary                double precision NOT NULL,
    online_share            double precision,       -- share of items bought online (channel 2)
    r_score                 smallint,               -- quintiles 1-5 among buyers (5 = best)
    f_score                 smallint,
    m_score                 smallint,
    rfm_segment             text,                   -- r_score || f_score || m_score
    preferred_product_group text,
    preferred_colour        text
);

CREATE TABLE sales_daily_article (
    day          date NOT NULL,
    article_id   text NOT NULL CHECK (article_id ~ '^[0-9]{10}$'),
    units        integer NOT NULL,
    revenue      double precision NOT NULL,
    units_7d     integer NOT NULL,
    units_28d    integer NOT NULL,
    trend_score  double precision NOT NULL,   -- (units_7d/7 + 1) / (units_28d/28 + 1): > 1 rising
    PRIMARY KEY (day, article_id)
);

CREATE TABLE sales_daily_group (
    day                date NOT NULL,
    product_group_name text NOT NULL,
    units              integer NOT NULL,
    revenue            double precision NOT NULL,
    units_7d           integer NOT NULL,
    units_28d          integer NOT NULL,
    weekday_index      double precision NOT NULL,  -- mean units on this weekday / mean daily units (28 days)
    trend_score        double precision NOT NULL,
    PRIMARY KEY (day, product_group_name)
);
