"""The Looklyy web API behind connection ``looklyy_api`` (base URL + API key)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from shared.http import JsonApiHook

CONN_ID = "looklyy_api"


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

    def crawl_harper_bazaar(self) -> CrawlResult:
        return self.post_json("/api/crawler/harper-bazaar", model=CrawlResult)

    def sync_user_databases(self) -> SyncResult:
        return self.post_json("/api/user/sync-database", model=SyncResult)

    def setup_review(self, run_id: str) -> ReviewSession:
        return self.post_json("/api/training/setup-review", {"run_id": run_id}, model=ReviewSession)

    def review_status(self, session_id: str) -> ReviewStatus:
        return self.get_json("/api/training/review-status", params={"session_id": session_id}, model=ReviewStatus)

    def apply_learning(self, session_id: str, review_completed: bool) -> LearningResult:
        return self.post_json("/api/training/apply-learning",
                              {"session_id": session_id, "review_completed": review_completed}, model=LearningResult)
