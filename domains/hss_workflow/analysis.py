"""comprehensive_analysis's own steps: the request check and the results aggregation."""

from __future__ import annotations

import json
from contextlib import closing
from typing import Any

from domains.hss_workflow.conf import confine
from domains.hss_workflow.operators import load_result


def validate_request(params: dict[str, Any]) -> dict[str, str]:
    """The conf again, on the worker, before any service is called: the song must be a file
    inside the songs root (symlinks resolved). Returns the song's id and real path."""
    from airflow.sdk.exceptions import AirflowFailException

    from domains.hss_workflow.conf import ConfError
    from shared.lineage import file_uri, record_io

    try:
        path = confine("song_path", params.get("song_path"))
    except ConfError as exc:
        raise AirflowFailException(str(exc)) from None
    record_io(path, inputs=[file_uri(path)])  # the song it checked, which the services then read
    return {"song_id": str(params["song_id"]), "song_path": str(path)}


def aggregate_results(request: dict[str, str], audio: dict, content: dict, prediction: dict, insights: dict,
                      run_key: str) -> dict[str, Any]:
    """One ``song_analyses`` row per song and run (``shared.runs.run_key``: the logical date when the
    run has one, else its run_id); a rerun of the run rewrites nothing that is equal."""
    from domains.hss_workflow.db import DATABASE

    audio, content, prediction, insights = (load_result(x) for x in (audio, content, prediction, insights))
    row = (request["song_id"], run_key, request["song_path"], prediction["hit_probability"],
           json.dumps(audio), json.dumps(content), json.dumps(prediction), json.dumps(insights))
    with closing(DATABASE.connect()) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO song_analyses (song_id, run_key, song_path, hit_probability, audio, content, prediction,"
            " insights) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (song_id, run_key) DO UPDATE SET"
            " song_path = EXCLUDED.song_path, hit_probability = EXCLUDED.hit_probability, audio = EXCLUDED.audio,"
            " content = EXCLUDED.content, prediction = EXCLUDED.prediction, insights = EXCLUDED.insights,"
            " updated_at = now() WHERE (song_analyses.song_path, song_analyses.hit_probability, song_analyses.audio,"
            " song_analyses.content, song_analyses.prediction, song_analyses.insights) IS DISTINCT FROM"
            " (EXCLUDED.song_path, EXCLUDED.hit_probability, EXCLUDED.audio, EXCLUDED.content,"
            " EXCLUDED.prediction, EXCLUDED.insights)", row)
        written = cur.rowcount
        conn.commit()
    from shared.lineage import record_postgres_io

    record_postgres_io(DATABASE.hook(), outputs=["song_analyses"])
    return {"song_id": request["song_id"], "run_key": run_key, "hit_probability": prediction["hit_probability"],
            "tempo_bpm": audio["tempo_bpm"], "recommendations": len(insights["recommendations"]),
            "rows_written": written}
