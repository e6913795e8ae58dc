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

import io
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
        out = pd.DataFrame({"user_id": frame["user_id"].to_numpy(), "target_time": times.array,
                            "horizon_hours": np.tile(steps, len(users)), col: model.predict(frame)})
    else:
        out = pd.DataFrame({"user_id": users, "target_date": as_of.date(), col: model.predict(features)})
    out["model_name"] = model.name
    out["model_version"] = model.version
    return out


def predict(conn, target: str, as_of, user_ids, model: Model | None = None) -> pd.DataFrame:
    """Predictions for ``user_ids`` from what is known at ``as_of`` (see the module doc)."""
    if model is None:
        from domains.aurora.registry import load_current

        model = load_current(conn, target)
    user_ids = [int(u) for u in user_ids]
    start, end = prediction_window(as_of)
    history = read_history(conn, start, end, user_ids)
    feats = user_features(history, end, user_ids)
    return predict_from_features(target, feats, end, model, history if target == "energy" else None)


def energy_horizons() -> list[timedelta]:
    return [timedelta(hours=ENERGY_STEP_HOURS * k) for k in range(1, ENERGY_STEPS + 1)]
