"""looklyy_crawler_pipeline when the API acts and its answer is lost (``drop_after_apply``).

Every write is applied by the stand-in, then the connection is closed without a response;
the hook retries with the same Idempotency-Key and the stand-in answers the first result
without doing the work again: no row twice, none lost.
"""

from __future__ import annotations

from conftest import run_dag
from domains.looklyy.tests.test_crawler_pipeline_dag import DAG_ID, STEPS, looklyy, summary  # noqa: F401

WRITES = ["/api/crawler/harper-bazaar", "/api/user/sync-database", "/api/training/setup-review",
          "/api/training/apply-learning"]
KEYED = {"/api/crawler/harper-bazaar": "crawl", "/api/user/sync-database": "sync",
         "/api/training/apply-learning": "learning"}


def test_every_write_applied_then_its_response_lost_changes_nothing_twice(looklyy):  # noqa: F811
    for path in WRITES:
        looklyy.api.faults.add(drop_after_apply=True, times=1, path=path, method="POST")
    looklyy.api.faults.add(drop_after_apply=True, times=1, path="/api/training/review-status")
    looklyy.complete_review_when_opened(decisions=6, within=600)
    dr, states = run_dag(DAG_ID)
    assert dr.state == "success", states

    for path in WRITES:
        calls = looklyy.api.faults.calls_to(path)
        assert [c.status for c in calls] == [0, 200], (path, calls)  # applied and dropped, then answered
        assert calls[0].idempotency_key and calls[0].idempotency_key == calls[1].idempotency_key, path
    # the crawl, sync and learning were each done once: the retry was answered from the first result
    assert sorted(r[0] for r in looklyy.query("SELECT endpoint FROM api_idempotency")) == sorted(KEYED.values())
    assert looklyy.query("SELECT count(*), count(DISTINCT url) FROM global_images WHERE source = 'harper-bazaar'") \
        == [(12, 12)]
    assert sorted(looklyy.query("SELECT user_id, image_id FROM user_database")) == [("u1", 1), ("u1", 2), ("u2", 3)]
    assert looklyy.query("SELECT count(*), min(status), min(decisions) FROM review_sessions") == [(1, "completed", 6)]
    assert looklyy.query("SELECT count(*) FROM learning_patterns") == [(3,)]
    assert sorted(looklyy.query("SELECT step, status FROM pipeline_logs")) == sorted((s, "success") for s in STEPS)

    text = summary(looklyy)  # the summary reports the first (real) results, not the replays' zeros
    for line in ("images crawled 12", "user images kept 3", "user images dropped 2",
                 "manual review completed with 6 decisions", "learning applied 3 patterns (from review)"):
        assert line in text, text
