"""WorkflowServiceOperator's XCom rule: a small answer is the XCom, a large one is stored in the
domain's database (embedded PostgreSQL) with only a reference in XCom, and read back from it."""

from __future__ import annotations

import json
from types import SimpleNamespace

from domains.hss_workflow.operators import (
    AudioAnalysisOperator,
    MLPredictionOperator,
    load_result,
    resolve_refs,
)


def context():
    ti = SimpleNamespace(dag_id="comprehensive_analysis", run_id="manual__1", task_id="audio_analysis", map_index=-1)
    return {"ti": ti, "logical_date": None}


def test_large_answers_go_to_the_database_and_small_ones_stay_in_xcom(domain_db):
    domain_db("hss_workflow")
    op = AudioAnalysisOperator(task_id="audio_analysis", payload={}, max_xcom_bytes=200)
    small = {"song_id": "s1", "tempo_bpm": 120.0}
    assert op.to_xcom(context(), small) == small
    large = {"song_id": "s1", "frames": [0.5] * 500}
    ref = op.to_xcom(context(), large)
    assert ref == {"ref": {"run_key": "comprehensive_analysis/manual__1", "task_id": "audio_analysis"},
                   "size": len(json.dumps(large))}
    assert load_result(ref) == large
    assert op.to_xcom(context(), large) == ref  # a retry stores the same row again, no duplicate
    # a later operator's payload gets the stored answer, not the reference
    assert resolve_refs({"song_id": "s1", "audio_features": ref}) == {"song_id": "s1", "audio_features": large}


def test_subclasses_name_their_service():
    op = MLPredictionOperator(task_id="p", payload={"song_id": "{{ params.song_id }}"})
    assert (op.conn_id, op.endpoint, op.template_fields) == ("hss_workflow_ml_prediction", "/predict/single",
                                                            ("payload",))
    assert MLPredictionOperator(task_id="q", payload={}, conn_id="other").conn_id == "other"
