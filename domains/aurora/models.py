"""Aurora's three models: training, time-based evaluation, the registry and predictions.

Targets and models (``MODEL_NAMES``):

- ``energy`` -> ``aurora_energy``: XGBoost regression (``xgboost-cpu``) of the energy level a
  user reports at an hour, from the time of day, sleep, exercise and the user's level;
  stored as XGBoost UBJSON (``xgboost-ubj``).
- ``mood`` -> ``aurora_mood``: LightGBM regression of the day's mean mood from sleep, social
  engagement and activity diversity; stored as LightGBM model text (``lightgbm-text``).
- ``sleep_quality`` -> ``aurora_sleep_quality``: scikit-learn HistGradientBoostingRegressor of
  the night's quality (1-10) from bedtime consistency, sleep debt, exercise and activity;
  stored with joblib (``sklearn-joblib``).

Features: :mod:`domains.aurora.features` (one definition for training and predictions).

Evaluation: the last ``HOLDOUT_DAYS`` days of the window are held out (time-based, never
shuffled); the model trains on the days before. It is compared with the naive baseline
(each user's mean of the target over the training days; the overall mean for a user without
any) and with the current version, re-scored on the SAME hold-out. Metrics: MAE, RMSE, R²,
rows, and ``mae_vs_baseline`` (1 - MAE / baseline MAE: the share of the baseline's error
removed).

Registry (table ``model_registry``): every version is stored with its artifact, metrics and
decision, and reported by an ``aurora.model.trained`` event on topic ``aurora.training``
written to the outbox in the same transaction; a version is promoted (``is_current``) only when it beats the naive baseline and
the current version on the hold-out. One version per model and run key: a rerun of the same
run returns the stored version and trains nothing.

Functions the DAGs call (aurora-rt's ``prediction_pipeline`` calls the last three):

- ``train_target(conn, target, frame, run_key, as_of, params=None) -> RegistryEntry``:
  train on a ``features.training_sets`` frame, evaluate, register, promote or not.
- ``current_versions(conn) -> dict[target, dict]``: version, metrics, trained_at of each
  current model (what ``publish_training_results`` publishes).
- ``load_current(conn, target) -> Model``: the current version, loaded from its native
  artifact; raises ``NoCurrentModel`` when none was promoted yet. ``Model.version``,
  ``Model.name``, ``Model.features``; ``Model.predict(X)`` on a feature frame.
- ``predict(conn, target, as_of, user_ids, model=None) -> pandas.DataFrame``: predictions
  for these users from the history known at ``as_of`` (reads PostgreSQL; pass ``model`` to
  reuse one loaded model across chunks). Columns by target:
    energy:        user_id, target_time (as_of + 2 h ... + 24 h, 12 rows a user),
                   horizon_hours, predicted_energy
    mood:          user_id, target_date (as_of's day), predicted_mood
    sleep_quality: user_id, target_date (tonight: the night starting on as_of's day),
                   predicted_sleep_quality
  plus model_name and model_version on every row. Predictions are clipped to 1-10.
- ``predict_from_features(target, features, as_of, model, history=None)``: the same from a
  ``features.user_features`` frame already at hand (``history`` adds today's workouts to the
  energy rows).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from domains.aurora.app import LEVEL_MAX, LEVEL_MIN
from domains.aurora.features import (
    TARGET_FEATURES,
    TARGETS,
    add_hour_features,
    exercised_before,
    prediction_window,
    user_features,
)
from domains.aurora.history import History, read_history, utc_timestamp
from shared.outbox import Event, add_events

MODEL_NAMES = {"energy": "aurora_energy", "mood": "aurora_mood", "sleep_quality": "aurora_sleep_quality"}
ALGORITHMS = {"energy": "xgboost", "mood": "lightgbm", "sleep_quality": "sklearn-hgb"}
FORMATS = {"xgboost": "xgboost-ubj", "lightgbm": "lightgbm-text", "sklearn-hgb": "sklearn-joblib"}
PREDICTION_COLUMNS = {"energy": "predicted_energy", "mood": "predicted_mood", "sleep_quality": "predicted_sleep_quality"}
HOLDOUT_DAYS = 14
# Every registered version is reported on this topic (shared/outbox.py envelope), written in the
# registry's own transaction: data.model_name, version, promoted, is_current, decision, metrics,
# baseline_metrics, current_metrics, run_key, as_of, holdout_from, training_rows, holdout_rows.
TRAINING_TOPIC = "aurora.training"
TRAINING_EVENT = "aurora.model.trained"
TRAINING_SOURCE = "aurora/ml_training_pipeline"
ENERGY_STEP_HOURS = 2
ENERGY_STEPS = 12  # 24 hours ahead
THREADS = 2

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "energy": {"n_estimators": 300, "max_depth": 6, "learning_rate": 0.08, "subsample": 0.8,
               "colsample_bytree": 0.9, "min_child_weight": 5, "tree_method": "hist", "random_state": 0},
    "mood": {"n_estimators": 300, "learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 20,
             "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.9, "random_state": 0},
    "sleep_quality": {"max_iter": 300, "learning_rate": 0.05, "max_leaf_nodes": 31, "min_samples_leaf": 20,
                      "l2_regularization": 1.0, "random_state": 0},
}


class NoCurrentModel(LookupError):
    """No version of the model was promoted yet: run ml_training_pipeline first."""


# -- one model, whatever the library ------------------------------------------------------------
@dataclass
class Model:
    target: str
    algorithm: str
    features: list[str]
    native: Any  # xgboost.Booster | lightgbm.Booster | sklearn estimator
    version: int | None = None

    @property
    def name(self) -> str:
        return MODEL_NAMES[self.target]

    @property
    def artifact_format(self) -> str:
        return FORMATS[self.algorithm]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise KeyError(f"{self.name} v{self.version}: feature columns missing: {missing}")
        x = frame[self.features].astype(float)
        if self.algorithm == "xgboost":
            import xgboost as xgb

            out = self.native.predict(xgb.DMatrix(x, feature_names=self.features, nthread=THREADS))
        elif self.algorithm == "lightgbm":
            out = self.native.predict(x, num_threads=THREADS)
        else:
            out = self.native.predict(x)
        return np.clip(np.asarray(out, dtype=float), LEVEL_MIN, LEVEL_MAX)

    def to_bytes(self) -> bytes:
        if self.algorithm == "xgboost":
            return bytes(self.native.save_raw(raw_format="ubj"))
        if self.algorithm == "lightgbm":
            return self.native.model_to_string().encode()
        import joblib

        buf = io.BytesIO()
        joblib.dump(self.native, buf)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, target: str, algorithm: str, payload: bytes, features: list[str],
                   version: int | None = None) -> Model:
        if algorithm == "xgboost":
            import xgboost as xgb

            native = xgb.Booster()
            native.load_model(bytearray(payload))
        elif algorithm == "lightgbm":
            import lightgbm as lgb

            native = lgb.Booster(model_str=bytes(payload).decode())
        elif algorithm == "sklearn-hgb":
            import joblib

            native = joblib.load(io.BytesIO(bytes(payload)))  # our own registry's artifact, never user input
        else:
            raise ValueError(f"unknown algorithm {algorithm!r}")
        return cls(target, algorithm, list(features), native, version)


def fit(target: str, frame: pd.DataFrame, params: dict[str, Any] | None = None) -> Model:
    """Train the target's model on ``frame`` (its feature columns and ``y``)."""
    features = list(TARGET_FEATURES[target])
    params = {**DEFAULT_PARAMS[target], **(params or {})}
    x, y = frame[features].astype(float), frame["y"].to_numpy(float)
    algorithm = ALGORITHMS[target]
    if algorithm == "xgboost":
        import xgboost as xgb

        est = xgb.XGBRegressor(n_jobs=THREADS, **params).fit(x, y)
        native = est.get_booster()
    elif algorithm == "lightgbm":
        import lightgbm as lgb

        est = lgb.LGBMRegressor(n_jobs=THREADS, deterministic=True, force_row_wise=True, verbose=-1, **params)
        native = est.fit(x, y).booster_
    else:
        from sklearn.ensemble import HistGradientBoostingRegressor

        native = HistGradientBoostingRegressor(early_stopping=False, **params).fit(x, y)
    trained = Model(target, algorithm, features, native)
    # what is stored is what predicts: the artifact, loaded back
    return Model.from_bytes(target, algorithm, trained.to_bytes(), features)


# -- evaluation -----------------------------------------------------------------------------------
def metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    err = pred - y
    ss_tot = float(((y - y.mean()) ** 2).sum()) if len(y) else 0.0
    return {
        "mae": round(float(np.abs(err).mean()), 6),
        "rmse": round(float(math.sqrt((err ** 2).mean())), 6),
        "r2": round(1 - float((err ** 2).sum()) / ss_tot, 6) if ss_tot else 0.0,
        "rows": int(len(y)),
    }


def split(frame: pd.DataFrame, holdout_days: int = HOLDOUT_DAYS) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """Time-based: the last ``holdout_days`` days are the hold-out."""
    days = pd.to_datetime(frame["day"], utc=True)
    holdout_from = days.max().normalize() - pd.Timedelta(days=holdout_days - 1)
    train, hold = frame[days < holdout_from], frame[days >= holdout_from]
    if len(train) == 0 or len(hold) == 0:
        raise ValueError(f"not enough days to hold {holdout_days} out: {days.min()} .. {days.max()}")
    return train.reset_index(drop=True), hold.reset_index(drop=True), holdout_from


def baseline_predict(train: pd.DataFrame, holdout: pd.DataFrame) -> np.ndarray:
    """The naive baseline: the user's mean of the target over the training days."""
    per_user = train.groupby("user_id")["y"].mean()
    return holdout["user_id"].map(per_user).fillna(train["y"].mean()).to_numpy(float)


@dataclass
class TrainingResult:
    model: Model
    params: dict[str, Any]
    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    training_rows: int
    holdout_rows: int
    holdout_from: pd.Timestamp
    holdout: pd.DataFrame = field(repr=False)


def train_and_evaluate(target: str, frame: pd.DataFrame, params: dict[str, Any] | None = None,
                       holdout_days: int = HOLDOUT_DAYS) -> TrainingResult:
    train, hold, holdout_from = split(frame, holdout_days)
    model = fit(target, train, params)
    m = metrics(hold["y"], model.predict(hold))
    b = metrics(hold["y"], baseline_predict(train, hold))
    m["mae_vs_baseline"] = round(1 - m["mae"] / b["mae"], 6) if b["mae"] else 0.0
    return TrainingResult(model, {**DEFAULT_PARAMS[target], **(params or {})}, m, b, len(train), len(hold),
                          holdout_from, hold)


# -- registry -------------------------------------------------------------------------------------
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


# -- predictions ----------------------------------------------------------------------------------
def predict_from_features(target: str, features: pd.DataFrame, as_of, model: Model,
                          history: History | None = None) -> pd.DataFrame:
    """Predictions from ``features.user_features`` rows (index ``user_id``)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; one of {TARGETS}")
    as_of = utc_timestamp(as_of)
    users = features.index.to_numpy()
    col = PREDICTION_COLUMNS[target]
    if target == "energy":
        steps = np.arange(1, ENERGY_STEPS + 1) * ENERGY_STEP_HOURS
        frame = features.loc[np.repeat(users, len(steps))].reset_index()
        times = pd.Series(as_of + pd.to_timedelta(np.tile(steps, len(users)), unit="h"))
        frame = add_hour_features(frame, times)
        frame["exercised_before"] = (exercised_before(history, frame["user_id"].to_numpy(), times)
                                     if history is not None else 0.0)
        out = pd.DataFrame({"user_id": frame["user_id"].to_numpy(), "target_time": times.to_numpy(),
                            "horizon_hours": np.tile(steps, len(users)), col: model.predict(frame)})
    else:
        out = pd.DataFrame({"user_id": users, "target_date": as_of.date(), col: model.predict(features)})
    out["model_name"] = model.name
    out["model_version"] = model.version
    return out


def predict(conn, target: str, as_of, user_ids, model: Model | None = None) -> pd.DataFrame:
    """Predictions for ``user_ids`` from what is known at ``as_of`` (see the module doc)."""
    model = model or load_current(conn, target)
    user_ids = [int(u) for u in user_ids]
    start, end = prediction_window(as_of)
    history = read_history(conn, start, end, user_ids)
    feats = user_features(history, end, user_ids)
    return predict_from_features(target, feats, end, model, history if target == "energy" else None)


def energy_horizons() -> list[timedelta]:
    return [timedelta(hours=ENERGY_STEP_HOURS * k) for k in range(1, ENERGY_STEPS + 1)]
