"""The Bullhorn stand-in's query languages (JPQL ``where``, Lucene ``query``) evaluate as documented."""

from __future__ import annotations

import pytest

from domains.referral.local.bullhorn import Record, _jpql, _lucene

REC = Record(7, 1_700_000_000_000, {"isOpen": True, "status": "Active"})


@pytest.mark.parametrize("where, expected", [
    ("dateLastModified > 1699999999999 OR (dateLastModified = 1700000000000 AND id > 6)", True),
    ("dateLastModified > 1700000000000 OR (dateLastModified = 1700000000000 AND id > 7)", False),
    ("isOpen = true AND id >= 7", True),
    ("isOpen = false OR id < 7", False),
    ("status = 'Active'", True),
])
def test_jpql_where(where, expected):
    assert _jpql(where)(REC) is expected


def test_jpql_rejects_what_it_cannot_parse():
    with pytest.raises(ValueError):
        _jpql("id >> 3")


def test_lucene_date_range_uses_bullhorn_datetime_format():
    assert _lucene("dateLastModified:[20231114221319 TO *]")(REC)  # 2023-11-14T22:13:19Z < 1700000000000 ms
    assert not _lucene("dateLastModified:[20231114221321 TO *]")(REC)
    assert _lucene("id:7 AND isOpen:1")(REC)


def test_the_admin_routes_need_the_stand_ins_admin_key(standin):
    """Creating, changing or deleting Bullhorn records and expiring sessions is the local
    platform's admin's, like the fault routes: 401 without the key, and not recorded as a call."""
    import requests

    from domains.referral.local.bullhorn import create_bullhorn_app

    server = standin(create_bullhorn_app(seed_candidates=1, seed_positions=1))
    url = f"{server.url}/_standin/admin/Candidate"
    assert requests.post(url, json={"firstName": "Ada", "lastName": "L"}, timeout=10).status_code == 401
    assert requests.post(f"{server.url}/_standin/admin/sessions/expire", timeout=10).status_code == 401
    assert requests.post(f"{server.url}/_admin/sessions/expire", timeout=10).status_code == 404  # the old open path is gone
    made = requests.post(url, json={"firstName": "Ada", "lastName": "L", "status": "Active"}, headers=server.admin_headers,
                         timeout=10)
    assert made.status_code == 200, made.text
    assert requests.post(f"{server.url}/_standin/admin/sessions/expire", headers=server.admin_headers,
                         timeout=10).json() == {"expired": True}
    assert [c.path for c in server.faults.calls if c.path.startswith("/_standin")] == []
