"""Bullhorn's documented contract (tests/contract/): the fixtures follow the entity reference,
the models load them, and the stand-in emits exactly those shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from domains.referral.bullhorn.hook import BullhornHook
from domains.referral.bullhorn.models import Candidate, JobOrder, PublishingStatus, problems
from domains.referral.local.bullhorn import ENTITYREF, violations

CONTRACT = Path(__file__).parent / "contract"
MODELS = {"Candidate": Candidate, "JobOrder": JobOrder}
JSON_TYPES = {"Integer": {int}, "Timestamp": {int}, "Boolean": {bool}, "String": {str}}


def fixture(name: str) -> dict:
    return json.loads((CONTRACT / f"{name}.json").read_text())


def fixture_records() -> list[tuple[str, dict]]:
    pages = {"Candidate": fixture("candidate_query_page"), "JobOrder": fixture("joborder_query_page")}
    records = [(e, r) for e, page in pages.items() for r in page["data"]]
    records.append(("JobOrder", fixture("joborder_entity_single")["data"]))
    records += [("JobOrder", r) for r in fixture("joborder_entity_multiple")["data"]]
    return records


def shape(entity: str, record: dict) -> dict[str, set[str]]:
    """Field -> JSON types seen, to compare the stand-in's records with the fixtures'."""
    return {k: {type(v).__name__} for k, v in record.items()}


def documented_types(entity: str, record: dict) -> list[str]:
    """An independent reading of entityref.json: every field documented, every value of its JSON type."""
    out = []
    for name, value in record.items():
        spec = ENTITYREF[entity][name]
        if value is None:
            if spec.get("not_null"):
                out.append(f"{name} is null")
        elif type(value) not in JSON_TYPES[spec["type"]]:
            out.append(f"{name} is {type(value).__name__}, documented {spec['type']}")
        elif "values" in spec and value not in spec["values"]:
            out.append(f"{name}={value} outside {spec['values']}")
    return out


def test_contract_fixtures_follow_the_documented_types():
    for name in ("candidate_query_page", "joborder_query_page"):
        page = fixture(name)
        assert set(page) == {"total", "start", "count", "data"} and page["count"] == len(page["data"])
    for entity, record in fixture_records():
        assert set(record) == set(ENTITYREF[entity]), (entity, record["id"])
        assert documented_types(entity, record) == [] and violations(entity, record) == [], record
    values = {r["isPublic"] for e, r in fixture_records() if e == "JobOrder"}
    assert values == {-1, 0, 1, None}


@pytest.mark.parametrize("entity, record", fixture_records(), ids=lambda x: x if isinstance(x, str) else str(x["id"]))
def test_models_load_the_contract_fixtures(entity, record):
    loaded = MODELS[entity].model_validate(record)
    assert loaded.id == record["id"] and loaded.dateLastModified == record["dateLastModified"]


def test_is_public_maps_to_the_documented_publishing_status():
    jobs = {r["id"]: JobOrder.model_validate(r) for r in fixture("joborder_query_page")["data"]}
    assert {i: j.publishing_status for i, j in jobs.items()} == {
        5001: PublishingStatus.PUBLISHED_APPROVED, 5002: PublishingStatus.PUBLISHED_SUBMITTED,
        5003: PublishingStatus.NOT_PUBLISHED, 5004: None}
    assert PublishingStatus(-1).label == "published-submitted"


@pytest.mark.parametrize("entity, change, reason", [
    ("JobOrder", {"isPublic": True}, "isPublic: Input should be a valid integer"),
    ("JobOrder", {"isPublic": 2}, "isPublic: Input should be less than or equal to 1"),
    ("JobOrder", {"dateAdded": None}, "dateAdded: Input should be a valid integer"),
    ("JobOrder", {"title": "x" * 101}, "title: String should have at most 100 characters"),
    ("Candidate", {"firstName": None}, "firstName: Input should be a valid string"),
    ("Candidate", {"dateLastModified": "2023-11-14T22:13:20Z"}, "dateLastModified: Input should be a valid integer"),
    ("Candidate", {"isDeleted": 0}, "isDeleted: Input should be a valid boolean"),
])
def test_models_refuse_what_the_documentation_rules_out(entity, change, reason):
    record = next(r for e, r in fixture_records() if e == entity)
    with pytest.raises(ValidationError) as err:
        MODELS[entity].model_validate({**record, **change})
    assert problems(err.value) == reason


def test_the_standin_emits_exactly_the_documented_shapes(referral):
    referral.state.seed(candidates=12, positions=9)
    hook = BullhornHook()
    for entity, page_fixture in (("Candidate", "candidate_query_page"), ("JobOrder", "joborder_query_page")):
        fields = list(ENTITYREF[entity])
        pages = list(hook.iter_modified(entity, fields, page_size=5))
        records = [r for p in pages for r in p]
        assert records and all(set(r) == set(fixture(page_fixture)["data"][0]) for r in records)
        for r in records:
            assert documented_types(entity, r) == [], r
            MODELS[entity].model_validate(r)
        # the fields the fixtures fill have the fixtures' JSON types in the stand-in too
        want = shape(entity, fixture(page_fixture)["data"][0])
        assert all(shape(entity, r) == want for r in records), (entity, records[0])
    assert {r["isPublic"] for r in referral.state.visible("JobOrder")} == {-1, 0, 1}

    # entity/<Entity>/<id>: one id -> {"data": {...}}, several -> {"data": [...]}
    ids = [j["id"] for j in referral.state.visible("JobOrder")][:3]
    fields = ",".join(ENTITYREF["JobOrder"])
    single = hook.rest_get(f"entity/JobOrder/{ids[0]}", {"fields": fields})
    multiple = hook.rest_get(f"entity/JobOrder/{ids[1]},{ids[2]},999999", {"fields": fields})
    for body, kind in ((single, dict), (multiple, list)):
        assert set(body) == {"data"} and isinstance(body["data"], kind)
    assert set(single["data"]) == set(fixture("joborder_entity_single")["data"])
    assert [r["id"] for r in multiple["data"]] == ids[1:]
    assert all(set(r) == set(fixture("joborder_entity_multiple")["data"][0]) for r in multiple["data"])
    assert all(documented_types("JobOrder", r) == [] for r in [single["data"], *multiple["data"]])


def test_the_standin_refuses_undocumented_values_unless_corrupting_on_purpose(referral):
    with pytest.raises(ValueError, match=r"isPublic: only \[-1, 0, 1\] are allowed"):
        referral.state.create("JobOrder", title="x", isPublic=2)
    with pytest.raises(ValueError, match="isPublic: Integer must be a JSON integer, not True"):
        referral.state.create("JobOrder", title="x", isPublic=True)
    with pytest.raises(ValueError, match="firstName: documented Not null"):
        referral.state.create("Candidate", lastName="x", status="Active")
    job = referral.state.create("JobOrder", title="ok")
    assert job["isPublic"] == 0 and job["isOpen"] is True  # Bullhorn's defaults for a new job
    referral.state.corrupt("JobOrder", job["id"], isPublic=True)
    assert violations("JobOrder", referral.state.visible("JobOrder")[-1]) != []


def test_get_by_ids_batches_and_skips_ids_bullhorn_does_not_have(referral):
    referral.state.seed(candidates=5, positions=0)
    ids = [c["id"] for c in referral.state.visible("Candidate")]
    hook = BullhornHook()
    batches = list(hook.get_by_ids("Candidate", [*ids, 424242], ["id", "firstName"], batch=2))
    assert [sorted(r["id"] for r in b) for b in batches] == [sorted(ids[:2]), sorted(ids[2:4]), [ids[4]]]
    calls = referral.bullhorn.faults.calls_to("/rest-services/corp7/entity/Candidate/")
    assert [c.path.rsplit("/", 1)[1] for c in calls] == [f"{ids[0]},{ids[1]}", f"{ids[2]},{ids[3]}", f"{ids[4]},424242"]
    assert list(hook.get_by_ids("Candidate", [424242, 424243], ["id"])) == [[]]  # 404: none found


def test_get_by_ids_asks_for_the_whole_batch_not_the_default_count_of_20(referral):
    referral.state.seed(candidates=30, positions=0)
    ids = [c["id"] for c in referral.state.visible("Candidate")]
    assert [len(b) for b in BullhornHook().get_by_ids("Candidate", ids, ["id"], batch=25)] == [25, 5]
    assert len(BullhornHook().rest_get(f"entity/Candidate/{','.join(map(str, ids))}", {"fields": "id"})["data"]) == 20
