"""The steps of looklyy_crawler_pipeline; each is recorded in ``pipeline_logs``.

Steps are keyed by the run key (the logical date, else the run id; ``shared.http.run_key``):
a rerun of the same logical date reuses its review session, log rows and idempotency keys.
"""

from __future__ import annotations

import time
from typing import Any

from domains.looklyy.api import LooklyyApiHook
from domains.looklyy.db import pipeline_step, run_log
from shared.notifications import send_summary
from shared.runs import run_key

DOMAIN = "looklyy"


def global_database_refresh() -> dict[str, Any]:
    with pipeline_step(run_key(), "global_database_refresh") as details:
        details.update(LooklyyApiHook().crawl_harper_bazaar().model_dump())
    return details


def user_database_sync() -> dict[str, Any]:
    with pipeline_step(run_key(), "user_database_sync") as details:
        details.update(LooklyyApiHook().sync_user_databases().model_dump())
    return details


def surface_for_manual_review() -> dict[str, Any]:
    key = run_key()
    with pipeline_step(key, "surface_for_manual_review") as details:
        details.update(LooklyyApiHook().setup_review(key).model_dump())
        details["opened_at"] = time.time()  # the review wait's deadline counts from here
    return details


def apply_model_learning(review: dict[str, Any]) -> dict[str, Any]:
    completed = review["status"] == "completed"
    with pipeline_step(run_key(), "apply_model_learning") as details:
        details.update(LooklyyApiHook().apply_learning(review["session_id"], completed).model_dump())
        details["review"] = review["status"]
    return details


def review_outcome(review: dict[str, Any]) -> str:
    if review["status"] == "completed":
        n = review["decisions"]
        return f"completed with {n} decision{'' if n == 1 else 's'}"
    return f"timed out after {review['waited_seconds']:.0f} s: previous learning patterns applied"


def send_completion_notification(crawl: dict, sync: dict, review: dict, learning: dict) -> list[str]:
    key = run_key()
    with pipeline_step(key, "send_completion_notification") as details:
        facts = {
            "images crawled": crawl["images_crawled"],
            "global images in total": crawl["total_images"],
            "user images kept": sync["kept"],
            "user images dropped": sync["dropped"],
            "manual review": review_outcome(review),
            "learning applied": f"{learning['patterns_applied']} patterns (from {learning['source']})",
        }
        steps = [{"step": s["step"], "status": s["status"], "seconds": f"{s['seconds']:.1f}"}
                 for s in run_log(key) if s["step"] != "send_completion_notification"]
        details["recipients"] = send_summary(DOMAIN, f"Crawler pipeline {key}", facts, {"Step durations": steps})
    return details["recipients"]
