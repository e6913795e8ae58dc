"""``predictions.events_for`` (grouped on sorted columns) gives exactly the events the per-group
pandas loop gave (kept here as the oracle): same order, ids, keys and data."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd

from domains.aurora.predictions import EVENT_TYPE, TOPIC, events_for


def old_events_for(rows: pd.DataFrame):
    """``events_for`` as it was (one pandas group per event)."""
    from shared.outbox import Event

    rows = rows.sort_values(["user_id", "target", "target_date", "horizon_hours"], kind="stable")
    for (uid, target, day), g in rows.groupby(["user_id", "target", "target_date"], sort=False):
        preds = [{"horizon_hours": int(h), "target_time": None if pd.isna(t) else pd.Timestamp(t).isoformat(),
                  "value": float(v)}
                 for h, t, v in zip(g["horizon_hours"], g["target_time"], g["predicted_value"], strict=True)]
        first = g.iloc[0]
        data = {"user_id": int(uid), "target": target, "target_date": str(day),
                "as_of": pd.Timestamp(first["as_of"]).isoformat(), "model_name": first["model_name"],
                "model_version": int(first["model_version"]), "predictions": preds}
        digest = hashlib.sha256(json.dumps([data["model_name"], data["model_version"], preds],
                                           sort_keys=True).encode()).hexdigest()[:16]
        yield Event(TOPIC, EVENT_TYPE, str(int(uid)), data, dedup_key=f"{uid}|{target}|{day}|{digest}")


def sample_rows(users: int = 40, seed: int = 7) -> pd.DataFrame:
    """Rows as ``save_predictions`` has them: three targets, energy at 12 horizons, shuffled."""
    rng = np.random.default_rng(seed)
    as_of = pd.Timestamp("2026-11-30T06:00:00Z")
    day = as_of.date()
    parts = []
    for target, horizons in (("energy", range(2, 25, 2)), ("mood", [0]), ("sleep_quality", [0])):
        h = np.tile(list(horizons), users)
        frame = pd.DataFrame({
            "user_id": np.repeat(np.arange(1, users + 1, dtype="int64") * 3, len(horizons)),
            "target": target, "target_date": day, "horizon_hours": h.astype("int64"),
            "target_time": (pd.Series(as_of + pd.to_timedelta(h, unit="h")) if target == "energy"
                            else pd.Series(pd.NaT, index=range(len(h)), dtype="datetime64[ns, UTC]")),
            "predicted_value": rng.uniform(1, 10, len(h)).round(6),
            "model_name": f"aurora_{target}", "model_version": np.int64(3), "as_of": as_of,
        })
        parts.append(frame)
    rows = pd.concat(parts, ignore_index=True)
    rows.loc[5, "predicted_value"] = 7.0  # a whole number and an extreme value keep their JSON form
    rows.loc[6, "predicted_value"] = 1e-7
    return rows.sample(frac=1, random_state=seed).reset_index(drop=True)


def test_events_for_equals_the_per_group_loop():
    rows = sample_rows()
    new, old = list(events_for(rows)), list(old_events_for(rows))
    assert len(new) == len(old) == 3 * 40
    for a, b in zip(new, old, strict=True):
        assert (a.topic, a.event_type, a.key, a.dedup_key, a.event_id) == (b.topic, b.event_type, b.key,
                                                                            b.dedup_key, b.event_id)
        data = json.loads(a.data)  # the data as JSON text (EncodedJSON): what json.dumps(data) wrote
        assert a.data == json.dumps(b.data)
        assert json.dumps(data, sort_keys=True) == json.dumps(b.data, sort_keys=True)
        assert [type(v) for v in data.values()] == [type(v) for v in b.data.values()]
        assert [[type(v) for v in p.values()] for p in data["predictions"]] == \
            [[type(v) for v in p.values()] for p in b.data["predictions"]]


def test_events_for_no_rows():
    assert list(events_for(sample_rows().iloc[:0])) == []

