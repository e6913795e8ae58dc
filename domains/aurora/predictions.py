"""``prediction_pipeline``'s steps: who gets predictions, the three predictions, where they go.

1. :func:`select_users`: active premium and pro users at the run (kept under the run's key).
2. :func:`predict_target` (one task per target, in parallel), with the current model of
   :mod:`domains.aurora.models`: energy 24 hours ahead at 2-hour steps (12 rows a user),
   the day's mood, tonight's sleep quality.
3. :func:`save_predictions`: upsert into ``predictions`` (key: user, target, target day,
   horizon) and, in the SAME transaction, one event per user and target into the outbox
   (:mod:`shared.outbox`). A rerun with the same data and models changes no row and adds no
   event (the event id is derived from the prediction itself).
4. :func:`cache_predictions`: each user's predictions of the day as one Redis hash
   ``aurora:predictions:<user_id>`` (replaced atomically, TTL ``CACHE_TTL_SECONDS``).
5. :func:`publish_events`: the outbox to Kafka (``aurora_kafka``); with the broker down the
   events wait in the outbox and the task still succeeds.

Event ``aurora.prediction.created`` on topic ``aurora.predictions`` (envelope: shared/outbox.py),
``key`` = the user id, ``data``::

    {"user_id": 42, "target": "energy", "target_date": "2026-11-30", "as_of": "...",
     "model_name": "aurora_energy", "model_version": 3,
     "predictions": [{"horizon_hours": 2, "target_time": "2026-11-30T08:00:00+00:00", "value": 6.41}, ...]}
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from contextlib import closing

import numpy as np
import pandas as pd

from domains.aurora.db import REDIS_CONN_ID
from domains.aurora.history import utc_timestamp
from shared.runs import as_of_key

log = logging.getLogger(__name__)

TARGETS = ("energy", "mood", "sleep_quality")
TOPIC = "aurora.predictions"
EVENT_TYPE = "aurora.prediction.created"
SOURCE = "aurora/prediction_pipeline"
KAFKA_CONN_ID = "aurora_kafka"
KEY_PREFIX = "aurora:predictions:"
CACHE_TTL_SECONDS = 36 * 3600  # until well after the next daily run
CHUNK_USERS = 2_500  # users per chunk (predict, save, cache): chunk_users(); a chunk of 2,500 users reads ~0.5 M rows
CHUNK_ENV = "AURORA_PREDICTION_CHUNK_USERS"
COLUMNS = ["user_id", "target", "target_date", "horizon_hours", "target_time", "predicted_value", "model_name",
           "model_version", "as_of"]
KEY = ["user_id", "target", "target_date", "horizon_hours"]



# -- 1. the cohort --------------------------------------------------------------------------------
def select_users(as_of) -> dict:
    """Active premium and pro users (the app's ``PREDICTION_TIERS``), kept for the next tasks."""
    from domains.aurora.app import PREDICTION_TIERS
    from domains.aurora.datasets import save_frame
    from domains.aurora.db import DATABASE, record_tables

    with closing(DATABASE.connect()) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM users WHERE is_active AND subscription_tier = ANY(%s) ORDER BY id",
                        (list(PREDICTION_TIERS),))
            ids = [r[0] for r in cur.fetchall()]
        save_frame(conn, as_of_key("predictions", as_of), "cohort", utc_timestamp(as_of).to_pydatetime(),
                   pd.DataFrame({"user_id": np.asarray(ids, dtype="int64")}))
    record_tables(inputs=["users"], outputs=["training_datasets"])
    log.info("%d active premium/pro user(s) get predictions at %s", len(ids), utc_timestamp(as_of))
    return {"users": len(ids), "as_of": utc_timestamp(as_of).isoformat()}


def cohort(conn, as_of) -> list[int]:
    from domains.aurora.datasets import load_frame

    return [int(u) for u in load_frame(conn, as_of_key("predictions", as_of), "cohort")["user_id"]]


# -- 2. predictions ----------------------------------------------------------------------------------
def to_rows(target: str, frame: pd.DataFrame, as_of) -> pd.DataFrame:
    """A ``models.predict`` frame as ``predictions`` rows."""
    from domains.aurora.models import PREDICTION_COLUMNS

    as_of = utc_timestamp(as_of)
    out = pd.DataFrame({"user_id": frame["user_id"].astype("int64").to_numpy(), "target": target})
    if target == "energy":
        out["target_date"] = as_of.date()
        out["horizon_hours"] = frame["horizon_hours"].astype(int).to_numpy()
        out["target_time"] = pd.to_datetime(frame["target_time"], utc=True).array  # no Timestamp per row
    else:
        out["target_date"] = pd.to_datetime(frame["target_date"]).dt.date.to_numpy()
        out["horizon_hours"] = 0  # a daily target: no target_time (NULL)
    out["predicted_value"] = frame[PREDICTION_COLUMNS[target]].astype(float).round(6).to_numpy()
    out["model_name"] = frame["model_name"].to_numpy()
    out["model_version"] = frame["model_version"].astype(int).to_numpy()
    out["as_of"] = as_of
    return out[[c for c in COLUMNS if c in out.columns]]


def chunk_users(chunk: int | None = None) -> int:
    """Users per chunk of the predict, save and cache steps: ``chunk`` when given, else the
    environment's ``AURORA_PREDICTION_CHUNK_USERS`` (read here, when a step starts), else
    ``CHUNK_USERS``. Memory holds one chunk's history, predictions and events at a time."""
    value = int(chunk or os.environ.get(CHUNK_ENV) or CHUNK_USERS)
    if value < 1:
        raise ValueError(f"{CHUNK_ENV} / chunk must be a positive number of users, not {value}")
    return value


def predict_target(target: str, as_of, chunk: int | None = None) -> dict:
    """Task body: the target's predictions for the cohort with the current model, ``chunk``
    users at a time (:func:`chunk_users`): a chunk's history read, predicted and stored as one
    part of ``predictions:<target>`` (:func:`domains.aurora.datasets.save_parts`, one
    transaction on a second connection) before the next chunk is read."""
    from domains.aurora import models, registry
    from domains.aurora.datasets import save_parts
    from domains.aurora.db import DATABASE, HISTORY_TABLES, record_tables

    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; one of {TARGETS}")
    chunk = chunk_users(chunk)
    when = utc_timestamp(as_of)
    with closing(DATABASE.connect()) as conn, closing(DATABASE.connect()) as out:
        users = cohort(conn, as_of)
        model = registry.load_current(conn, target)  # NoCurrentModel: train first (clear message)
        conn.commit()
        # read_history runs each chunk's reads in a read-only transaction of its own on ``conn``;
        # the parts go into one transaction on ``out``, committed once every part is written
        parts = (to_rows(target, models.predict(conn, target, when, users[i:i + chunk], model=model), as_of)
                 for i in range(0, len(users), chunk))
        rows = save_parts(out, as_of_key("predictions", as_of), f"predictions:{target}", when.to_pydatetime(), parts)
    record_tables(inputs=["training_datasets", "model_registry", *HISTORY_TABLES.values()], outputs=["training_datasets"])
    log.info("%s: %d prediction row(s) for %d user(s) in chunks of %d with %s v%s", target, rows, len(users), chunk,
             model.name, model.version)
    return {"target": target, "users": len(users), "rows": rows, "model_name": model.name,
            "model_version": model.version}


# -- 3. PostgreSQL + outbox, one transaction -------------------------------------------------------
def events_for(rows: pd.DataFrame):
    """One outbox event per (user, target, target day); its id changes only when the prediction does.

    Groups are found on the sorted columns (one pass over plain lists, each distinct timestamp
    formatted once) instead of a pandas group per event: the same events, in the same order,
    as grouping the sorted rows by (user, target, target day). Each event's data is written as
    JSON text once (:class:`shared.outbox.EncodedJSON`), each prediction's ``{...}`` made in one
    pass over the rows: the same text ``json.dumps`` gives, which also feeds the event's digest."""
    from shared.outbox import EncodedJSON, Event

    if rows.empty:
        return
    rows = rows.sort_values(["user_id", "target", "target_date", "horizon_hours"], kind="stable")
    uids = rows["user_id"].to_numpy()
    targets = rows["target"].to_numpy(dtype=object)
    days = rows["target_date"].to_numpy(dtype=object)
    starts = np.ones(len(rows), dtype=bool)
    starts[1:] = (uids[1:] != uids[:-1]) | (targets[1:] != targets[:-1]) | (days[1:] != days[:-1])
    bounds = [*np.flatnonzero(starts).tolist(), len(rows)]

    def iso(column: str, missing: str | None, encode=lambda t: t) -> list:
        codes, uniques = pd.factorize(rows[column])
        text = [encode(pd.Timestamp(u).isoformat()) for u in uniques]
        return [missing if c < 0 else text[c] for c in codes.tolist()]

    times = iso("target_time", "null", json.dumps)  # "..." or null, as json.dumps writes them
    values = rows["predicted_value"].astype(float)
    # json.dumps writes a finite float as repr() does (NaN and infinities as NaN, Infinity)
    values = list(map(repr if np.isfinite(values.to_numpy()).all() else json.dumps, values.tolist()))
    # one prediction's JSON, as json.dumps writes {"horizon_hours": h, "target_time": t, "value": v}
    # (keys in sorted order, the text sort_keys=True gave, so earlier runs' event ids stay the same)
    preds = [f'{{"horizon_hours": {int(h)}, "target_time": {t}, "value": {v}}}'
             for h, t, v in zip(rows["horizon_hours"].to_numpy().tolist(), times, values, strict=True)]
    as_ofs = iso("as_of", "NaT")
    names = rows["model_name"].tolist()
    versions = rows["model_version"].to_numpy().tolist()
    uid_list = uids.tolist()
    text: dict = {}  # the few distinct strings (targets, model names, days, as_of), encoded once

    def enc(v) -> str:
        return text.get(v) or text.setdefault(v, json.dumps(v))

    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        uid, target, day, name, version = int(uid_list[a]), targets[a], days[a], names[a], int(versions[a])
        p = "[" + ", ".join(preds[a:b]) + "]"
        digest = hashlib.sha256(f"[{enc(name)}, {version}, {p}]".encode()).hexdigest()[:16]
        data = EncodedJSON(
            f'{{"user_id": {uid}, "target": {enc(target)}, "target_date": {enc(str(day))}, "as_of": {enc(as_ofs[a])},'
            f' "model_name": {enc(name)}, "model_version": {version}, "predictions": {p}}}')
        yield Event(TOPIC, EVENT_TYPE, str(uid), data, dedup_key=f"{uid}|{target}|{day}|{digest}")


def _typed(rows: pd.DataFrame) -> pd.DataFrame:
    """Stored ``predictions`` rows (numbers come back as floats) with their table's types."""
    rows = rows.reindex(columns=COLUMNS)
    rows["target_time"] = pd.to_datetime(rows["target_time"], utc=True)
    for col in ("user_id", "horizon_hours", "model_version"):
        rows[col] = rows[col].astype("int64")
    return rows


def save_predictions(as_of) -> dict:
    """Task body: the three targets' rows upserted and their events added, committed together,
    one chunk of users at a time: part i of each target (the same users when the predict steps
    used the same chunk size) read, its events added, its rows sent
    (:func:`shared.db.bulk_upsert_frames`: COPY straight into an empty table, else one merge at the
    end), then dropped before part i + 1 is read."""
    from itertools import zip_longest

    from domains.aurora.datasets import load_parts
    from domains.aurora.db import DATABASE, record_tables
    from shared.db import bulk_upsert_frames
    from shared.outbox import add_events

    key = as_of_key("predictions", as_of)
    counts = {"rows": 0, "events": 0}
    with closing(DATABASE.connect()) as conn:
        def chunks():
            for parts in zip_longest(*(load_parts(conn, key, f"predictions:{t}") for t in TARGETS)):
                rows = pd.concat([p for p in parts if p is not None and not p.empty], ignore_index=True)
                if rows.empty:
                    continue
                rows = _typed(rows)
                with conn.cursor() as cur:  # the chunk's events, streamed from its rows
                    counts["events"] += add_events(cur, events_for(rows), source=SOURCE)
                counts["rows"] += len(rows)
                yield rows

        # a part's users are in no other part: the chunks share no key
        result = bulk_upsert_frames(conn, "predictions", COLUMNS, chunks(), key=KEY, commit=False)
        conn.commit()
    record_tables(inputs=["training_datasets"], outputs=["predictions", "event_outbox"])
    log.info("predictions: %d row(s), %d new, %d updated; %d new event(s) in the outbox",
             counts["rows"], result.inserted, result.updated, counts["events"])
    return {"rows": counts["rows"], "inserted": result.inserted, "updated": result.updated, "events": counts["events"]}


# -- 4. Redis -----------------------------------------------------------------------------------------
def cache_predictions(as_of, chunk: int | None = None) -> dict:
    """Task body: per cohort user one hash of the day's predictions (as saved in PostgreSQL),
    ``chunk`` users at a time (:func:`chunk_users`): their rows read (:func:`cached_hashes`) and written to Redis before
    the next chunk is read, so memory stays that of one chunk."""
    from domains.aurora.db import DATABASE
    from shared.redis_store import connect, replace_hashes

    as_of = utc_timestamp(as_of)
    client = connect(REDIS_CONN_ID)  # fails clearly before any work when Redis is down
    with closing(DATABASE.connect()) as conn:
        users = cohort(conn, as_of)
        written = replace_hashes(client, cached_hashes(conn, as_of, users, chunk_users(chunk)), ttl=CACHE_TTL_SECONDS)
        conn.commit()
    log.info("cached the predictions of %d user(s) in Redis (TTL %d s)", written, CACHE_TTL_SECONDS)
    return {"users": written, "ttl_seconds": CACHE_TTL_SECONDS}


def cached_hashes(conn, as_of, users: list[int], chunk: int = CHUNK_USERS):
    """(key, hash) per user with predictions at ``as_of``, read ``chunk`` users at a time. A hash:
    ``as_of``; ``models`` (JSON: target -> model version); ``energy`` (JSON: ``[[target time,
    value], ...]`` by horizon) and ``energy_date``; ``mood``/``sleep_quality`` (the value) and
    ``<target>_date``. Times and ``as_of`` in ISO 8601 UTC, values the stored doubles.

    Rows are fetched as tuples (the driver's C row loader), not through ``COPY``: psycopg 3 hands
    COPY data over one row at a time, which for these short rows cost more than the fetch."""
    stamp = utc_timestamp(as_of).isoformat()
    when = utc_timestamp(as_of).to_pydatetime()
    iso: dict = {}  # each distinct target time (a dozen) as its JSON text, made once
    models_text: dict = {}  # the few distinct {target: version} texts, encoded once
    for i in range(0, len(users), chunk):
        with conn.cursor() as cur:
            cur.execute(
                "SELECT user_id, target, to_char(target_date, 'YYYY-MM-DD'), target_time::text, predicted_value,"
                " model_version FROM predictions WHERE as_of = %s AND user_id = ANY(%s)"
                " ORDER BY user_id, target, horizon_hours", (when, users[i:i + chunk]))
            rows = cur.fetchall()
        start, uid = 0, None
        for j, row in enumerate([*rows, (None,)]):  # a sentinel closes the last user
            if row[0] == uid:
                continue
            if uid is not None:
                yield f"{KEY_PREFIX}{uid}", _cached_hash(rows[start:j], stamp, iso, models_text)
            start, uid = j, row[0]


def _cached_hash(rows: list[tuple], stamp: str, iso: dict, models_text: dict) -> dict:
    """One user's hash from their rows (ordered by target, horizon)."""
    h: dict = {"as_of": stamp}
    energy: list[str] = []
    models: dict = {}
    for _, target, day, t, value, version in rows:
        models[target] = version
        if target == "energy":
            t_text = iso.get(t)
            if t_text is None:
                t_text = iso[t] = json.dumps(pd.Timestamp(t).tz_convert("UTC").isoformat())
            energy.append(f"[{t_text}, {value!r}]" if math.isfinite(value) else f"[{t_text}, {json.dumps(value)}]")
            h["energy_date"] = day
        else:
            h[target] = value
            h[f"{target}_date"] = day
    key = tuple(models.items())
    text = models_text.get(key)
    if text is None:
        text = models_text[key] = json.dumps(models)
    h["models"] = text
    if energy:
        h["energy"] = "[" + ", ".join(energy) + "]"
    return h


def read_cached(client, user_id: int) -> dict:
    raw = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
           for k, v in client.hgetall(f"{KEY_PREFIX}{user_id}").items()}
    out: dict = dict(raw)
    for field in ("energy", "models"):
        if field in out:
            out[field] = json.loads(out[field])
    for field in ("mood", "sleep_quality"):
        if field in out:
            out[field] = float(out[field])
    return out


# -- 5. Kafka --------------------------------------------------------------------------------------------
def publish_events() -> dict:
    """Task body: every waiting outbox event to Kafka; a broker outage leaves them waiting."""
    from domains.aurora.db import DATABASE
    from shared.outbox import publish_outbox

    with closing(DATABASE.connect()) as conn:
        result = publish_outbox(conn, KAFKA_CONN_ID)
    return {"published": result.published, "waiting": result.waiting, "broker_reachable": result.broker_reachable}

