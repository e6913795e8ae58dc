"""prediction_pipeline's predict and save steps in chunks of users (``AURORA_PREDICTION_CHUNK_USERS``
or the ``chunk`` argument), on the real PostgreSQL: chunks smaller than the cohort store one part
per chunk and give exactly the ``predictions`` rows and outbox events (same ids, data, order) of
one chunk; a rerun with another chunk size replaces the parts and changes nothing."""

from __future__ import annotations

import math
from contextlib import closing

import pandas as pd
import pytest

from domains.aurora import predictions
from domains.aurora.tests.realtime import load_dataset, query, train_current_models
from shared.runs import as_of_key

AS_OF = pd.Timestamp("2026-11-30T06:00:00Z")
KEY = as_of_key("predictions", AS_OF)


@pytest.fixture
def aurora(domain_db):
    db = domain_db("aurora")
    load_dataset(users=60, days=40)
    train_current_models()
    users = predictions.select_users(AS_OF)["users"]
    assert users > 8  # several chunks of 4 below
    return db, users


def parts(db, target: str) -> list[str]:
    return [r[0] for r in query(db, "SELECT name FROM training_datasets WHERE run_key = %s AND starts_with(name, %s)"
                                    " ORDER BY name", (KEY, f"predictions:{target}#"))]


def tables(db) -> tuple[list, list]:
    rows = query(db, "SELECT user_id, target, target_date, horizon_hours, target_time, predicted_value, model_name,"
                     " model_version, as_of FROM predictions ORDER BY user_id, target, horizon_hours")
    events = query(db, "SELECT event_id, event_key, payload->'data' FROM event_outbox WHERE topic = %s ORDER BY id",
                   (predictions.TOPIC,))
    return rows, events


def run(**chunk) -> dict:
    for target in predictions.TARGETS:
        predictions.predict_target(target, AS_OF, **chunk)
    return predictions.save_predictions(AS_OF)


def test_chunks_give_the_tables_of_one_chunk_and_the_setting_is_honoured(aurora, monkeypatch):
    db, users = aurora
    monkeypatch.setenv(predictions.CHUNK_ENV, "4")  # read when the step runs
    saved = run()
    assert saved == {"rows": 14 * users, "inserted": 14 * users, "updated": 0, "events": 3 * users}
    for target in predictions.TARGETS:  # one stored part per chunk of 4 users, and the count
        assert parts(db, target) == [f"predictions:{target}#{i:06d}" for i in range(math.ceil(users / 4))] + [
            f"predictions:{target}#parts"]
    chunked = tables(db)
    assert len(chunked[0]) == 14 * users and len(chunked[1]) == 3 * users

    query(db, "TRUNCATE predictions")
    query(db, "DELETE FROM event_outbox WHERE topic = %s", (predictions.TOPIC,))
    saved = run(chunk=1000)  # the argument wins over the environment: the cohort in one chunk
    assert saved["inserted"] == 14 * users and saved["events"] == 3 * users
    assert parts(db, "energy") == ["predictions:energy#000000", "predictions:energy#parts"]
    assert tables(db) == chunked  # same rows; same event ids, keys, data, in the same order

    monkeypatch.setenv(predictions.CHUNK_ENV, "7")  # a rerun with another chunk size: nothing changes
    assert run() == {"rows": 14 * users, "inserted": 0, "updated": 0, "events": 0}
    assert len(parts(db, "mood")) == math.ceil(users / 7) + 1  # the previous try's parts replaced
    assert tables(db) == chunked


def test_chunk_size_must_be_positive(monkeypatch):
    monkeypatch.setenv(predictions.CHUNK_ENV, "0")
    with pytest.raises(ValueError, match="positive"):
        predictions.chunk_users()
    assert predictions.chunk_users(3) == 3
    monkeypatch.delenv(predictions.CHUNK_ENV)
    assert predictions.chunk_users() == predictions.CHUNK_USERS


def test_load_parts_reads_a_frame_stored_whole(domain_db):
    from domains.aurora.datasets import load_parts, save_frame, save_parts
    from domains.aurora.db import DATABASE

    domain_db("aurora")
    frame = pd.DataFrame({"user_id": [1, 2, 3], "value": [0.5, 1.5, 2.5]})
    with closing(DATABASE.connect()) as conn:
        with pytest.raises(LookupError):
            next(load_parts(conn, "k", "x"))
        save_frame(conn, "k", "x", AS_OF.to_pydatetime(), frame)  # an earlier version's whole frame
        assert [len(p) for p in load_parts(conn, "k", "x")] == [3]
        assert save_parts(conn, "k", "x", AS_OF.to_pydatetime(), (frame.iloc[i:i + 2] for i in (0, 2))) == 3
        assert [p["user_id"].tolist() for p in load_parts(conn, "k", "x")] == [[1, 2], [3]]
        assert save_parts(conn, "k", "x", AS_OF.to_pydatetime(), iter([])) == 0  # no rows: no parts, not "not run"
        assert list(load_parts(conn, "k", "x")) == []
