"""bullhorn_sync_optimized run for real: Bullhorn and ML stand-ins, a real referral database."""

from __future__ import annotations

from conftest import lineage_io, run_dag
from devplatform.smtp_sink import body_text
from domains.referral.local.ml_service import embed, score

DAG_ID = "bullhorn_sync_optimized"


def seed(referral, candidates=1100, positions=14):
    referral.state.seed(candidates=candidates, positions=positions)


def run(referral, expect="success"):
    dr, states = run_dag(DAG_ID)
    assert dr.state == expect, states
    return dr, states


def xcom(dr, task_id):
    return next(ti for ti in dr.get_task_instances() if ti.task_id == task_id).xcom_pull(task_ids=task_id)


def test_first_run_syncs_everything_exactly_and_mails_a_summary(referral, lineage_events):
    seed(referral)
    dr, states = run(referral)
    assert all(s == "success" for s in states.values()), states

    want = {c["id"]: c for c in referral.state.visible("Candidate")}
    got = referral.query("SELECT id, first_name, last_name, email, skill_set, is_deleted,"
                         " (extract(epoch FROM date_last_modified) * 1000)::bigint FROM candidates")
    assert len(got) == len(want) == 1100
    for rid, first, last, email, skills, deleted, dlm in got:
        w = want[rid]
        assert (first, last, email, skills, deleted, dlm) == (
            w["firstName"], w["lastName"], w["email"], w["skillSet"], w["isDeleted"], w["dateLastModified"])
    assert referral.query("SELECT count(*) FROM positions") == [(14,)]
    assert referral.query("SELECT count(*), min(model_version) FROM candidate_embeddings") == [(1100, "hashing-bow-64@1")]
    assert referral.query("SELECT count(*) FROM position_embeddings") == [(14,)]

    # matches: exactly the pairs the scoring rule puts at or above the threshold
    cands = {c["id"]: f"{c['skillSet']}. {c['description']}" for c in want.values()}
    pos = {j["id"]: f"{j['title']}. {j['skillList']}. {j['description']}" for j in referral.state.visible("JobOrder")}
    pvec = {i: embed(t) for i, t in pos.items()}
    expected = {(c, p) for c, t in cands.items() for p in pos if score(embed(t), pvec[p]) >= 70}
    got_matches = set(referral.query("SELECT candidate_id, position_id FROM matches WHERE status = 'active'"))
    assert expected and got_matches == expected

    mails = referral.mail.messages()
    assert len(mails) == 1
    text = body_text(mails[0])
    assert mails[0]["To"] == "recruiting@platform.local"
    assert "candidates synced    1100 (1100 new, 0 updated, 0 deleted)" in text
    assert "positions synced     14 (14 new, 0 updated, 0 deleted)" in text
    assert f"new matches          {len(expected)}" in text
    assert "Top new matches" in text and "candidate | position | score" in text

    # OpenLineage: Bullhorn's query resource (at the restUrl its login handed out), the ML service, the tables
    events = lineage_events()
    pg = f"postgres://127.0.0.1:{referral.db['port']}"

    def table(name):
        return (pg, f"{referral.db['schema']}.public.{name}")

    inputs, outputs = lineage_io(events, f"{DAG_ID}.sync_candidates")
    [(bh_ns, bh_name)] = inputs
    assert bh_ns == referral.bullhorn.url and bh_name.endswith("/query/Candidate"), inputs
    assert outputs == {table("candidates"), table("sync_watermarks"), table("rejected_records")}
    assert lineage_io(events, f"{DAG_ID}.generate_candidate_embeddings") == (
        {table("candidates"), (referral.ml.url, "/v1/embeddings")}, {table("candidate_embeddings")})
    assert lineage_io(events, f"{DAG_ID}.find_matches") == (
        {table("candidate_embeddings"), table("position_embeddings"), table("candidates"), table("positions"),
         (referral.ml.url, "/v1/match")}, {table("matches")})


def test_reruns_change_nothing_then_only_the_changes_are_touched(referral):
    seed(referral, candidates=200, positions=10)
    run(referral)
    referral.mail.clear()
    before = referral.query("SELECT * FROM candidates ORDER BY id")
    matches_before = referral.query("SELECT candidate_id, position_id, score, status, run_id FROM matches ORDER BY 1, 2")

    dr, states = run(referral)
    assert states["notify"] == "skipped"
    assert xcom(dr, "sync_candidates")["changed"] == 0 and xcom(dr, "find_matches")["pairs_scored"] == 0
    assert referral.query("SELECT * FROM candidates ORDER BY id") == before
    assert referral.query("SELECT candidate_id, position_id, score, status, run_id FROM matches ORDER BY 1, 2") == matches_before
    assert referral.mail.messages() == []

    changed = [c["id"] for c in referral.state.visible("Candidate")[:3]]
    for rid in changed:
        referral.state.modify("Candidate", rid, skillSet="python, airflow, sql, postgres")
    closed = referral.query("SELECT position_id FROM matches WHERE status = 'active' GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")[0][0]
    referral.state.modify("JobOrder", closed, isOpen=False)
    gone = referral.query("SELECT candidate_id FROM matches WHERE status = 'active' AND position_id <> %s"
                          " AND candidate_id <> ALL(%s) LIMIT 1", (closed, changed))[0][0]
    referral.state.delete("Candidate", gone)

    dr, states = run(referral)
    c, ce, p, pe, m = (xcom(dr, t) for t in ("sync_candidates", "generate_candidate_embeddings", "sync_positions",
                                             "generate_position_embeddings", "find_matches"))
    assert (c["received"], c["updated"], c["inserted"], c["deleted"]) == (4, 4, 0, 1)
    assert referral.query("SELECT is_deleted FROM candidates WHERE id = %s", (gone,)) == [(True,)]
    assert referral.query("SELECT DISTINCT status, retired_reason FROM matches WHERE candidate_id = %s", (gone,)) == [
        ("retired", "candidate deleted")]
    assert (p["received"], p["updated"]) == (1, 1)
    assert ce["embedded"] == 3 and pe["embedded"] == 0
    assert m["pairs_scored"] == 3 * 9  # three changed candidates x the nine positions still open (not the deleted one)
    retired = referral.query("SELECT DISTINCT position_id, retired_reason FROM matches WHERE status = 'retired'"
                             " AND retired_reason = 'position closed'")
    assert retired == [(closed, "position closed")]
    assert referral.query("SELECT count(*) FROM matches WHERE position_id = %s AND status = 'active'", (closed,)) == [(0,)]
    touched = set(changed) | {gone}
    untouched = [r for r in matches_before if r[0] not in touched and r[1] != closed]
    assert [r for r in referral.query("SELECT candidate_id, position_id, score, status, run_id FROM matches ORDER BY 1, 2")
            if r[0] not in touched and r[1] != closed] == untouched


def test_session_expiry_429s_and_ml_503s_are_survived_without_loss_or_duplicates(referral):
    seed(referral, candidates=1300, positions=8)
    referral.state.expire_after_calls = 2  # mid-paging
    referral.bullhorn.faults.add(status=429, retry_after=0.05, times=2, path="/rest-services/corp7/query")
    referral.ml.faults.add(status=503, times=2, path="/v1/embeddings")
    referral.ml.faults.add(status=503, times=1, path="/v1/match")
    dr, states = run(referral)
    assert referral.query("SELECT count(*), count(DISTINCT id) FROM candidates") == [(1300, 1300)]
    assert referral.query("SELECT count(*) FROM candidate_embeddings") == [(1300,)]
    assert xcom(dr, "sync_candidates")["logins"] == 2
    assert [c.status for c in referral.bullhorn.faults.calls_to("/rest-services/corp7/query")].count(429) == 2
    assert [c.status for c in referral.ml.faults.calls_to("/v1/")].count(503) == 3


def test_a_400_fails_fast_with_a_clear_error_and_a_failure_mail(referral):
    seed(referral, candidates=10, positions=2)
    referral.bullhorn.faults.add(status=400, times=1, path="/rest-services/corp7/query")
    dr, states = run(referral, expect="failed")
    assert states["sync_candidates"] == "failed"
    ti = next(t for t in dr.get_task_instances() if t.task_id == "sync_candidates")
    assert ti.try_number == 1  # permanent: no retries used
    assert len(referral.bullhorn.faults.calls_to("/rest-services/corp7/query")) == 1
    mails = referral.mail.messages()
    assert len(mails) == 1 and "FAILED bullhorn_sync_optimized.sync_candidates" in mails[0]["Subject"]
    assert "GET /rest-services/corp7/query/Candidate answered 400" in body_text(mails[0])


def test_malformed_records_are_rejected_and_the_rest_load(referral):
    seed(referral, candidates=50, positions=3)
    ids = [c["id"] for c in referral.state.visible("Candidate")]
    referral.state.corrupt("Candidate", ids[5], id=None)
    referral.state.corrupt("Candidate", ids[7], email=12345, isDeleted="no")
    dr, _ = run(referral)
    rejected = referral.query("SELECT record_id, reason FROM rejected_records ORDER BY id")
    assert len(rejected) == 2
    assert rejected[0] == (None, "id: Input should be a valid integer")
    assert rejected[1][0] == str(ids[7]) and "email: Input should be a valid string" in rejected[1][1]
    assert referral.query("SELECT count(*) FROM candidates") == [(48,)]
    assert xcom(dr, "sync_candidates")["rejected"] == 2
    assert "records rejected     2" in body_text(referral.mail.messages()[0])
    second, _ = run(referral)  # a rerun re-reads the one with an id, still rejected: its row is kept once
    assert referral.query("SELECT record_id, attempts, last_run_id, resolved_at FROM rejected_records ORDER BY id") == [
        (None, 1, dr.run_id, None), (str(ids[7]), 2, second.run_id, None)]
    assert [c.path for c in referral.bullhorn.faults.calls_to("/rest-services/corp7/entity/")] == [
        f"/rest-services/corp7/entity/Candidate/{ids[7]}"]
