"""The raw files' formats: the H&M files column for column, and this domain's reviews and
events files (documented in README.md). One source for the generator, the validation and
the tests. Types are DuckDB types; ``article_id`` and ``product_code`` stay strings
(zero-padded, as H&M publishes them), ``customer_id`` is a 64-hex string."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FileFormat:
    name: str
    columns: tuple[tuple[str, str], ...]  # (column, DuckDB type)
    required: tuple[str, ...] = ()  # columns that may not be empty

    @property
    def names(self) -> list[str]:
        return [c for c, _ in self.columns]

    @property
    def header(self) -> str:
        return ",".join(self.names)

    def duckdb_types(self) -> dict[str, str]:
        return dict(self.columns)


ARTICLES = FileFormat("articles.csv", (
    ("article_id", "VARCHAR"), ("product_code", "VARCHAR"), ("prod_name", "VARCHAR"),
    ("product_type_no", "INTEGER"), ("product_type_name", "VARCHAR"), ("product_group_name", "VARCHAR"),
    ("graphical_appearance_no", "INTEGER"), ("graphical_appearance_name", "VARCHAR"),
    ("colour_group_code", "INTEGER"), ("colour_group_name", "VARCHAR"),
    ("perceived_colour_value_id", "INTEGER"), ("perceived_colour_value_name", "VARCHAR"),
    ("perceived_colour_master_id", "INTEGER"), ("perceived_colour_master_name", "VARCHAR"),
    ("department_no", "INTEGER"), ("department_name", "VARCHAR"), ("index_code", "VARCHAR"),
    ("index_name", "VARCHAR"), ("index_group_no", "INTEGER"), ("index_group_name", "VARCHAR"),
    ("section_no", "INTEGER"), ("section_name", "VARCHAR"), ("garment_group_no", "INTEGER"),
    ("garment_group_name", "VARCHAR"), ("detail_desc", "VARCHAR"),
), required=("article_id", "product_code", "prod_name"))

CUSTOMERS = FileFormat("customers.csv", (
    ("customer_id", "VARCHAR"), ("FN", "DOUBLE"), ("Active", "DOUBLE"), ("club_member_status", "VARCHAR"),
    ("fashion_news_frequency", "VARCHAR"), ("age", "INTEGER"), ("postal_code", "VARCHAR"),
), required=("customer_id",))

TRANSACTIONS = FileFormat("transactions_train.csv", (
    ("t_dat", "DATE"), ("customer_id", "VARCHAR"), ("article_id", "VARCHAR"), ("price", "DOUBLE"),
    ("sales_channel_id", "INTEGER"),
), required=("t_dat", "customer_id", "article_id", "price", "sales_channel_id"))

REVIEWS = FileFormat("reviews.csv", (
    ("review_id", "VARCHAR"), ("article_id", "VARCHAR"), ("customer_id", "VARCHAR"), ("rating", "INTEGER"),
    ("text", "VARCHAR"), ("created_at", "TIMESTAMPTZ"),
), required=("review_id", "article_id", "customer_id", "rating", "created_at"))

EVENTS = FileFormat("events.csv", (
    ("event_id", "VARCHAR"), ("session_key", "VARCHAR"), ("customer_id", "VARCHAR"), ("article_id", "VARCHAR"),
    ("event_type", "VARCHAR"), ("ts", "TIMESTAMPTZ"),
), required=("event_id", "session_key", "article_id", "event_type", "ts"))

EVENT_TYPES = ("view", "add_to_cart", "purchase")
