"""comprehensive_analysis run for real with dag.test(): the four service stand-ins (audio
features computed from a real WAV/MP3), the embedded PostgreSQL, injected faults."""

from __future__ import annotations

from contextlib import closing

import numpy as np
import pendulum
import psycopg2
import pytest
import soundfile as sf
from fastapi import Request

from conftest import lineage_io, run_dag, set_connection
from devplatform.smtp_sink import body_text
from devplatform.standin import create_app
from domains.hss_workflow.db import DATABASE
from domains.hss_workflow.local.samples import LYRICS, click_track
from domains.hss_workflow.local.services import (
    audio_features,
    create_audio_app,
    create_content_app,
    create_intelligence_app,
    create_prediction_app,
)

DAG_ID = "comprehensive_analysis"
KEY = "hss-test-key"
SERVICES = {"audio": create_audio_app, "content": create_content_app, "ml_prediction": create_prediction_app,
            "intelligence": create_intelligence_app}
TASKS = ["validate_request", "audio_analysis", "content_analysis", "hit_prediction", "ai_insights",
         "aggregate_results"]


class Hss:
    def __init__(self, services, db, root):
        self.services, self.db, self.root = services, db, root

    def query(self, sql, params=()):
        d = self.db
        with psycopg2.connect(host=d["host"], port=d["port"], dbname=d["schema"], user=d["login"],
                              password=d["password"]) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()


@pytest.fixture
def hss(standin, domain_db, mail_sink, tmp_path, monkeypatch):
    root = tmp_path / "songs"
    root.mkdir()
    monkeypatch.setenv("HSS_WORKFLOW_SONGS_ROOT", str(root))
    db = domain_db("hss_workflow")
    with closing(DATABASE.connect()):  # the schema, so a run that fails early can be checked too
        pass
    services = {}
    for name, factory in SERVICES.items():
        services[name] = standin(factory(api_key=KEY))
        set_connection(f"hss_workflow_{name}", conn_type="http", host=services[name].url, password=KEY,
                       extra={"auth_type": "api_key", "api_key_header": "X-API-Key", "timeout": 1,
                              "max_attempts": 4, "backoff_initial": 0.01, "backoff_max": 0.05})
    click_track(root / "example.mp3", 128, fmt="MP3")
    (root / "example.txt").write_text(LYRICS)
    hss = Hss(services, db, root)
    hss.mail = mail_sink
    return hss


def test_audio_features_are_computed_from_the_file(tmp_path):
    for bpm in (90, 128):
        click_track(tmp_path / "a.wav", bpm)
        click_track(tmp_path / "a.mp3", bpm, fmt="MP3")
        for f in (audio_features(tmp_path / "a.wav"), audio_features(tmp_path / "a.mp3")):
            assert abs(f["tempo_bpm"] - bpm) < 2, f
            assert 5.9 < f["duration_seconds"] < 6.2 and f["sample_rate"] == 22050
    quiet = tmp_path / "quiet.wav"
    sf.write(str(quiet), np.zeros(22050, dtype="float32"), 22050)
    assert audio_features(quiet)["energy"] == 0.0 and audio_features(tmp_path / "a.wav")["energy"] > 0.1


def test_analysis_end_to_end_and_rerun_changes_nothing(hss, lineage_events):
    conf = {"song_id": "example_song_123", "song_path": "example.mp3"}
    when = pendulum.datetime(2026, 6, 21, 18, 3, tz="UTC")
    dr, states = run_dag(DAG_ID, conf, logical_date=when)
    assert dr.state == "success", states
    assert states == dict.fromkeys(TASKS, "success")
    rows = hss.query("SELECT song_id, run_key, song_path, hit_probability, audio->>'tempo_bpm',"
                     " content->'sentiment'->>'label', jsonb_array_length(insights->'recommendations'), updated_at"
                     " FROM song_analyses")
    assert len(rows) == 1
    song_id, run_id, path, p, tempo, sentiment, recs, updated = rows[0]
    assert (song_id, run_id, path) == ("example_song_123", f"{DAG_ID}@{when.isoformat()}", str(hss.root / "example.mp3"))
    assert 0 < p < 1 and abs(float(tempo) - 128) < 2 and sentiment == "positive" and recs >= 1
    work = {n: dict(s.app.state.work) for n, s in hss.services.items()}
    assert all(sum(w.values()) == 1 for w in work.values()), work

    # the same run again (same logical date: the same work, the same idempotency keys)
    dr2, states2 = run_dag(DAG_ID, conf, logical_date=when)
    assert dr2.state == "success", states2
    assert hss.query("SELECT count(*), max(updated_at) FROM song_analyses") == [(1, updated)]
    assert {n: dict(s.app.state.work) for n, s in hss.services.items()} == work  # no service worked twice
    keys = [c.idempotency_key for c in hss.services["audio"].faults.calls_to("/analyze/comprehensive")]
    assert len(keys) == 2 and keys[0] == keys[1] and keys[0]

    # OpenLineage: each service call (namespace = the service's scheme://host:port) and the result table
    events = lineage_events()
    for task, service, path in [("audio_analysis", "audio", "/analyze/comprehensive"),
                                ("content_analysis", "content", "/analyze/lyrics"),
                                ("hit_prediction", "ml_prediction", "/predict/single"),
                                ("ai_insights", "intelligence", "/insights/generate")]:
        assert lineage_io(events, f"{DAG_ID}.{task}") == ({(hss.services[service].url, path)}, set())
    table = (f"postgres://127.0.0.1:{hss.db['port']}", f"{hss.db['schema']}.public.song_analyses")
    assert lineage_io(events, f"{DAG_ID}.aggregate_results") == (set(), {table})
    # the request's check reads the song (issue 23: every task accounted for)
    assert lineage_io(events, f"{DAG_ID}.validate_request") == ({("file", str((hss.root / "example.mp3").resolve()))}, set())


def test_503_twice_and_a_timeout_are_survived_with_one_key_and_work_done_once(hss):
    hss.services["content"].faults.add(status=503, times=2, path="/analyze/lyrics")
    hss.services["audio"].faults.add(hang=2, times=1, path="/analyze/comprehensive")  # done, answer too late
    dr, states = run_dag(DAG_ID, {"song_id": "s1", "song_path": str(hss.root / "example.mp3")})
    assert dr.state == "success", states
    content = hss.services["content"].faults.calls_to("/analyze/lyrics")
    assert [c.status for c in content] == [503, 503, 200]
    assert len({c.idempotency_key for c in content}) == 1
    audio = hss.services["audio"].faults.calls_to("/analyze/comprehensive")
    assert len(audio) == 2 and audio[0].idempotency_key == audio[1].idempotency_key
    assert hss.services["audio"].app.state.work["/analyze/comprehensive"] == 1
    assert hss.query("SELECT count(*) FROM song_analyses") == [(1,)]


def test_a_truncated_body_is_retried_and_survived(hss):
    hss.services["ml_prediction"].faults.add(malformed=True, times=2, path="/predict/single")
    dr, states = run_dag(DAG_ID, {"song_id": "s1", "song_path": "example.mp3"})
    assert dr.state == "success", states
    calls = hss.services["ml_prediction"].faults.calls_to("/predict/single")
    assert [c.status for c in calls] == [200, 200, 200] and len({c.idempotency_key for c in calls}) == 1


def test_a_body_breaking_the_contract_fails_at_once_naming_the_field(hss, standin):
    broken = create_app("hss-ml-prediction (a release that broke its contract)")

    @broken.post("/predict/single")
    async def single(request: Request):
        body = await request.json()
        return {"song_id": body["song_id"], "hit_probability": 1.7, "model_version": "x", "explanations": []}

    server = standin(broken)
    set_connection("hss_workflow_ml_prediction", conn_type="http", host=server.url,
                   extra={"auth_type": "none", "timeout": 1, "max_attempts": 4, "backoff_initial": 0.01})
    dr, states = run_dag(DAG_ID, {"song_id": "s1", "song_path": "example.mp3"})
    assert dr.state == "failed"
    assert states["hit_prediction"] == "failed" and states["audio_analysis"] == "success"
    assert states["ai_insights"] == "upstream_failed" and states["aggregate_results"] == "upstream_failed"
    assert len(server.faults.calls_to("/predict/single")) == 1  # not retried: retrying cannot fix it
    assert hss.services["intelligence"].faults.calls_to("/insights") == []
    assert hss.query("SELECT count(*) FROM song_analyses") == [(0,)]
    mails = hss.mail.messages()
    assert len(mails) == 1 and mails[0]["Subject"].startswith("[hss_workflow] FAILED comprehensive_analysis.hit_prediction ")
    assert "POST /predict/single: unexpected response body (hit_probability:" in body_text(mails[0])


@pytest.mark.parametrize("conf, field", [
    ({"song_path": "example.mp3"}, "song_id"),
    ({"song_id": 7, "song_path": "example.mp3"}, "song_id"),
    ({"song_id": "s1", "song_path": "../etc/passwd"}, "song_path"),
    ({"song_id": "s1", "song_path": "/etc/passwd"}, "song_path"),
])
def test_bad_conf_is_refused_before_a_run_exists(hss, conf, field):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=field):
        run_dag(DAG_ID, conf)
    assert all(s.faults.calls == [] for s in hss.services.values())


def test_a_symlink_out_of_the_root_fails_the_first_task_before_any_service_call(hss, tmp_path):
    outside = tmp_path / "outside.wav"
    click_track(outside, 100)
    (hss.root / "escape.wav").symlink_to(outside)
    dr, states = run_dag(DAG_ID, {"song_id": "s1", "song_path": "escape.wav"})
    assert dr.state == "failed" and states["validate_request"] == "failed", states
    assert all(s.faults.calls == [] for s in hss.services.values())
