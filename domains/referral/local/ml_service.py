"""ML-service stand-in: deterministic embeddings and matching scores.

The contract (also in domains/referral/README.md):

- ``POST /v1/embeddings`` ``{"inputs": [{"id": 1, "text": "..."}]}`` (at most 128) ->
  ``{"model_version": "...", "dimensions": 64, "embeddings": [{"id": 1, "vector": [...]}]}``
- ``POST /v1/match`` ``{"candidates": [{"id", "vector"}], "positions": [{"id", "vector"}]}``
  (at most 200 x 200) -> ``{"model_version": "...", "scores": [{"candidate_id", "position_id",
  "score"}]}`` with score in 0..100 for every pair.
- ``GET /health``. Auth: header ``X-API-Key``.

Embeddings are hashed bags of words without stop words (L2-normalised), scores are 100 x cosine similarity:
the same text always gives the same vector, similar skills give high scores.
"""

from __future__ import annotations

import hashlib
import math
import re

from fastapi import Header, HTTPException
from pydantic import BaseModel, Field

from devplatform.standin import create_app

DIMENSIONS = 64
EMBED_MODEL = "hashing-bow-64@1"
MATCH_MODEL = "cosine-100@1"


class TextIn(BaseModel):
    id: int
    text: str


class EmbedRequest(BaseModel):
    inputs: list[TextIn] = Field(max_length=128)


class VectorIn(BaseModel):
    id: int
    vector: list[float]


class MatchRequest(BaseModel):
    candidates: list[VectorIn] = Field(max_length=200)
    positions: list[VectorIn] = Field(max_length=200)


STOPWORDS = frozenset("a an and the with we need for of in on to worked engineer role".split())


def embed(text: str) -> list[float]:
    vec = [0.0] * DIMENSIONS
    for word in re.findall(r"[a-z][a-z0-9+#]*", text.lower()):
        if word in STOPWORDS:
            continue
        h = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "big")
        vec[h % DIMENSIONS] += 1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [round(v / norm, 6) for v in vec]


def score(a: list[float], b: list[float]) -> float:
    return round(max(0.0, sum(x * y for x, y in zip(a, b, strict=True))) * 100, 2)


def create_ml_app(api_key: str = "ml-dev-key"):
    app = create_app("ml-service")

    def check(key: str | None) -> None:
        if key != api_key:
            raise HTTPException(401, "missing or wrong X-API-Key")

    @app.get("/health")
    def health():
        return {"status": "ok", "embedding_model": EMBED_MODEL, "match_model": MATCH_MODEL}

    @app.post("/v1/embeddings")
    def embeddings(req: EmbedRequest, x_api_key: str | None = Header(None)):
        check(x_api_key)
        return {"model_version": EMBED_MODEL, "dimensions": DIMENSIONS,
                "embeddings": [{"id": i.id, "vector": embed(i.text)} for i in req.inputs]}

    @app.post("/v1/match")
    def match(req: MatchRequest, x_api_key: str | None = Header(None)):
        check(x_api_key)
        for v in req.candidates + req.positions:
            if len(v.vector) != DIMENSIONS:
                raise HTTPException(400, f"vector of id {v.id} has {len(v.vector)} dimensions, expected {DIMENSIONS}")
        return {"model_version": MATCH_MODEL, "scores": [
            {"candidate_id": c.id, "position_id": p.id, "score": score(c.vector, p.vector)}
            for c in req.candidates for p in req.positions]}

    return app
