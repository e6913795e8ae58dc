"""Documented job orders load; wholesale rejection fails loudly; rejected records come back by replay."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from pydantic import StrictBool

from conftest import run_dag
from devplatform.smtp_sink import body_text
from domains.referral import sync
from domains.referral.bullhorn.models import JobOrder
from domains.referral.local.ml_service import embed, score

DAG_ID = "bullhorn_sync_optimized"
CONTRACT = Path(__file__).parent / "contract"


class BooleanIsPublicJobOrder(JobOrder):
    """The model before the audit: ``isPublic`` as a boolean (Bullhorn documents an Integer)."""

    isPublic: StrictBool | None = None  # noqa: N815


@pytest.fixture
def old_job_order_model(monkeypatch):
    spec = sync.SPECS["JobOrder"]
    monkeypatch.setitem(sync.SPECS, "JobOrder", dataclasses.replace(spec, model=BooleanIsPublicJobOrder))
    return monkeypatch


def task(dr, task_id):
    return next(ti for ti in dr.get_task_instances() if ti.task_id == task_id)


def expected_matches(referral) -> set[tuple[int, int]]:
    cands = {c["id"]: embed(f"{c['skillSet']}. {c['description']}") for c in referral.state.visible("Candidate")}
    pos = {j["id"]: embed(f"{j['title']}. {j['skillList']}. {j['description']}")
           for j in referral.state.visible("JobOrder") if j["isOpen"] and not j["isDeleted"]}
    return {(c, p) for c, cv in cands.items() for p, pv in pos.items() if score(cv, pv) >= 70}


def test_a_page_of_documented_job_orders_loads_with_the_documented_publishing_status(referral):
    for job in json.loads((CONTRACT / "joborder_query_page.json").read_text())["data"]:
        referral.state.create("JobOrder", **{k: v for k, v in job.items() if not k.startswith("date")})
    result = sync.sync_entity("JobOrder", "run-documented")
    assert (result["received"], result["inserted"], result["rejected"]) == (4, 4, 0)
    assert referral.query("SELECT id, is_public, publishing_status, is_open, is_deleted FROM positions ORDER BY id") == [
        (5001, 1, "published-approved", True, False),
        (5002, -1, "published-submitted", True, False),
        (5003, 0, "not published", False, False),
        (5004, None, None, None, False),  # all nullable fields null: unknown, not deleted
    ]
    assert referral.query("SELECT count(*) FROM rejected_records") == [(0,)]


def test_rejections_over_the_limit_or_a_whole_page_fail_after_storing_the_valid_ones(referral):
    referral.state.seed(candidates=40, positions=0)
    ids = [c["id"] for c in referral.state.visible("Candidate")]
    referral.state.corrupt("Candidate", ids[3], email=7)  # 1 of 40: 2.5%, only the summary
    assert sync.sync_entity("Candidate", "run-1", page_size=10)["rejected"] == 1

    for rid in ids[10:13]:  # 3 of 3 changed records: over 5%
        referral.state.corrupt("Candidate", rid, status=None)
    with pytest.raises(sync.RejectionLimitExceeded) as err:
        sync.sync_entity("Candidate", "run-2", page_size=10)
    assert str(err.value).startswith(
        "Bullhorn Candidate: 3 of 3 records rejected this run (100.0% > the 5.0% limit")
    assert "Top reasons: status: Input should be a valid string (3)" in str(err.value)

    for rid in ids[20:30]:  # a whole page rejected, though under a lenient limit
        referral.state.modify("Candidate", rid, skillSet="go, rust")
    for rid in ids[30:40]:
        referral.state.corrupt("Candidate", rid, isDeleted="no")
    with pytest.raises(sync.RejectionLimitExceeded, match=r"10 of 20 records rejected this run \(every record of "
                                                          r"page\(s\) 2 rejected\)"):
        sync.sync_entity("Candidate", "run-3", page_size=10, max_rejected_share=0.6)
    assert referral.query("SELECT count(*) FROM candidates WHERE skill_set = 'go, rust'") == [(10,)]
    assert referral.query("SELECT count(*) FROM rejected_records WHERE resolved_at IS NULL") == [(14,)]


def test_all_job_orders_rejected_fails_the_run_with_a_mail_while_candidates_load(referral, old_job_order_model):
    referral.state.seed(candidates=30, positions=6)
    dr, states = run_dag(DAG_ID)
    assert dr.state == "failed"
    assert states["sync_candidates"] == states["generate_candidate_embeddings"] == "success"
    assert states["sync_positions"] == "failed" and task(dr, "sync_positions").try_number == 1  # no retries
    assert referral.query("SELECT count(*) FROM candidates") == [(30,)]
    assert referral.query("SELECT count(*) FROM positions") == [(0,)]
    assert referral.query("SELECT count(*), min(reason), max(reason) FROM rejected_records"
                          " WHERE entity = 'JobOrder' AND resolved_at IS NULL") == [
        (6, "isPublic: Input should be a valid boolean", "isPublic: Input should be a valid boolean")]

    mails = referral.mail.messages()
    assert len(mails) == 1 and "FAILED bullhorn_sync_optimized.sync_positions" in mails[0]["Subject"]
    text = body_text(mails[0])
    assert "Bullhorn JobOrder: 6 of 6 records rejected this run (100.0% &gt; the 5.0% limit" in text
    assert "Top reasons: isPublic: Input should be a valid boolean (6)" in text


def test_rejected_records_come_back_once_the_model_accepts_them(referral, old_job_order_model):
    referral.state.seed(candidates=60, positions=6)
    first, _ = run_dag(DAG_ID)
    assert first.state == "failed"
    assert referral.query("SELECT count(*) FROM positions") == [(0,)]

    old_job_order_model.undo()  # the model now follows the documentation; the watermark is not touched
    watermark = referral.query("SELECT last_modified_ms, last_id FROM sync_watermarks WHERE entity = 'JobOrder'")
    dr, states = run_dag(DAG_ID)
    assert dr.state == "success", states
    p = task(dr, "sync_positions").xcom_pull(task_ids="sync_positions")
    assert (p["received"], p["replayed"], p["inserted"], p["resolved"], p["unresolved"]) == (0, 6, 6, 6, 0)
    assert referral.query("SELECT last_modified_ms, last_id FROM sync_watermarks WHERE entity = 'JobOrder'") == watermark
    assert len(referral.bullhorn.faults.calls_to("/rest-services/corp7/entity/JobOrder/")) == 1  # 6 ids, one call

    jobs = {j["id"]: j for j in referral.state.visible("JobOrder")}
    assert referral.query("SELECT id, is_public FROM positions ORDER BY id") == sorted(
        (i, j["isPublic"]) for i, j in jobs.items())
    assert referral.query("SELECT count(*), count(DISTINCT record_id), min(resolution), min(resolved_run_id),"
                          " max(resolved_run_id) FROM rejected_records") == [(6, 6, "loaded", dr.run_id, dr.run_id)]
    want = expected_matches(referral)
    assert want and set(referral.query("SELECT candidate_id, position_id FROM matches WHERE status = 'active'")) == want
    assert "rejected now loaded  6" in body_text(referral.mail.messages()[-1])

    third, states = run_dag(DAG_ID)  # nothing left to replay, nothing duplicated
    assert states["notify"] == "skipped"
    assert len(referral.bullhorn.faults.calls_to("/rest-services/corp7/entity/JobOrder/")) == 1
    assert referral.query("SELECT count(*), count(DISTINCT id) FROM positions") == [(6, 6)]
    assert referral.query("SELECT count(*) FROM rejected_records") == [(6,)]
    assert set(referral.query("SELECT candidate_id, position_id FROM matches")) == want
