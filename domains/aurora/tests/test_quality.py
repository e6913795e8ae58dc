"""The data quality checks on generated data: every planted defect kind is reported by its
check with its severity and the planted ids; a clean dataset reports nothing."""

from __future__ import annotations

from contextlib import closing
from datetime import date

import pandas as pd
import pytest

from domains.aurora import quality
from domains.aurora.db import DATABASE
from domains.aurora.local.generator import DEFECT_KINDS, generate, load

END = date(2026, 6, 1)
AS_OF = pd.Timestamp(END, tz="UTC") + pd.Timedelta(hours=4)


def run_all(conn) -> dict[str, dict]:
    out = {}
    for group in quality.GROUPS:
        for f in quality.run_group(conn, group, AS_OF):
            out[f["check_name"]] = f
    return out


def test_every_check_of_the_seed_is_declared_with_a_severity():
    assert len(quality.CHECKS) == 17 and set(DEFECT_KINDS.values()) == set(quality.CHECKS_BY_NAME)
    assert {c.group for c in quality.CHECKS} == set(quality.GROUPS)
    assert {c.severity for c in quality.CHECKS} == set(quality.SEVERITIES)
    for frame in quality.ID_COLUMNS:
        assert isinstance(quality.schema(frame), quality.pa.DataFrameSchema)


@pytest.mark.parametrize("defects", [(), tuple(DEFECT_KINDS)], ids=["clean", "every-defect"])
def test_planted_defects_are_reported_by_their_check_and_nothing_else(domain_db, defects):
    domain_db("aurora")
    ds = generate(users=40, days=20, end=END, defects=defects, defect_count=3)
    with closing(DATABASE.connect()) as conn:
        load(conn, ds)
        found = run_all(conn)
    assert set(found) == set(quality.CHECKS_BY_NAME)
    failed = {name: f for name, f in found.items() if not f["passed"]}
    expected = {DEFECT_KINDS[kind]: ids for kind, ids in ds.planted.items()}
    assert set(failed) == set(expected), {n: f["sample_ids"] for n, f in failed.items()}
    for name, ids in expected.items():
        f = failed[name]
        print(f"{name:42s} {f['severity']:8s} {f['failed_rows']}/{f['checked_rows']} {f['sample_ids']}")
        assert f["severity"] == quality.CHECKS_BY_NAME[name].severity
        assert f["failed_rows"] == len(ids) and sorted(map(str, f["sample_ids"])) == sorted(map(str, ids)), (name, f, ids)
