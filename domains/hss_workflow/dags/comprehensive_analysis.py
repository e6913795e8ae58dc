"""
### comprehensive_analysis

One song's full analysis, triggered through the REST API with conf
`{"song_id": "example_song_123", "song_path": "example.mp3"}` (`song_path` relative to, or
absolute under, `HSS_WORKFLOW_SONGS_ROOT`, e.g. `/app/songs/example.mp3`).

`validate_request` → `audio_analysis` ∥ `content_analysis` → `hit_prediction` →
`ai_insights` → `aggregate_results`

The conf is checked by its JSON schema before the run exists (a bad one is refused with a
400 naming the field) and again by `validate_request` before any service is called. Each
service call retries transient faults with the same idempotency key. The results land in
`song_analyses`, one row per song and run.

Connections: `hss_workflow_audio`, `hss_workflow_content`, `hss_workflow_ml_prediction`,
`hss_workflow_intelligence`, `hss_workflow_postgres`.
"""

from airflow.sdk import dag, task

from domains.hss_workflow.conf import analysis_params
from domains.hss_workflow.operators import (
    AudioAnalysisOperator,
    ContentAnalysisOperator,
    IntelligenceOperator,
    MLPredictionOperator,
)
from shared.dag_defaults import dag_kwargs


@dag(schedule=None, params=analysis_params(),
     **dag_kwargs("hss_workflow", doc_md=__doc__, description="Audio + lyrics analysis, hit prediction, insights",
                  tags=["analysis"], max_active_runs=16))
def comprehensive_analysis():
    @task(multiple_outputs=True)
    def validate_request(params=None) -> dict:
        from domains.hss_workflow.analysis import validate_request

        return validate_request(params)

    request = validate_request()
    song = {"song_id": request["song_id"], "song_path": request["song_path"]}
    audio = AudioAnalysisOperator(task_id="audio_analysis", payload=song)
    content = ContentAnalysisOperator(task_id="content_analysis", payload=song)
    prediction = MLPredictionOperator(task_id="hit_prediction", payload={
        "song_id": request["song_id"], "audio_features": audio.output, "content_features": content.output})
    insights = IntelligenceOperator(task_id="ai_insights", payload={
        "song_id": request["song_id"], "audio": audio.output, "content": content.output,
        "prediction": prediction.output})

    @task(multiple_outputs=False)
    def aggregate_results(request: dict, audio: dict, content: dict, prediction: dict, insights: dict) -> dict:
        from domains.hss_workflow.analysis import aggregate_results
        from shared.runs import run_key

        return aggregate_results(request, audio, content, prediction, insights, run_key())

    request >> [audio, content]
    [audio, content] >> prediction >> insights
    aggregate_results(request, audio.output, content.output, prediction.output, insights.output)


comprehensive_analysis()
