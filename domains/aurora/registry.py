"""aurora's model registry (table ``model_registry``): each trained version, which one is
current, and the promotion rule (a new version must beat the naive baseline and the current
version on the same hold-out). ``domains.aurora.models`` holds the models themselves."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from domains.aurora.history import utc_timestamp
from domains.aurora.models import (
    MODEL_NAMES,
    TRAINING_EVENT,
    TRAINING_SOURCE,
    TRAINING_TOPIC,
    Model,
    NoCurrentModel,
    TrainingResult,
    metrics,
    train_and_evaluate,
)
from shared.outbox import Event, add_events


@dataclass
class RegistryEntry:
    model_name: str
    version: int
    run_key: str
    promoted: bool
    is_current: bool
    decision: str
    metrics: dict
    baseline_metrics: dict
    current_metrics: dict | None
    trained_now: bool = True

    def summary(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "version": self.version, "promoted": self.promoted,
                "is_current": self.is_current, "decision": self.decision, "metrics": self.metrics,
                "baseline_metrics": self.baseline_metrics, "current_metrics": self.current_metrics,
                "trained_now": self.trained_now}


_ENTRY_COLUMNS = ("model_name, version, run_key, promoted, is_current, decision, metrics, baseline_metrics,"
                  " current_metrics")


def _entry(row, trained_now: bool) -> RegistryEntry:
    def js(v):
        return v if v is None or isinstance(v, dict) else json.loads(v)

    return RegistryEntry(row[0], row[1], row[2], row[3], row[4], row[5], js(row[6]), js(row[7]), js(row[8]),
                         trained_now)


def registered(conn, target: str, run_key: str) -> RegistryEntry | None:
    with conn.cursor() as cur:
        cur.execute(f"SELECT {_ENTRY_COLUMNS} FROM model_registry WHERE model_name = %s AND run_key = %s",
                    (MODEL_NAMES[target], run_key))
        row = cur.fetchone()
    return _entry(row, trained_now=False) if row else None


def _lock(cur, target: str) -> None:
    key = int(hashlib.sha256(f"aurora-registry:{MODEL_NAMES[target]}".encode()).hexdigest()[:15], 16)
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (key,))


def _load_current(cur, target: str) -> Model | None:
    cur.execute("SELECT algorithm, artifact, features, version FROM model_registry WHERE model_name = %s"
                " AND is_current", (MODEL_NAMES[target],))
    row = cur.fetchone()
    return Model.from_bytes(target, row[0], row[1], row[2], row[3]) if row else None


def register(conn, target: str, result: TrainingResult, run_key: str, as_of) -> RegistryEntry:
    """Store ``result`` as the next version; promote it if it beats the baseline and the current
    version on the same hold-out. One transaction, serialised per model."""
    name = MODEL_NAMES[target]
    with conn.cursor() as cur:
        _lock(cur, target)
        cur.execute(f"SELECT {_ENTRY_COLUMNS} FROM model_registry WHERE model_name = %s AND run_key = %s",
                    (name, run_key))
        row = cur.fetchone()
        if row:  # another try of this run registered it already
            conn.commit()
            return _entry(row, trained_now=False)
        current = _load_current(cur, target)
        current_metrics = None
        m, b = result.metrics, result.baseline_metrics
        if current is not None:
            try:
                current_metrics = metrics(result.holdout["y"], current.predict(result.holdout))
                current_metrics["version"] = current.version
            except KeyError as e:  # the current version reads features this data has not
                current_metrics = {"version": current.version, "error": str(e)}
        if m["mae"] >= b["mae"]:
            promoted, decision = False, f"not promoted: hold-out MAE {m['mae']:.4f} >= naive baseline {b['mae']:.4f}"
        elif current_metrics is not None and "mae" in current_metrics and m["mae"] >= current_metrics["mae"]:
            promoted = False
            decision = (f"not promoted: hold-out MAE {m['mae']:.4f} >= current v{current.version}"
                        f" {current_metrics['mae']:.4f}")
        else:
            promoted = True
            than = f", current v{current.version} {current_metrics.get('mae', 'n/a')}" if current else ""
            decision = f"promoted: hold-out MAE {m['mae']:.4f} < naive baseline {b['mae']:.4f}{than}"
        cur.execute("SELECT coalesce(max(version), 0) + 1 FROM model_registry WHERE model_name = %s", (name,))
        version = cur.fetchone()[0]
        if promoted:
            cur.execute("UPDATE model_registry SET is_current = false WHERE model_name = %s AND is_current", (name,))
        artifact = result.model.to_bytes()
        cur.execute(
            "INSERT INTO model_registry (model_name, version, run_key, as_of, algorithm, artifact_format, artifact,"
            " artifact_sha256, features, params, metrics, baseline_metrics, current_metrics, training_rows,"
            " holdout_rows, holdout_from, promoted, decision, is_current)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (name, version, run_key, utc_timestamp(as_of).to_pydatetime(), result.model.algorithm,
             result.model.artifact_format, artifact, hashlib.sha256(artifact).hexdigest(), result.model.features,
             json.dumps(result.params), json.dumps(m), json.dumps(b),
             None if current_metrics is None else json.dumps(current_metrics), result.training_rows,
             result.holdout_rows, result.holdout_from.to_pydatetime(), promoted, decision, promoted),
        )
        add_events(cur, [Event(TRAINING_TOPIC, TRAINING_EVENT, key=name, dedup_key=f"{name}|v{version}", data={
            "model_name": name, "version": version, "target": target, "promoted": promoted, "is_current": promoted,
            "decision": decision, "metrics": m, "baseline_metrics": b, "current_metrics": current_metrics,
            "run_key": run_key, "as_of": utc_timestamp(as_of).isoformat(), "holdout_from": result.holdout_from.isoformat(),
            "training_rows": result.training_rows, "holdout_rows": result.holdout_rows,
            "algorithm": result.model.algorithm, "artifact_format": result.model.artifact_format,
        })], source=TRAINING_SOURCE)
    conn.commit()
    return RegistryEntry(name, version, run_key, promoted, promoted, decision, m, b, current_metrics)


def train_target(conn, target: str, frame: pd.DataFrame, run_key: str, as_of,
                 params: dict[str, Any] | None = None) -> RegistryEntry:
    """Train, evaluate and register ``target`` for ``run_key``, once: a retry or rerun of
    the same run key returns the version it registered and trains nothing."""
    done = registered(conn, target, run_key)
    if done is not None:
        return done
    return register(conn, target, train_and_evaluate(target, frame, params), run_key, as_of)


def load_current(conn, target: str) -> Model:
    """The current version of the target's model; ``NoCurrentModel`` if none was promoted."""
    with conn.cursor() as cur:
        model = _load_current(cur, target)
    conn.commit()
    if model is None:
        raise NoCurrentModel(f"no current {MODEL_NAMES[target]} model: run ml_training_pipeline first")
    return model


def current_versions(conn) -> dict[str, dict[str, Any]]:
    """Per target: the current version's number, metrics, baseline metrics and training time."""
    with conn.cursor() as cur:
        cur.execute("SELECT model_name, version, algorithm, artifact_format, artifact_sha256, metrics,"
                    " baseline_metrics, trained_at, as_of FROM model_registry WHERE is_current")
        rows = cur.fetchall()
    conn.commit()
    by_name = {v: k for k, v in MODEL_NAMES.items()}
    out = {}
    for name, version, algorithm, fmt, sha, m, b, trained_at, as_of in rows:
        out[by_name[name]] = {
            "model_name": name, "version": version, "algorithm": algorithm, "artifact_format": fmt,
            "artifact_sha256": sha, "metrics": m if isinstance(m, dict) else json.loads(m),
            "baseline_metrics": b if isinstance(b, dict) else json.loads(b),
            "trained_at": trained_at.isoformat(), "as_of": as_of.isoformat(),
        }
    return out
