"""The Bullhorn stand-in's query languages (JPQL ``where``, Lucene ``query``) evaluate as documented."""

from __future__ import annotations

import pytest

from domains.referral.standins.bullhorn import Record, _jpql, _lucene

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
