"""Model load and encode times in the heavy environment (run by benchmarks/ecommerce_ml_models.py).

Prints one JSON object: seconds to load each model and to encode N texts / images, and the
process's peak RSS. Texts and images are synthetic article-like ones (deterministic).
"""

from __future__ import annotations

import json
import resource
import sys
import time

import numpy as np


def texts(n: int) -> list[str]:
    rng = np.random.default_rng(3)
    colours = ["black", "white", "dark blue", "light pink", "red", "beige", "grey", "green"]
    kinds = ["jersey top", "slim-fit trousers", "summer dress", "wool sweater", "bikini top", "denim shorts", "ankle socks"]
    details = ["with short sleeves", "in soft cotton", "with a round neck", "with an elasticated waist", "in ribbed knit"]
    return [f"{kinds[rng.integers(len(kinds))]} in {colours[rng.integers(len(colours))]}. "
            f"{kinds[rng.integers(len(kinds))].capitalize()} {details[rng.integers(len(details))]}." for _ in range(n)]


def images(n: int) -> list:
    from PIL import Image

    rng = np.random.default_rng(4)
    return [Image.fromarray(rng.integers(0, 256, (96, 64, 3), dtype=np.uint8)) for _ in range(n)]


def main(n_texts: int = 1000, n_images: int = 1000) -> dict:
    from domains.ecommerce_ml.heavy.models import ColourTextureFeatures, OnnxImageEncoder, SentenceEncoder, TfidfModel, VaderScorer
    from domains.ecommerce_ml.heavy.testmodels import build_tiny_encoder

    out: dict = {"n_texts": n_texts, "n_images": n_images}
    t = texts(n_texts)
    enc = SentenceEncoder.load()
    out["minilm_load_s"] = round(enc.load_seconds, 3)
    t0 = time.perf_counter()
    enc.encode(t)
    out["minilm_encode_s"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    m = TfidfModel.fit(t)
    m.transform(t)
    out["tfidf_fit_transform_s"] = round(time.perf_counter() - t0, 3)
    imgs = images(n_images)
    t0 = time.perf_counter()
    ColourTextureFeatures().encode(imgs)
    out["colour_texture_features_s"] = round(time.perf_counter() - t0, 3)
    onnx = OnnxImageEncoder(build_tiny_encoder(), "tiny.onnx")
    out["onnx_tiny_load_s"] = round(onnx.load_seconds, 4)
    t0 = time.perf_counter()
    onnx.encode(imgs)
    out["onnx_tiny_encode_s"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    v = VaderScorer()
    out["vader_load_s"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    for s in t:
        v.score(s)
    out["vader_score_s"] = round(time.perf_counter() - t0, 3)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


if __name__ == "__main__":
    print(json.dumps(main(*(int(a) for a in sys.argv[1:3]))))
