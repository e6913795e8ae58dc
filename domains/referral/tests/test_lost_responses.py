"""bullhorn_sync_optimized when Bullhorn and the ML service act and their answers are lost.

``drop_after_apply``: the stand-in runs the request (a login step consumes its code or
token, a read is served), then closes the connection without a response. The sync must
still load every record exactly once.
"""

from __future__ import annotations

from domains.referral.local.ml_service import embed, score
from domains.referral.tests.test_bullhorn_sync_dag import run, seed, xcom


def expected_matches(referral) -> set[tuple[int, int]]:
    cands = {c["id"]: f"{c['skillSet']}. {c['description']}" for c in referral.state.visible("Candidate")}
    pos = {j["id"]: f"{j['title']}. {j['skillList']}. {j['description']}" for j in referral.state.visible("JobOrder")}
    pvec = {i: embed(t) for i, t in pos.items()}
    return {(c, p) for c, t in cands.items() for p in pos if score(embed(t), pvec[p]) >= 70}


def test_reads_dropped_mid_paging_are_retried_to_the_same_rows(referral):
    seed(referral, candidates=1300, positions=8)  # candidates come in 3 pages of 500
    query = "/rest-services/corp7/query"
    referral.bullhorn.faults.add(drop_after_apply=True, times=2, fraction=0.5, seed=0, path=query)
    referral.ml.faults.add(drop_after_apply=True, times=1, path="/v1/embeddings")
    referral.ml.faults.add(drop_after_apply=True, times=1, path="/v1/match")
    dr, states = run(referral)

    statuses = [c.status for c in referral.bullhorn.faults.calls_to(query)]
    assert statuses[:4] == [200, 200, 0, 0], statuses  # the third page dropped, and its first retry too
    assert [c.status for c in referral.ml.faults.calls_to("/v1/")].count(0) == 2
    assert referral.query("SELECT count(*), count(DISTINCT id) FROM candidates") == [(1300, 1300)]
    assert referral.query("SELECT count(*), count(DISTINCT id) FROM positions") == [(8, 8)]
    assert referral.query("SELECT count(*) FROM candidate_embeddings") == [(1300,)]
    got = referral.query("SELECT candidate_id, position_id FROM matches WHERE status = 'active'")
    assert len(got) == len(set(got)) and set(got) == expected_matches(referral)
    assert xcom(dr, "sync_candidates")["inserted"] == 1300


def test_lost_answers_to_the_login_steps_end_in_a_fresh_login(referral):
    """The token exchange and the REST login consume their code / access token: retrying
    them as they were can never work, the hook has to log in afresh."""
    seed(referral, candidates=30, positions=3)
    referral.bullhorn.faults.add(drop_after_apply=True, times=1, path="/oauth/token")
    referral.bullhorn.faults.add(drop_after_apply=True, times=1, path="/rest-services/login", method="POST")
    dr, states = run(referral)
    assert [c.status for c in referral.bullhorn.faults.calls_to("/oauth/token")][0] == 0
    assert [c.status for c in referral.bullhorn.faults.calls_to("/rest-services/login", "POST")][0] == 0
    assert referral.query("SELECT count(*), count(DISTINCT id) FROM candidates") == [(30, 30)]
    assert referral.query("SELECT count(*), count(DISTINCT id) FROM positions") == [(3, 3)]
