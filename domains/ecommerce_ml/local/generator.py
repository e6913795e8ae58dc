"""Realistic, deterministic raw drops for the ecommerce_ml lake, in exactly the H&M formats
(and this domain's reviews and events formats, see README.md).

    python -m domains.ecommerce_ml.local.generator --lake file:///tmp/lake --day 2024-06-03 --days 2 --scale 1
    make ecommerce-data                       # the local platform's lake, the last 2 days

The same seed, day and scale always give byte-identical files. What it models:

- a catalogue of H&M-like articles (zero-padded 10-character ``article_id``, product codes
  with colour variants, H&M's categorical codes and names); about 1% of articles change their
  description per day and a few new ones appear, so change detection has work to do;
- customers with H&M's quirks (``FN``/``Active`` either ``1.0`` or empty, empty ages,
  ``fashion_news_frequency`` spelled ``NONE``/``None``/``Regularly``/``Monthly``, shared postal codes);
- transactions whose article popularity follows a long tail (Zipf), with weekly and yearly
  seasonality (more on weekends and in summer/December, swimwear in summer), baskets of
  several items, repeat buyers (a heavy-tailed customer activity), online/store channel mix;
- reviews whose text's sentiment follows the rating;
- clickstream sessions (view -> add_to_cart -> purchase) with a diurnal rhythm, about
  3% of sessions converting, some sessions pausing for more than 30 minutes, and ~3% of
  events arriving late (in a later part file of their own slot);
- a few bad rows on purpose (unknown ids, rows of another day, duplicate event ids), counted in
  the returned truths, so the DAGs' rejections can be checked exactly.

Everything is streamed in chunks: memory stays flat from a test-sized day (scale 1: about
1,000 transactions and 2,000 events) to a multi-million-row day (scale 5000).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from domains.ecommerce_ml import formats, lake

EPOCH = date(2024, 1, 1)
CHUNK = 100_000

# (no, name, group, seasonal weight in summer)
PRODUCT_TYPES = [
    (253, "Vest top", "Garment Upper body", 1.3), (252, "Sweater", "Garment Upper body", 0.6),
    (255, "T-shirt", "Garment Upper body", 1.2), (259, "Top", "Garment Upper body", 1.1),
    (245, "Shirt", "Garment Upper body", 1.0), (264, "Jacket", "Garment Upper body", 0.6),
    (262, "Coat", "Garment Upper body", 0.3), (272, "Trousers", "Garment Lower body", 0.9),
    (274, "Shorts", "Garment Lower body", 1.6), (275, "Skirt", "Garment Lower body", 1.2),
    (265, "Dress", "Garment Full body", 1.4), (59, "Swimwear bottom", "Swimwear", 2.5),
    (298, "Bikini top", "Swimwear", 2.5), (286, "Underwear bottom", "Underwear", 1.0),
    (306, "Bra", "Underwear", 1.0), (304, "Underwear Tights", "Socks & Tights", 0.5),
    (302, "Socks", "Socks & Tights", 0.8), (87, "Boots", "Shoes", 0.4), (67, "Belt", "Accessories", 1.0),
    (66, "Hat/beanie", "Accessories", 0.5),
]
APPEARANCES = [(1010016, "Solid"), (1010017, "Stripe"), (1010001, "All over pattern"), (1010010, "Melange"),
               (1010004, "Check"), (1010023, "Denim"), (1010014, "Placement print")]
# (code, name, rgb, perceived master id, master name)
COLOURS = [(9, "Black", (20, 20, 20), 5, "Black"), (10, "White", (240, 240, 236), 9, "White"),
           (73, "Dark Blue", (25, 40, 90), 2, "Blue"), (72, "Blue", (50, 90, 180), 2, "Blue"),
           (13, "Beige", (215, 195, 160), 11, "Beige"), (52, "Pink", (230, 150, 170), 4, "Pink"),
           (8, "Dark Grey", (70, 70, 72), 12, "Grey"), (6, "Light Grey", (180, 180, 182), 12, "Grey"),
           (43, "Red", (190, 30, 40), 18, "Red"), (19, "Greenish Khaki", (110, 110, 70), 19, "Khaki green"),
           (53, "Dark Pink", (170, 60, 100), 4, "Pink"), (11, "Off White", (235, 228, 210), 9, "White")]
VALUES = [(4, "Dark"), (3, "Light"), (1, "Dusty Light"), (2, "Medium Dusty"), (5, "Bright"), (7, "Medium")]
# (index_code, index_name, group no, group name, [(section no, section name)], [(dept no, name)])
INDEXES = [
    ("A", "Ladieswear", 1, "Ladieswear", [(16, "Womens Everyday Basics"), (15, "Womens Everyday Collection"),
                                          (11, "Womens Tailoring")], [(1676, "Jersey Basic"), (1643, "Tops Knitwear")]),
    ("B", "Lingeries/Tights", 1, "Ladieswear", [(61, "Womens Lingerie"), (62, "Womens Nightwear, Socks & Tigh")],
     [(1339, "Clean Lingerie"), (3608, "Tights basic")]),
    ("D", "Divided", 2, "Divided", [(26, "Divided Basics"), (53, "Divided Collection")],
     [(1747, "Divided Basics"), (1722, "Jersey")]),
    ("F", "Menswear", 3, "Menswear", [(21, "Contemporary Casual"), (31, "Mens Underwear")],
     [(3709, "Trouser"), (5883, "Mens basics")]),
    ("G", "Baby Sizes 50-98", 4, "Baby/Children", [(44, "Baby Essentials & Complements")], [(6515, "Baby basics")]),
    ("H", "Children Sizes 92-140", 4, "Baby/Children", [(46, "Kids Girl")], [(7616, "Girls Jersey")]),
    ("S", "Sport", 26, "Sport", [(5, "Ladies H&M Sport")], [(8716, "Functional sport")]),
]
GARMENT_GROUPS = {"Garment Upper body": (1002, "Jersey Basic"), "Garment Lower body": (1009, "Trousers"),
                  "Garment Full body": (1013, "Dresses Ladies"), "Swimwear": (1018, "Swimwear"),
                  "Underwear": (1017, "Under-, Nightwear"), "Socks & Tights": (1021, "Socks and Tights"),
                  "Shoes": (1020, "Shoes"), "Accessories": (1019, "Accessories")}
NAME_WORDS = ["Strap", "Luna", "Tilly", "Pluto", "Bonnie", "Rae", "Siv", "Jade", "Perrie", "Alice", "Timeless",
              "Skinny", "Relaxed", "Slim", "Wide", "Cropped", "Oversized", "Ribbed", "Linen", "Denim", "Basic"]
MATERIALS = ["cotton jersey", "soft, fine-knit fabric", "woven fabric", "stretch twill", "lyocell blend",
             "recycled polyester", "airy linen", "lace", "ribbed cotton"]
FEATURES = ["narrow shoulder straps", "a V-neck", "long sleeves", "a high waist", "side pockets",
            "an elasticated waist", "a round neckline", "short sleeves", "a concealed zip", "adjustable straps"]

POSITIVE = ["Love it", "Perfect fit", "Great quality", "Beautiful colour", "So comfortable", "Exactly as pictured"]
POSITIVE_MORE = ["I wear it all the time.", "Would definitely buy again.", "The fabric feels really nice.",
                 "Fits true to size and washes well.", "Highly recommend it!"]
NEUTRAL = ["It's okay", "Decent for the price", "Average", "Not bad"]
NEUTRAL_MORE = ["The colour is a bit different from the photo.", "Fit is fine, nothing special.",
                "Fabric is thinner than expected but acceptable."]
NEGATIVE = ["Disappointed", "Poor quality", "Terrible fit", "Would not recommend", "Returned it"]
NEGATIVE_MORE = ["It fell apart after one wash.", "The seams were coming loose.", "Way too small and the fabric "
                 "feels cheap.", "The colour faded badly, really bad.", "Uncomfortable and scratchy, I hate it."]


def _rng(seed: int, *parts: Any) -> np.random.Generator:
    digest = hashlib.sha256(":".join(str(p) for p in (seed, *parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _hex64(seed: int, kind: str, i: int) -> str:
    return hashlib.sha256(f"{seed}:{kind}:{i}".encode()).hexdigest()


@dataclass(frozen=True)
class Scale:
    """Sizes of one day at a scale factor (1 = a test-sized day)."""

    factor: float = 1.0

    @property
    def transactions(self) -> int:
        return max(10, int(1000 * self.factor))

    @property
    def articles(self) -> int:
        return min(105_542, int(60 + 200 * math.sqrt(self.factor)))

    @property
    def customers(self) -> int:
        return min(1_371_980, int(100 + 400 * self.factor ** 0.75))

    @property
    def sessions(self) -> int:
        return max(5, int(400 * self.factor))

    @property
    def reviews(self) -> int:
        return max(5, int(30 * self.factor))


@dataclass
class Truths:
    """What the generator knows it wrote: the tests compare the DAGs' results with these."""

    day: str
    files: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def as_dict(self) -> dict:
        return {"day": self.day, "files": dict(self.files), "counts": dict(self.counts)}


# -- catalogue ------------------------------------------------------------------------------
class Catalogue:
    """Articles and customers for a seed, scale and day (the same ids every day, plus new ones)."""

    def __init__(self, seed: int, scale: Scale, day: date) -> None:
        self.seed, self.scale, self.day = seed, scale, day
        self.day_no = (day - EPOCH).days
        n = scale.articles
        # new articles appear over time: 0.5% of the catalogue per day, up to 20% more
        self.n_articles = n + min(n // 5, int(n * 0.005 * max(self.day_no, 0)))
        self.articles = self._articles(self.n_articles)
        self.n_customers = scale.customers + min(scale.customers // 5, int(scale.customers * 0.002 * max(self.day_no, 0)))
        self._customer_bytes: np.ndarray | None = None

    def _articles(self, n: int) -> list[dict]:
        rng = _rng(self.seed, "articles")
        codes = np.sort(rng.choice(np.arange(108_775, 959_461), size=n, replace=False))
        out: list[dict] = []
        i = 0
        while len(out) < n:
            code = int(codes[i])
            i += 1
            r = _rng(self.seed, "article", code)
            ptype = PRODUCT_TYPES[int(r.integers(len(PRODUCT_TYPES)))]
            idx = INDEXES[int(r.integers(len(INDEXES)))]
            section = idx[4][int(r.integers(len(idx[4])))]
            dept = idx[5][int(r.integers(len(idx[5])))]
            appearance = APPEARANCES[int(r.choice(len(APPEARANCES), p=_weights(len(APPEARANCES), 1.2)))]
            name = f"{NAME_WORDS[int(r.integers(len(NAME_WORDS)))]} {ptype[1].split('/')[0].lower()}"
            base_price = float(np.round(r.uniform(0.004, 0.09), 6))
            for variant in range(1, 1 + int(r.integers(1, 4))):
                if len(out) >= n:
                    break
                colour = COLOURS[int(r.integers(len(COLOURS)))]
                value = VALUES[int(r.integers(len(VALUES)))]
                article_id = f"{code * 1000 + variant:010d}"
                desc = (f"{ptype[1]} in {MATERIALS[int(r.integers(len(MATERIALS)))]} with "
                        f"{FEATURES[int(r.integers(len(FEATURES)))]}.")
                if r.random() < 0.5:
                    desc += f" {appearance[1]} pattern, {colour[1].lower()}."
                if r.random() < 0.03:  # H&M: some articles have no description
                    desc = ""
                group = ptype[2]
                colour_name = colour[1]
                if r.random() < 0.03:  # varying spellings of the same category
                    group = [group.upper(), group.lower(), f" {group}"][int(r.integers(3))]
                if r.random() < 0.02:
                    colour_name = colour_name.lower()
                garment = GARMENT_GROUPS[ptype[2]]
                out.append({
                    "article_id": article_id, "product_code": f"{code:07d}", "prod_name": name,
                    "product_type_no": ptype[0], "product_type_name": ptype[1], "product_group_name": group,
                    "graphical_appearance_no": appearance[0], "graphical_appearance_name": appearance[1],
                    "colour_group_code": colour[0], "colour_group_name": colour_name,
                    "perceived_colour_value_id": value[0], "perceived_colour_value_name": value[1],
                    "perceived_colour_master_id": colour[3], "perceived_colour_master_name": colour[4],
                    "department_no": dept[0], "department_name": dept[1], "index_code": idx[0],
                    "index_name": idx[1], "index_group_no": idx[2], "index_group_name": idx[3],
                    "section_no": section[0], "section_name": section[1], "garment_group_no": garment[0],
                    "garment_group_name": garment[1], "detail_desc": desc,
                    "_price": base_price, "_summer": ptype[3], "_rgb": colour[2], "_appearance": appearance[1],
                })
        # about 1% of descriptions are edited each day (the edit of day d stays from then on)
        for d in range(max(0, self.day_no - 60), self.day_no + 1):
            r = _rng(self.seed, "edits", d)
            for j in r.choice(len(out), size=max(1, len(out) // 100), replace=False):
                a = out[int(j)]
                a["detail_desc"] = (a["detail_desc"] + f" Updated fit {d}.").strip()
        return out

    def customer_id_bytes(self) -> np.ndarray:
        """Every customer's 64-hex id as one row of a ``(customers, 64)`` uint8 array (computed once:
        1.4 M customers at most, 88 MB), so a chunk of transactions takes its ids with one fancy index."""
        if self._customer_bytes is None:
            self._customer_bytes = _ascii_rows([_hex64(self.seed, "customer", i) for i in range(self.n_customers)], 64)
        return self._customer_bytes

    def article_id_bytes(self) -> np.ndarray:
        return _ascii_rows([a["article_id"] for a in self.articles], 10)

    def popularity(self) -> np.ndarray:
        """Long tail: Zipf-like weights over a seed-fixed random ranking, with summer seasonality."""
        rng = _rng(self.seed, "popularity")
        ranks = rng.permutation(len(self.articles)) + 1
        season = math.sin(2 * math.pi * (self.day.timetuple().tm_yday - 80) / 365.25)  # +1 in June
        summer = np.array([a["_summer"] for a in self.articles])
        w = ranks ** -0.95 * np.power(summer, max(season, 0.0) * 1.5)
        return w / w.sum()

    def activity(self) -> np.ndarray:
        """Heavy-tailed customer activity: a few frequent buyers, many occasional ones."""
        rng = _rng(self.seed, "activity")
        w = rng.pareto(1.3, size=self.n_customers) + 0.05
        return w / w.sum()


def _draw(cdf: np.ndarray, r: np.random.Generator) -> int:
    return min(int(np.searchsorted(cdf, r.random() * cdf[-1], side="right")), len(cdf) - 1)


def _draws(cdf: np.ndarray, r: np.random.Generator, n: int) -> np.ndarray:
    """``n`` indexes drawn with the weights whose cumulative sum is ``cdf`` (one binary search each)."""
    return np.minimum(np.searchsorted(cdf, r.random(n) * cdf[-1], side="right"), len(cdf) - 1)


def _weights(n: int, s: float) -> np.ndarray:
    w = np.arange(1, n + 1) ** -s
    return w / w.sum()


def day_volume(day: date, base: int) -> int:
    """Weekly (weekend +25%) and yearly (summer and December peaks) seasonality."""
    weekly = {5: 1.25, 6: 1.2, 0: 0.9}.get(day.weekday(), 1.0)
    doy = day.timetuple().tm_yday
    yearly = 1 + 0.15 * math.sin(2 * math.pi * (doy - 80) / 365.25) + (0.25 if day.month == 12 and day.day < 24 else 0)
    return max(1, int(base * weekly * yearly))


# -- writing --------------------------------------------------------------------------------
class _CsvOut:
    """A CSV file written through a ``.partial`` name and renamed when complete (atomic landing)."""

    def __init__(self, path, header: list[str]) -> None:
        self.path = path
        lake.ensure_parent(path)
        self.partial = path.parent / f".{path.name}.partial"
        self._f = self.partial.open("w", newline="", encoding="utf-8")
        self.writer = csv.writer(self._f, lineterminator="\n")
        self.writer.writerow(header)
        self.rows = 0

    def write(self, rows: list) -> None:
        self.writer.writerows(rows)
        self.rows += len(rows)

    def write_bytes(self, data: bytes, rows: int) -> None:
        """Lines already encoded as CSV (UTF-8, ``\\n`` ends), after the rows written so far."""
        self._f.flush()
        self._f.buffer.write(data)
        self.rows += rows

    def close(self) -> None:
        self._f.close()
        self.partial.rename(self.path)


def _ascii_rows(values: list[str], width: int) -> np.ndarray:
    """Fixed-width ASCII strings as a ``(len(values), width)`` uint8 array."""
    return np.frombuffer("".join(values).encode("ascii"), dtype=np.uint8).reshape(len(values), width)


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers below ``10 ** width`` as zero-padded ASCII digits, ``(n, width)`` uint8."""
    out = np.empty((len(values), width), dtype=np.uint8)
    v = values.astype(np.int64)
    for k in range(width - 1, -1, -1):
        out[:, k] = v % 10 + 48
        v //= 10
    return out


PRICE_DECIMALS = 8


def _price_bytes(prices: np.ndarray) -> np.ndarray:
    """Prices in [0, 1) (H&M publishes them scaled below 1) as ``0.dddddddd``, ``(n, 10)`` uint8."""
    if len(prices) and (prices.min() <= 0 or prices.max() >= 1):
        raise ValueError("transaction prices must lie in (0, 1)")
    scaled = np.minimum(np.rint(prices * 10 ** PRICE_DECIMALS), 10 ** PRICE_DECIMALS - 1)
    return np.hstack([np.full((len(prices), 2), (48, 46), dtype=np.uint8), _digits(scaled, PRICE_DECIMALS)])


def write_articles(root, cat: Catalogue, day: date, truths: Truths) -> None:
    out = _CsvOut(lake.hm_day(root, day) / "articles.csv", formats.ARTICLES.names)
    names = formats.ARTICLES.names
    out.write([[a[c] for c in names] for a in cat.articles])
    out.close()
    truths.counts["articles"] = out.rows
    truths.files["articles"] = str(out.path)


def write_customers(root, cat: Catalogue, day: date, truths: Truths) -> None:
    out = _CsvOut(lake.hm_day(root, day) / "customers.csv", formats.CUSTOMERS.names)
    postal_pool = max(10, cat.n_customers // 3)
    for lo in range(0, cat.n_customers, CHUNK):
        hi = min(cat.n_customers, lo + CHUNK)
        r = _rng(cat.seed, "customers", lo)
        n = hi - lo
        fn = r.random(n) < 0.35
        active = r.random(n) < 0.33
        club = r.choice(["ACTIVE", "PRE-CREATE", "LEFT CLUB", ""], size=n, p=[0.925, 0.06, 0.005, 0.01])
        news = r.choice(["NONE", "Regularly", "Monthly", "None", ""], size=n, p=[0.613, 0.355, 0.002, 0.02, 0.01])
        young = r.random(n) < 0.6
        ages = np.where(young, r.normal(27, 5, n), r.normal(52, 8, n)).clip(16, 99).astype(int)
        no_age = r.random(n) < 0.012
        # one postal code shared by very many customers (H&M has one), the rest spread
        postal = np.where(r.random(n) < 0.02, 0, (r.pareto(1.5, n) * 50).astype(int) % postal_pool)
        ids = cat.customer_id_bytes()[lo:hi].view("S64").ravel()
        codes, which = np.unique(postal, return_inverse=True)  # one hash per postal code, not per customer
        postal_ids = [_hex64(cat.seed, "postal", int(c)) for c in codes]
        out.write([
            [ids[k].decode(), "1.0" if fn[k] else "", "1.0" if active[k] else "", club[k], news[k],
             "" if no_age[k] else int(ages[k]), postal_ids[which[k]]]
            for k in range(n)
        ])
    out.close()
    truths.counts["customers"] = out.rows
    truths.files["customers"] = str(out.path)


TX_CHUNK = 500_000  # transactions drawn, sorted and written at a time (about 50 MB of lines)


def write_transactions(root, cat: Catalogue, day: date, scale: Scale, truths: Truths) -> None:
    """Baskets of items: a customer (by activity) buys 1-6 articles (by popularity) in one channel.

    Vectorised: each chunk of baskets is drawn with numpy and its lines are assembled as one
    fixed-width byte matrix (``t_dat,customer_id,article_id,price,channel``: 100 bytes a line), so a
    10x day (50 M rows) takes minutes, not hours, and memory stays at one chunk whatever the day's size.
    About 0.6 % of the rows are bad on purpose, in equal parts: an article id not in the catalogue
    (variant 999), a customer not in ``customers.csv``, a row of the previous day delivered again.
    """
    out = _CsvOut(lake.hm_day(root, day) / "transactions_train.csv", formats.TRANSACTIONS.names)
    total = day_volume(day, scale.transactions)
    pop = cat.popularity()
    act = cat.activity()
    pop_cdf, act_cdf = np.cumsum(pop), np.cumsum(act)
    customer_ids = cat.customer_id_bytes()
    article_ids = cat.article_id_bytes()
    prices = np.array([a["_price"] for a in cat.articles])
    day_b = np.frombuffer(day.isoformat().encode(), dtype=np.uint8)
    prev_b = np.frombuffer((day - timedelta(days=1)).isoformat().encode(), dtype=np.uint8)
    written = chunk_no = 0
    unknown_article = unknown_customer = other_day = 0
    while written < total:
        r = _rng(cat.seed, "transactions", day.isoformat(), chunk_no)
        chunk_no += 1
        n_baskets = max(1, min(TX_CHUNK, total - written) // 2)
        sizes = np.minimum(r.geometric(0.5, n_baskets), 6)
        n = int(min(sizes.sum(), total - written))
        basket = np.repeat(np.arange(n_baskets), sizes)[:n]
        cust = _draws(act_cdf, r, n_baskets)[basket]
        channel = np.where(r.random(n_baskets) < 0.7, 2, 1)[basket]
        art = _draws(pop_cdf, r, n)
        discount = np.where(r.random(n) < 0.2, r.uniform(0.5, 0.9, n), 1.0)
        price = prices[art] * discount
        bad = r.random(n)
        ghost_article = bad < 0.002
        ghost_customer = (bad >= 0.002) & (bad < 0.004)
        previous_day = (bad >= 0.004) & (bad < 0.006)
        order = np.argsort(cust, kind="stable")  # H&M files are grouped by customer within a day
        lines = np.empty((n, 100), dtype=np.uint8)
        lines[:, 10] = lines[:, 75] = lines[:, 86] = lines[:, 97] = ord(",")
        lines[:, 99] = ord("\n")
        lines[:, 0:10] = day_b
        lines[previous_day, 0:10] = prev_b
        lines[:, 11:75] = customer_ids[cust]
        ghosts = np.flatnonzero(ghost_customer)
        if len(ghosts):
            keys = r.integers(1 << 30, size=len(ghosts))
            lines[ghosts, 11:75] = _ascii_rows([_hex64(cat.seed, "ghost", int(k)) for k in keys], 64)
        lines[:, 76:86] = article_ids[art]
        unknown = np.flatnonzero(ghost_article)
        lines[unknown, 76:86] = _digits(r.integers(1, 99_999, size=len(unknown)) * 1000 + 999, 10)
        lines[:, 87:97] = _price_bytes(price)
        lines[:, 98] = channel + 48
        out.write_bytes(lines[order].tobytes(), n)
        unknown_article += len(unknown)
        unknown_customer += len(ghosts)
        other_day += int(previous_day.sum())
        written += n
    out.close()
    truths.counts.update(transactions=out.rows, transactions_unknown_article=unknown_article,
                         transactions_unknown_customer=unknown_customer, transactions_other_day=other_day)
    truths.files["transactions"] = str(out.path)


def write_reviews(root, cat: Catalogue, day: date, scale: Scale, truths: Truths) -> None:
    out = _CsvOut(lake.reviews_file(root, day), formats.REVIEWS.names)
    n = day_volume(day, scale.reviews)
    r = _rng(cat.seed, "reviews", day.isoformat())
    pop, act = cat.popularity(), cat.activity()
    arts = r.choice(len(pop), size=n, p=pop)
    custs = r.choice(len(act), size=n, p=act)
    ratings = r.choice([1, 2, 3, 4, 5], size=n, p=[0.1, 0.08, 0.12, 0.25, 0.45])
    secs = np.sort(r.integers(0, 86_400, n))
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    rows = []
    for k in range(n):
        a = cat.articles[int(arts[k])]
        rating = int(ratings[k])
        if rating >= 4:
            head, more = POSITIVE, POSITIVE_MORE
        elif rating == 3:
            head, more = NEUTRAL, NEUTRAL_MORE
        else:
            head, more = NEGATIVE, NEGATIVE_MORE
        text = (f"{head[int(r.integers(len(head)))]}! This {a['prod_name'].lower()} in "
                f"{a['colour_group_name'].lower()}. {more[int(r.integers(len(more)))]}")
        if rating == 5 and r.random() < 0.3:
            text += " Absolutely love it."
        ts = start + timedelta(seconds=int(secs[k]))
        rows.append([f"r{_hex64(cat.seed, 'review', f'{day}:{k}')[:20]}", a["article_id"],
                     _hex64(cat.seed, "customer", int(custs[k])), rating, text, ts.isoformat()])
    out.write(rows)
    out.close()
    truths.counts["reviews"] = out.rows
    truths.files["reviews"] = str(out.path)


SLOT = timedelta(minutes=15)


def _diurnal() -> np.ndarray:
    """Share of sessions starting in each 15-minute slot: quiet nights, lunch and evening peaks."""
    h = np.arange(96) / 4
    w = 0.15 + np.exp(-((h - 12.5) ** 2) / 4) * 0.6 + np.exp(-((h - 20.5) ** 2) / 6)
    return w / w.sum()


def write_events(root, cat: Catalogue, day: date, scale: Scale, truths: Truths) -> None:
    """Sessions of views, carts and purchases, written into the 15-minute slot of each event's ts.

    Each slot folder gets ``part-<YYYYMMDDHHMM>.csv`` named by the slot in which the events arrived: on-time
    events in the slot's own part; events that arrive late (3%) in a later part of their slot.
    Slots are written in order and flushed once no session can still add to them (a session
    lasts at most ~4 hours), so memory holds a few slots, not the day.
    """
    n_sessions = day_volume(day, scale.sessions)
    pop = cat.popularity()
    act = cat.activity()
    ids = [a["article_id"] for a in cat.articles]
    pop_cdf, act_cdf = np.cumsum(pop), np.cumsum(act)  # one draw = one binary search, whatever the catalogue size
    share = _diurnal()
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    buffers: dict[tuple[int, str], list] = defaultdict(list)
    counts = defaultdict(int)
    next_end = start + timedelta(days=1)

    def flush(upto: int) -> None:
        for key in sorted(k for k in buffers if k[0] <= upto):
            slot_no, part = key
            slot_start = start + slot_no * SLOT
            if slot_start >= next_end:
                continue  # belongs to the next day's drop (sessions crossing midnight are cut there)
            rows = sorted(buffers.pop(key), key=lambda e: (e[5], e[0]))
            path = lake.events_slot_dir(root, slot_start) / f"part-{part}.csv"
            out = _CsvOut(path, formats.EVENTS.names)
            out.write([[e[0], e[1], e[2], e[3], e[4], e[5].isoformat()] for e in rows])
            out.close()
            counts["event_files"] += 1
        for key in [k for k in buffers if k[0] <= upto]:
            buffers.pop(key)

    r0 = _rng(cat.seed, "events", day.isoformat())
    per_slot = r0.multinomial(n_sessions, share)
    seq = 0
    for slot_no in range(96):
        r = _rng(cat.seed, "events", day.isoformat(), slot_no)
        for s in range(int(per_slot[slot_no])):
            key = _hex64(cat.seed, "session", f"{day}:{slot_no}:{s}")[:24]
            logged_in = r.random() < 0.6
            customer = _hex64(cat.seed, "customer", _draw(act_cdf, r)) if logged_in else ""
            t = start + slot_no * SLOT + timedelta(seconds=float(r.uniform(0, 900)))
            n_views = int(min(r.geometric(0.3), 25))
            pause_at = int(r.integers(1, n_views + 1)) if r.random() < 0.05 and n_views > 1 else -1
            converting = r.random() < 0.035
            events = []
            for v in range(n_views):
                if v == pause_at:
                    t += timedelta(minutes=float(r.uniform(35, 90)))  # a break: a new session after 30 min
                art = ids[_draw(pop_cdf, r)]
                events.append(("view", art, t))
                t += timedelta(seconds=float(r.exponential(50)) + 2)
                if r.random() < (0.5 if converting else 0.05):
                    events.append(("add_to_cart", art, t))
                    t += timedelta(seconds=float(r.exponential(30)) + 1)
            if converting:
                carted = [e[1] for e in events if e[0] == "add_to_cart"]
                if not carted:
                    events.append(("add_to_cart", events[-1][1], t))
                    carted = [events[-1][1]]
                    t += timedelta(seconds=20)
                for art in dict.fromkeys(carted):
                    events.append(("purchase", art, t))
                    t += timedelta(seconds=1)
            for etype, art, ts in events:
                seq += 1
                eid = _hex64(cat.seed, "event", f"{day}:{seq}")[:32]
                bad = r.random()
                if bad < 0.001:
                    art = "0000000999"  # unknown article
                    counts["events_unknown_article"] += 1
                ts_slot = int((ts - start) // SLOT)
                late = r.random() < 0.03
                arrival = ts + (timedelta(minutes=float(r.uniform(16, 90))) if late else timedelta(seconds=5))
                arrival_slot = start + int((arrival - start) // SLOT) * SLOT
                part = arrival_slot.strftime("%Y%m%d%H%M")
                if ts < next_end:
                    buffers[(ts_slot, part)].append((eid, key, customer, art, etype, ts))
                    counts["events"] += 1
                    counts[f"events_{etype}"] += 1
                    counts["events_late"] += int(arrival_slot > start + ts_slot * SLOT)
                    if bad > 0.999:  # the same event delivered twice
                        buffers[(ts_slot, part)].append((eid, key, customer, art, etype, ts))
                        counts["events"] += 1
                        counts["events_duplicate"] += 1
        counts["sessions_keys"] += int(per_slot[slot_no])
        flush(slot_no - 20)
    flush(10_000)
    truths.counts.update(counts)


def write_images(root, cat: Catalogue, truths: Truths) -> None:
    """A small real JPEG per article (64x96, the garment's colour and pattern), written once."""
    from PIL import Image, ImageDraw

    made = 0
    for a in cat.articles:
        path = lake.image_path(root, a["article_id"])
        if path.exists():
            continue
        img = Image.new("RGB", (64, 96), (246, 246, 244))
        draw = ImageDraw.Draw(img)
        rgb = a["_rgb"]
        draw.rectangle([14, 12, 50, 84], fill=rgb)
        draw.polygon([(14, 12), (4, 30), (14, 34)], fill=rgb)
        draw.polygon([(50, 12), (60, 30), (50, 34)], fill=rgb)
        contrast = tuple(255 - c for c in rgb)
        if a["_appearance"] == "Stripe":
            for y in range(14, 84, 8):
                draw.line([(14, y), (50, y)], fill=contrast, width=2)
        elif a["_appearance"] == "Check":
            for x in range(14, 50, 8):
                draw.line([(x, 12), (x, 84)], fill=contrast, width=1)
            for y in range(12, 84, 8):
                draw.line([(14, y), (50, y)], fill=contrast, width=1)
        elif a["_appearance"] in ("All over pattern", "Placement print"):
            r = _rng(cat.seed, "print", a["article_id"])
            for _ in range(12):
                x, y = int(r.integers(16, 46)), int(r.integers(14, 80))
                draw.ellipse([x, y, x + 4, y + 4], fill=contrast)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
        lake.ensure_parent(path)
        partial = path.parent / f".{path.name}.partial"
        partial.write_bytes(buf.getvalue())
        partial.rename(path)
        made += 1
    truths.counts["images_written"] = made


def generate_day(root, day: date, *, scale: float = 1.0, seed: int = 12, parts: tuple[str, ...] = (
        "articles", "customers", "transactions", "reviews", "events", "images"),
        events_scale: float | None = None) -> Truths:
    """Write one day's drops into the lake at ``root`` (an ObjectStoragePath). Returns the truths.

    ``events_scale`` sizes the clickstream (sessions) on its own, over the same catalogue as the
    rest of the day (``scale`` sizes the catalogue, customers, transactions and reviews): one
    consistent day whose events reference the articles of its ``articles.csv``.
    """
    sc = Scale(scale)
    cat = Catalogue(seed, sc, day)
    truths = Truths(day.isoformat())
    truths.counts["articles_catalogue"] = len(cat.articles)
    if "articles" in parts:
        write_articles(root, cat, day, truths)
    if "customers" in parts:
        write_customers(root, cat, day, truths)
    if "transactions" in parts:
        write_transactions(root, cat, day, sc, truths)
    if "reviews" in parts:
        write_reviews(root, cat, day, sc, truths)
    if "events" in parts:
        write_events(root, cat, day, Scale(events_scale) if events_scale else sc, truths)
    if "images" in parts:
        write_images(root, cat, truths)
    return truths


def main(argv: list[str] | None = None) -> None:
    from airflow.sdk import ObjectStoragePath

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lake", required=True, help="the lake's base URL, e.g. file:///abs/path/lake")
    p.add_argument("--day", help="last day to write (YYYY-MM-DD); default yesterday (UTC)")
    p.add_argument("--days", type=int, default=1, help="number of days ending at --day")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--if-missing", action="store_true", help="skip days whose H&M drop is already there")
    args = p.parse_args(argv)
    last = date.fromisoformat(args.day) if args.day else datetime.now(UTC).date() - timedelta(days=1)
    root = ObjectStoragePath(args.lake.rstrip("/") + "/")
    for k in range(args.days - 1, -1, -1):
        day = last - timedelta(days=k)
        if args.if_missing and (lake.hm_day(root, day) / "transactions_train.csv").exists():
            print(f"{day}: already there")
            continue
        truths = generate_day(root, day, scale=args.scale, seed=args.seed)
        print(json.dumps(truths.as_dict()["counts"], sort_keys=True))


if __name__ == "__main__":
    main()
