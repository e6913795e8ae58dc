"""The feature store that ``feature_engineering_pipeline`` keeps: the seed's twelve features per
user, online in Redis and offline in PostgreSQL.

- :func:`compute_group` (one task per group, in parallel): the group's features of every
  active user at ``as_of``, computed by :mod:`domains.aurora.features` (the one definition the
  models train and predict on), in chunks of users, from only the history the group needs; the frame is kept in PostgreSQL
  (``training_datasets``, :mod:`domains.aurora.datasets`) under the interval's key.
- :func:`update_feature_store`: joins the four groups, upserts the snapshot into
  ``feature_store`` (one row per user and ``as_of``) in one transaction, then replaces each
  user's Redis hash ``aurora:features:<user_id>`` (the twelve features + ``as_of``) in
  pipelined Lua script calls (:func:`shared.redis_store.replace_hashes`): a reader never sees a
  half-updated user, in either store. Redis is only written for the newest snapshot, so a
  rerun of an older interval never moves the online store back in time.

Idempotent per data interval: the key is the interval's end (``as_of``); a rerun computes the
same frames, changes no row (the upsert skips equal rows) and writes the same hashes.
"""

from __future__ import annotations

import logging
from contextlib import closing
from datetime import datetime

import pandas as pd

from shared.runs import as_of_key

log = logging.getLogger(__name__)

KEY_PREFIX = "aurora:features:"
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "activity": ("activity_count_24h", "activity_count_7d", "activity_count_30d", "activity_diversity_7d",
                 "total_minutes_7d"),
    "sleep": ("avg_sleep_duration_7d", "sleep_consistency_7d", "sleep_debt_minutes"),
    "exercise": ("exercise_count_7d", "exercise_consistency_score"),
    "social": ("friend_count", "social_engagement_score"),
}
FEATURES = tuple(f for group in FEATURE_GROUPS.values() for f in group)
CHUNK_USERS = 10_000
# A user's online features live a week after the last refresh (a user who left drops out).
TTL_SECONDS = 7 * 24 * 3600



def user_ids(conn, only_active: bool = True) -> list[int]:
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM users" + (" WHERE is_active" if only_active else "") + " ORDER BY id")
        ids = [r[0] for r in cur.fetchall()]
    conn.commit()
    return ids


def group_features(conn, group: str, as_of: datetime, users: list[int], chunk: int = CHUNK_USERS) -> pd.DataFrame:
    """The group's features of ``users`` at ``as_of`` (index ``user_id``): only the history
    tables (and event types) the group needs are read, over only the days its features look
    back on (``feature_window``: 7 nights for sleep), only its features computed; the same
    values as ``user_features(read_history(...), ...)[columns]``."""
    from domains.aurora.features import feature_window, history_needs, user_features
    from domains.aurora.history import read_history

    columns = list(FEATURE_GROUPS[group])
    needs = history_needs(columns)
    start, end = feature_window(as_of, columns)  # only the days the group looks back on
    parts = []
    for i in range(0, len(users), chunk):
        ids = users[i:i + chunk]
        # the chunk's history is dropped before the next chunk is read (no two in memory at once)
        parts.append(user_features(read_history(conn, start, end, ids, tables=needs.tables,
                                                event_types=needs.event_types), end, ids, columns))
    return pd.concat(parts) if parts else pd.DataFrame(columns=columns, index=pd.Index([], name="user_id"))


def compute_group(group: str, as_of: datetime) -> dict:
    """Task body: compute one group and keep it for :func:`update_feature_store`."""
    from domains.aurora.datasets import save_frame
    from domains.aurora.db import DATABASE, record_tables
    from domains.aurora.features import history_needs
    from domains.aurora.history import TABLES

    if group not in FEATURE_GROUPS:
        raise ValueError(f"unknown feature group {group!r}; one of {sorted(FEATURE_GROUPS)}")
    with closing(DATABASE.connect()) as conn:
        frame = group_features(conn, group, as_of, user_ids(conn))
        save_frame(conn, as_of_key("feature_store", as_of), f"features:{group}", pd.Timestamp(as_of).to_pydatetime(),
                   frame.reset_index())
    read = ["users", *(TABLES[t] for t in history_needs(FEATURE_GROUPS[group]).tables if t != "users")]
    record_tables(inputs=read, outputs=["training_datasets"])
    log.info("feature group %s: %d user(s) at %s", group, len(frame), as_of)
    return {"group": group, "users": len(frame), "features": list(FEATURE_GROUPS[group])}


def snapshot(conn, as_of: datetime) -> pd.DataFrame:
    """The four stored groups joined: one row per user, the twelve features (index ``user_id``)."""
    from domains.aurora.datasets import load_frame

    frames = [load_frame(conn, as_of_key("feature_store", as_of), f"features:{g}").set_index("user_id") for g in FEATURE_GROUPS]
    out = frames[0].join(frames[1:], how="outer")
    out.index = out.index.astype("int64")
    return out[list(FEATURES)].sort_index()


def update_feature_store(as_of: datetime) -> dict:
    """Task body: the snapshot into PostgreSQL (one transaction), then into Redis (atomic per user)."""
    from domains.aurora.db import DATABASE, record_tables
    from shared.db import bulk_upsert
    from shared.redis_store import connect, replace_hashes

    as_of_ts = pd.Timestamp(as_of).tz_convert("UTC")
    with closing(DATABASE.connect()) as conn:
        frame = snapshot(conn, as_of)
        rows = frame.reset_index()
        rows.insert(1, "as_of", as_of_ts)
        upsert = bulk_upsert(conn, "feature_store", ["user_id", "as_of", *FEATURES], rows, key=["user_id", "as_of"])
        with conn.cursor() as cur:
            cur.execute("SELECT max(as_of) FROM feature_store")
            newest = pd.Timestamp(cur.fetchone()[0])
        conn.commit()
    written = 0
    if newest <= as_of_ts:
        from domains.aurora.db import REDIS_CONN_ID
        client = connect(REDIS_CONN_ID)
        stamp = as_of_ts.isoformat()
        hashes = ((f"{KEY_PREFIX}{uid}", {**dict(zip(FEATURES, values, strict=True)), "as_of": stamp})
                  for uid, values in zip(frame.index.tolist(), frame.itertuples(index=False, name=None), strict=True))
        written = replace_hashes(client, hashes, ttl=TTL_SECONDS)
    else:
        log.info("as_of %s is older than the newest snapshot %s: Redis keeps the newer features", as_of_ts, newest)
    record_tables(inputs=["training_datasets"], outputs=["feature_store"])
    log.info("feature store at %s: %d user(s); PostgreSQL %d new, %d updated; Redis %d hash(es)",
             as_of_ts, len(frame), upsert.inserted, upsert.updated, written)
    return {"as_of": as_of_ts.isoformat(), "users": len(frame), "inserted": upsert.inserted,
            "updated": upsert.updated, "redis_keys": written}


def read_online(client, user_id: int) -> dict[str, float | str]:
    """A user's online features as stored (``as_of`` as text, features as floats)."""
    raw = client.hgetall(f"{KEY_PREFIX}{user_id}")
    return {(k.decode() if isinstance(k, bytes) else k):
            ((v.decode() if isinstance(v, bytes) else v) if (k in (b"as_of", "as_of")) else float(v))
            for k, v in raw.items()}
