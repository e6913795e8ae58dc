"""The ML service (embeddings and matching) behind connection ``referral_ml_service``.

Contract: see ``domains/referral/README.md`` (and its stand-in, local/ml_service.py).
"""

from __future__ import annotations

from pydantic import BaseModel

from shared.http import JsonApiHook

EMBED_BATCH = 128
MATCH_BLOCK = 200


class Embedding(BaseModel):
    id: int
    vector: list[float]


class EmbedResponse(BaseModel):
    model_version: str
    embeddings: list[Embedding]


class Score(BaseModel):
    candidate_id: int
    position_id: int
    score: float


class MatchResponse(BaseModel):
    model_version: str
    scores: list[Score]


class MlServiceHook(JsonApiHook):
    hook_name = "ML service (referral)"

    def __init__(self, conn_id: str = "referral_ml_service", **kwargs) -> None:
        super().__init__(conn_id, **kwargs)

    def embed(self, items: list[tuple[int, str]]) -> EmbedResponse:
        body = {"inputs": [{"id": i, "text": t} for i, t in items]}
        resp = self.post_json("/v1/embeddings", body, model=EmbedResponse, idempotency=False)
        if sorted(e.id for e in resp.embeddings) != sorted(i for i, _ in items):
            raise ValueError("ML service answered embeddings for other ids than asked")
        return resp

    def match(self, candidates: list[tuple[int, list[float]]], positions: list[tuple[int, list[float]]]) -> MatchResponse:
        body = {"candidates": [{"id": i, "vector": v} for i, v in candidates],
                "positions": [{"id": i, "vector": v} for i, v in positions]}
        return self.post_json("/v1/match", body, model=MatchResponse, idempotency=False)
