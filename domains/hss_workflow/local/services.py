"""Stand-ins for the five HSS workflow services (development and tests only).

Every service takes its key in header ``X-API-Key`` and honours ``Idempotency-Key`` on POST:
a repeated key gets the first answer again and the work is not done twice (``app.state.work``
counts the work actually done, per path). The contracts:

- audio (``hss_workflow_audio``) ``POST /analyze/comprehensive`` ``{"song_id", "song_path"}``
  -> ``{"song_id", "duration_seconds", "sample_rate", "channels", "tempo_bpm", "energy",
  "rms_db", "zero_crossing_rate", "spectral_centroid_hz", "spectral_bandwidth_hz",
  "spectral_rolloff_hz", "spectral_flatness", "analyzer"}``. The service reads the file itself
  (shared storage, as in the seed) with soundfile (WAV, FLAC, OGG, MP3): 404 when it is
  missing, 422 when it is not audio. Features are computed with numpy: RMS energy, zero
  crossings, spectral moments from 2048-sample frames, tempo from the autocorrelation of
  the spectral-flux onset envelope (60-200 BPM).
- content (``hss_workflow_content``) ``POST /analyze/lyrics`` ``{"song_id", "song_path"}`` ->
  ``{"song_id", "has_lyrics", "word_count", "line_count", "unique_word_ratio",
  "repetition_ratio", "sentiment": {"label", "score", "positive", "negative"}}``; lyrics are the
  text file next to the song (``<stem>.txt``), absent = instrumental.
- prediction (``hss_workflow_ml_prediction``) ``POST /predict/single`` ``{"song_id",
  "audio_features", "content_features"}`` -> ``{"song_id", "hit_probability", "model_version",
  "explanations": [{"feature", "value", "contribution"}]}`` (logistic model, sorted by |contribution|).
- intelligence (``hss_workflow_intelligence``) ``POST /insights/generate`` ``{"song_id", "audio",
  "content", "prediction"}`` -> ``{"song_id", "summary", "recommendations": [{"area", "advice",
  "priority"}]}``.
- training: see :mod:`domains.hss_workflow.local.training`.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Request
from pydantic import BaseModel

from devplatform.standin import create_app

DEV_KEY = "hss-dev-key"
PREDICTION_MODEL = "hss-logit@1"


class Idempotent:
    """Answers kept by Idempotency-Key: a repeat gets the first answer, the work is done once."""

    def __init__(self, app: FastAPI) -> None:
        self.lock = threading.Lock()
        self.answers: dict[str, Any] = {}
        app.state.work = Counter()
        self.app = app

    def run(self, request: Request, fn):
        key = request.headers.get("idempotency-key")
        with self.lock:
            if key and key in self.answers:
                return self.answers[key]
        answer = fn()
        with self.lock:
            self.app.state.work[request.url.path] += 1
            if key:
                self.answers.setdefault(key, answer)
                answer = self.answers[key]
        return answer


def service_app(title: str, api_key: str) -> tuple[FastAPI, Idempotent, Any]:
    app = create_app(title)

    def check(key: str | None) -> None:
        if key != api_key:
            raise HTTPException(401, "missing or wrong X-API-Key")

    @app.get("/health")
    def health():
        return {"status": "ok", "service": title}

    return app, Idempotent(app), check


# -- audio -------------------------------------------------------------------------------
class SongRequest(BaseModel):
    song_id: str
    song_path: str


def audio_features(path: str | Path) -> dict[str, Any]:
    """Features of an audio file (see the module docstring)."""
    import numpy as np
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    channels = data.shape[1]
    x = data.mean(axis=1)
    duration = len(x) / rate
    rms = float(np.sqrt(np.mean(x**2))) if len(x) else 0.0
    zcr = float(np.mean(np.abs(np.diff(np.signbit(x).astype(np.int8))))) if len(x) > 1 else 0.0
    n, hop = 2048, 512
    if len(x) < n:
        x = np.pad(x, (0, n - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop] * np.hanning(n)
    mag = np.abs(np.fft.rfft(frames, axis=1))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    power = mag.sum(axis=1) + 1e-12
    centroid = (mag * freqs).sum(axis=1) / power
    bandwidth = np.sqrt((mag * (freqs - centroid[:, None]) ** 2).sum(axis=1) / power)
    cum = np.cumsum(mag, axis=1)
    rolloff = freqs[np.argmax(cum >= 0.85 * cum[:, -1:], axis=1)]
    flatness = np.exp(np.mean(np.log(mag + 1e-10), axis=1)) / (np.mean(mag, axis=1) + 1e-10)
    loud = power > power.max() * 1e-3
    tempo = 0.0
    flux = np.maximum(np.diff(mag, axis=0), 0).sum(axis=1)
    if len(flux) > 8 and flux.any():
        onset = flux - flux.mean()
        ac = np.correlate(onset, onset, mode="full")[len(onset) - 1:]
        fps = rate / hop
        lags = np.arange(len(ac))
        valid = (lags >= fps * 60 / 200) & (lags <= fps * 60 / 60)
        peaks = lags[1:-1][valid[1:-1] & (ac[1:-1] > ac[:-2]) & (ac[1:-1] >= ac[2:])]
        if len(peaks):
            # the shortest strong period: a beat's double length correlates as well as the beat
            best = int(peaks[np.argmax(ac[peaks] >= 0.8 * ac[peaks].max())])
            # refine to a fractional lag (parabolic interpolation)
            if 0 < best < len(ac) - 1:
                a, b, c = ac[best - 1], ac[best], ac[best + 1]
                denom = a - 2 * b + c
                best = best + (0.5 * (a - c) / denom if denom else 0.0)
            tempo = 60 * fps / best
    sel = loud if loud.any() else slice(None)
    return {
        "duration_seconds": round(duration, 3),
        "sample_rate": int(rate),
        "channels": int(channels),
        "tempo_bpm": round(float(tempo), 1),
        "energy": round(min(1.0, rms / 0.5), 4),
        "rms_db": round(20 * math.log10(rms) if rms > 0 else -120.0, 2),
        "zero_crossing_rate": round(zcr, 5),
        "spectral_centroid_hz": round(float(np.mean(centroid[sel])), 1),
        "spectral_bandwidth_hz": round(float(np.mean(bandwidth[sel])), 1),
        "spectral_rolloff_hz": round(float(np.mean(rolloff[sel])), 1),
        "spectral_flatness": round(float(np.mean(flatness[sel])), 5),
        "analyzer": f"numpy-soundfile@{sf.__version__}",
    }


def create_audio_app(api_key: str = DEV_KEY) -> FastAPI:
    app, idem, check = service_app("hss-audio", api_key)

    @app.post("/analyze/comprehensive")
    def analyze(req: SongRequest, request: Request, x_api_key: str | None = Header(None)):
        check(x_api_key)
        path = Path(req.song_path)
        if not path.is_file():
            raise HTTPException(404, f"song_path {req.song_path}: no such file")

        def work():
            try:
                return {"song_id": req.song_id, **audio_features(path)}
            except RuntimeError as exc:  # soundfile: not a readable audio file
                raise HTTPException(422, f"song_path {req.song_path}: not audio ({exc})") from None

        return idem.run(request, work)

    return app


# -- content -----------------------------------------------------------------------------
POSITIVE = frozenset("love happy joy bright shine dance free alive smile sun gold dream yes together".split())
NEGATIVE = frozenset("hate sad cry pain dark lonely broken lost tears cold alone die fear goodbye".split())


def lyrics_features(text: str) -> dict[str, Any]:
    words = re.findall(r"[a-z']+", text.lower())
    lines = [ln.strip().lower() for ln in text.splitlines() if ln.strip()]
    pos = sum(w in POSITIVE for w in words)
    neg = sum(w in NEGATIVE for w in words)
    score = (pos - neg) / (pos + neg) if pos + neg else 0.0
    label = "positive" if score > 0.2 else "negative" if score < -0.2 else "neutral"
    repeated = sum(c for c in Counter(lines).values() if c > 1)
    return {
        "has_lyrics": bool(words),
        "word_count": len(words),
        "line_count": len(lines),
        "unique_word_ratio": round(len(set(words)) / len(words), 4) if words else 0.0,
        "repetition_ratio": round(repeated / len(lines), 4) if lines else 0.0,
        "sentiment": {"label": label, "score": round(score, 4), "positive": pos, "negative": neg},
    }


def create_content_app(api_key: str = DEV_KEY) -> FastAPI:
    app, idem, check = service_app("hss-content", api_key)

    @app.post("/analyze/lyrics")
    def analyze(req: SongRequest, request: Request, x_api_key: str | None = Header(None)):
        check(x_api_key)
        lyrics = Path(req.song_path).with_suffix(".txt")
        text = lyrics.read_text(errors="replace") if lyrics.is_file() else ""
        return idem.run(request, lambda: {"song_id": req.song_id, **lyrics_features(text)})

    return app


# -- prediction --------------------------------------------------------------------------
class PredictRequest(BaseModel):
    song_id: str
    audio_features: dict[str, Any]
    content_features: dict[str, Any]


# (feature, centre, scale, weight): contribution = weight * (value - centre) / scale
WEIGHTS = [
    ("tempo_bpm", 115.0, 30.0, 0.6),
    ("energy", 0.3, 0.2, 0.9),
    ("spectral_centroid_hz", 2000.0, 1500.0, 0.3),
    ("spectral_flatness", 0.2, 0.2, -0.5),
    ("repetition_ratio", 0.3, 0.2, 0.7),
    ("sentiment_score", 0.0, 0.5, 0.4),
]


def predict(audio: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
    values = {**audio, **content, "sentiment_score": (content.get("sentiment") or {}).get("score", 0.0)}
    explanations = []
    z = -0.2
    for name, centre, scale, weight in WEIGHTS:
        value = float(values.get(name) or 0.0)
        contribution = weight * max(-3.0, min(3.0, (value - centre) / scale))
        z += contribution
        explanations.append({"feature": name, "value": value, "contribution": round(contribution, 4)})
    explanations.sort(key=lambda e: -abs(e["contribution"]))
    return {"hit_probability": round(1 / (1 + math.exp(-z)), 4), "model_version": PREDICTION_MODEL,
            "explanations": explanations}


def create_prediction_app(api_key: str = DEV_KEY) -> FastAPI:
    app, idem, check = service_app("hss-ml-prediction", api_key)

    @app.post("/predict/single")
    def single(req: PredictRequest, request: Request, x_api_key: str | None = Header(None)):
        check(x_api_key)
        return idem.run(request, lambda: {"song_id": req.song_id, **predict(req.audio_features, req.content_features)})

    return app


# -- intelligence ------------------------------------------------------------------------
class InsightsRequest(BaseModel):
    song_id: str
    audio: dict[str, Any]
    content: dict[str, Any]
    prediction: dict[str, Any]


def insights(audio: dict[str, Any], content: dict[str, Any], prediction: dict[str, Any]) -> dict[str, Any]:
    recs = []
    for e in prediction.get("explanations", []):
        if e["contribution"] < -0.1:
            recs.append({"area": e["feature"], "advice": f"{e['feature']} holds the song back ({e['value']:g})",
                         "priority": "high" if e["contribution"] < -0.5 else "medium"})
    if not content.get("has_lyrics"):
        recs.append({"area": "lyrics", "advice": "instrumental: consider a vocal hook", "priority": "medium"})
    if not recs:
        recs.append({"area": "release", "advice": "no weak feature found: ready for release", "priority": "low"})
    p = float(prediction.get("hit_probability", 0.0))
    summary = (f"hit probability {p:.0%} at {audio.get('tempo_bpm', 0):g} BPM, "
               f"{(content.get('sentiment') or {}).get('label', 'neutral')} lyrics")
    return {"summary": summary, "recommendations": recs}


def create_intelligence_app(api_key: str = DEV_KEY) -> FastAPI:
    app, idem, check = service_app("hss-intelligence", api_key)

    @app.post("/insights/generate")
    def generate(req: InsightsRequest, request: Request, x_api_key: str | None = Header(None)):
        check(x_api_key)
        return idem.run(request, lambda: {"song_id": req.song_id, **insights(req.audio, req.content, req.prediction)})

    return app
