CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL, price numeric(10, 2) NOT NULL);
CREATE TABLE item_summary (n_items integer NOT NULL, total_price numeric(12, 2));
