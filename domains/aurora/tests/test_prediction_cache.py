"""``predictions.cache_predictions`` (chunks of users, several keys per script call) on the real
PostgreSQL and the domain Redis: every key holds exactly the hash the row-by-row build gave
(kept here as the oracle), old fields are gone, the TTL is set; ``replace_hashes`` keeps each
value's text as redis-py wrote it."""

from __future__ import annotations

import json
import math
from contextlib import closing

import numpy as np
import pandas as pd
import pytest

from domains.aurora import predictions
from domains.aurora.tests.test_prediction_events import sample_rows

AS_OF = pd.Timestamp("2026-11-30T06:00:00Z")


def old_hashes(conn, as_of) -> dict[str, dict]:
    """The hashes ``cache_predictions`` built before (one pass over every row fetched at once),
    with each value as redis-py encodes it (``repr`` of a number, a str as it is)."""
    users = predictions.cohort(conn, as_of)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT user_id, target, target_date, target_time, predicted_value, model_version"
            " FROM predictions WHERE as_of = %s AND user_id = ANY(%s) ORDER BY user_id, target, horizon_hours",
            (as_of.to_pydatetime(), users))
        rows = cur.fetchall()
    conn.commit()
    hashes: dict = {}
    for uid, target, day, t, value, version in rows:
        h = hashes.setdefault(uid, {"as_of": as_of.isoformat(), "models": {}})
        h["models"][target] = version
        if target == "energy":
            h.setdefault("energy", []).append([t.isoformat(), value])
            h["energy_date"] = day.isoformat()
        else:
            h[target] = value
            h[f"{target}_date"] = day.isoformat()
    return {f"{predictions.KEY_PREFIX}{uid}": {f: json.dumps(v) if isinstance(v, list | dict) else
                                               (v if isinstance(v, str) else repr(v))
                                               for f, v in h.items() if not (isinstance(v, float) and math.isnan(v))}
            for uid, h in hashes.items()}


@pytest.fixture
def aurora(domain_db, domain_redis):
    from domains.aurora.datasets import save_frame
    from domains.aurora.db import DATABASE
    from shared.db import bulk_upsert
    from shared.runs import as_of_key

    domain_db("aurora")
    rows = sample_rows(users=40)
    rows.loc[rows["target"] == "mood", "predicted_value"] = rows["predicted_value"] + 1 / 3  # full-precision doubles
    with closing(DATABASE.connect()) as conn:
        bulk_upsert(conn, "predictions", predictions.COLUMNS, rows[predictions.COLUMNS], key=predictions.KEY)
        cohort = sorted(rows["user_id"].unique().tolist())[:-1] + [10_000]  # one user without predictions
        save_frame(conn, as_of_key("predictions", AS_OF), "cohort", AS_OF.to_pydatetime(),
                   pd.DataFrame({"user_id": np.asarray(cohort, dtype="int64")}))
    return domain_redis, cohort


def test_cached_hashes_equal_the_row_by_row_build_across_chunks(aurora):
    from domains.aurora.db import DATABASE

    server, cohort = aurora
    client = server.client("aurora")
    stale = f"{predictions.KEY_PREFIX}{cohort[0]}"
    client.hset(stale, mapping={"left_over": "x", "mood": "0"})  # a previous day's hash with another field
    result = predictions.cache_predictions(AS_OF, chunk=7)  # 40 cohort users: 6 chunks, the last one short
    with closing(DATABASE.connect()) as conn:
        expected = old_hashes(conn, AS_OF)
    assert result["users"] == len(expected) == len(cohort) - 1  # the user without predictions gets no key
    got = {k: client.hgetall(k) for k in client.scan_iter(f"{predictions.KEY_PREFIX}*")}
    assert got == expected  # every field's text exactly, nothing left from the stale hash
    assert all(0 < client.ttl(k) <= predictions.CACHE_TTL_SECONDS for k in got)
    cached = predictions.read_cached(client, cohort[0])
    assert len(cached["energy"]) == 12 and cached["models"] == {"energy": 3, "mood": 3, "sleep_quality": 3}


def test_replace_hashes_keeps_each_values_text_across_calls_and_batches(domain_redis):
    from shared.redis_store import KEYS_PER_CALL, connect, replace_hashes

    client = connect("aurora_redis")
    n = KEYS_PER_CALL * 2 + 17  # several script calls per batch and several batches
    hashes = {f"aurora:t:{i}": {"int": i, "float": i / 7, "text": f"é \"{i}\" \\ [1, 2]", "bytes": b"raw",
                                "none": None, "nan": float("nan"), "np": np.float64(0.1)} for i in range(n)}
    hashes["aurora:t:empty"] = {}
    client.hset("aurora:t:empty", mapping={"old": "1"})
    client.hset("aurora:t:3", mapping={"old": "1"})
    assert replace_hashes(client, ((k, v) for k, v in hashes.items()), ttl=None, batch_size=KEYS_PER_CALL + 3) == n + 1
    check = domain_redis.client("aurora")
    for i in (0, 3, n - 1):
        assert check.hgetall(f"aurora:t:{i}") == {"int": str(i), "float": repr(i / 7), "text": f"é \"{i}\" \\ [1, 2]",
                                                  "bytes": "raw", "np": "0.1"}
        assert check.ttl(f"aurora:t:{i}") == -1  # no TTL asked for
    assert not check.exists("aurora:t:empty")  # an empty hash: the key is removed
    with pytest.raises(TypeError):
        replace_hashes(client, {"aurora:t:bad": {"flag": True}})
