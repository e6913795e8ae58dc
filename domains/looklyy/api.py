"""The Looklyy web API behind connection ``looklyy_api`` (base URL + API key).

Each call reports its resource to OpenLineage (``shared.lineage.record_http_io``): what the
API changes (the crawl, the user sync, a review session, the learning) as an output, what it
answers (the review status) as an input."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from shared.http import JsonApiHook
from shared.lineage import record_http_io

CONN_ID = "looklyy_api"
REVIEW_STATUS = "/api/training/review-status"


class CrawlResult(BaseModel):
    images_crawled: int
    total_images: int


class SyncResult(BaseModel):
    kept: int
    added: int
    dropped: int


class ReviewSession(BaseModel):
    session_id: str
    images: int
    status: str


class ReviewStatus(BaseModel):
    session_id: str
    status: str
    decisions: int


class LearningResult(BaseModel):
    patterns_applied: int
    source: str


class LooklyyApiHook(JsonApiHook):
    hook_name = "Looklyy web API"

    def __init__(self, conn_id: str = CONN_ID, **kwargs: Any) -> None:
        super().__init__(conn_id, **kwargs)

    def _post(self, path: str, body: Any, model: type[BaseModel]) -> Any:
        result = self.post_json(path, body, model=model)
        record_http_io(self, outputs=[path])
        return result

    def crawl_harper_bazaar(self) -> CrawlResult:
        return self._post("/api/crawler/harper-bazaar", None, CrawlResult)

    def sync_user_databases(self) -> SyncResult:
        return self._post("/api/user/sync-database", None, SyncResult)

    def setup_review(self, run_id: str) -> ReviewSession:
        return self._post("/api/training/setup-review", {"run_id": run_id}, ReviewSession)

    def review_status(self, session_id: str) -> ReviewStatus:
        status = self.get_json(REVIEW_STATUS, params={"session_id": session_id}, model=ReviewStatus)
        record_http_io(self, inputs=[REVIEW_STATUS])
        return status

    def apply_learning(self, session_id: str, review_completed: bool) -> LearningResult:
        return self._post("/api/training/apply-learning",
                          {"session_id": session_id, "review_completed": review_completed}, LearningResult)
