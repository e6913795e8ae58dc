"""Operators for the five HSS workflow services (the seed's ``plugins/workflow_operators.py``).

``WorkflowServiceOperator`` calls one service endpoint through ``shared.http.JsonApiHook`` on
the service's connection (``hss_workflow_audio``, ``hss_workflow_content``,
``hss_workflow_ml_training``, ``hss_workflow_ml_prediction``, ``hss_workflow_intelligence``):

- ``payload`` is templated (Jinja on the run's conf, e.g. ``"{{ params.song_id }}"``, and
  ``XComArg``s of earlier tasks anywhere inside it, which also set the dependency);
- transient faults (connection errors, timeouts, 429 with Retry-After, 5xx, a body that is
  not JSON) are retried by the hook with backoff and jitter, every attempt with the same
  ``Idempotency-Key`` (derived from the run, task and map index: a task retry or a rerun of
  the same run sends the same key, so the service does the work once); any other 4xx fails
  the task at once with the service's message;
- the answer is validated with the subclass's pydantic ``response_model`` (a wrong shape
  fails naming the field);
- the validated answer is the task's XCom when its JSON is at most ``max_xcom_bytes``
  (default 16 KiB); a larger one is stored in the domain's ``service_results`` table and
  the XCom is ``{"ref": {"run_key", "task_id"}, "size": n}``; :func:`load_result` reads
  either form back.

Subclasses fix the connection, endpoint and response model; use them from any DAG of the
domain::

    audio = AudioAnalysisOperator(task_id="audio_analysis",
                                  payload={"song_id": "{{ params.song_id }}", "song_path": path})

``MLTrainingOperator`` submits a training job and waits for it deferrably (see its docstring).
"""

from __future__ import annotations

import json
import time
from contextlib import closing
from datetime import timedelta
from typing import Any, ClassVar

from airflow.providers.standard.sensors.filesystem import FileSensor
from airflow.sdk import BaseOperator
from pydantic import BaseModel, ConfigDict, Field

from shared.lineage import LineageMixin, record_http_io, record_postgres_io
from shared.runs import run_key
from shared.triggers import HttpPollTrigger

MAX_XCOM_BYTES = 16 * 1024


# -- response models (the services' documented contracts; extra fields are kept) ----------
class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class AudioAnalysis(_Body):
    song_id: str
    duration_seconds: float = Field(ge=0)
    sample_rate: int = Field(gt=0)
    tempo_bpm: float = Field(ge=0)
    energy: float = Field(ge=0, le=1)
    spectral_centroid_hz: float = Field(ge=0)
    spectral_flatness: float = Field(ge=0)


class Sentiment(_Body):
    label: str
    score: float = Field(ge=-1, le=1)


class LyricsAnalysis(_Body):
    song_id: str
    has_lyrics: bool
    word_count: int = Field(ge=0)
    sentiment: Sentiment


class Explanation(_Body):
    feature: str
    value: float
    contribution: float


class HitPrediction(_Body):
    song_id: str
    hit_probability: float = Field(ge=0, le=1)
    model_version: str
    explanations: list[Explanation]


class Recommendation(_Body):
    area: str
    advice: str
    priority: str


class Insights(_Body):
    song_id: str
    summary: str
    recommendations: list[Recommendation] = Field(min_length=1)


class TrainingJob(_Body):
    job_id: str
    status: str


class ModelMetrics(_Body):
    model: str
    accuracy: float = Field(ge=0, le=1)
    f1: float = Field(ge=0, le=1)
    weight: float = Field(ge=0, le=1)


class TrainingStatus(_Body):
    job_id: str
    status: str
    rows: int = Field(ge=0)
    models: list[ModelMetrics] = []
    error: str | None = None


# -- results -------------------------------------------------------------------------------
def store_result(key: str, task_id: str, body: dict[str, Any]) -> None:
    from domains.hss_workflow.db import DATABASE

    with closing(DATABASE.connect()) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO service_results (run_key, task_id, body) VALUES (%s, %s, %s)"
            " ON CONFLICT (run_key, task_id) DO UPDATE SET body = EXCLUDED.body"
            " WHERE service_results.body IS DISTINCT FROM EXCLUDED.body",
            (key, task_id, json.dumps(body)))
        conn.commit()


def load_result(value: dict[str, Any]) -> dict[str, Any]:
    """A service answer from its XCom: the answer itself, or the stored one it refers to."""
    if not (isinstance(value, dict) and set(value) == {"ref", "size"}):
        return value
    from domains.hss_workflow.db import DATABASE

    with closing(DATABASE.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT body FROM service_results WHERE run_key = %s AND task_id = %s",
                    (value["ref"]["run_key"], value["ref"]["task_id"]))
        row = cur.fetchone()
    if row is None:
        raise LookupError(f"stored result {value['ref']} is gone")
    return row[0]


def resolve_refs(value: Any) -> Any:
    """``value`` with every stored-result reference inside it replaced by the stored answer."""
    if isinstance(value, dict):
        if set(value) == {"ref", "size"}:
            return load_result(value)
        return {k: resolve_refs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_refs(v) for v in value]
    return value


# -- operators -----------------------------------------------------------------------------
class WorkflowServiceOperator(LineageMixin, BaseOperator):
    """POST ``payload`` to ``endpoint`` of the service behind ``conn_id``; see the module docstring.
    OpenLineage: the endpoint is the task's input (the analysis it answers with)."""

    template_fields = ("payload",)
    template_fields_renderers: ClassVar[dict[str, str]] = {"payload": "json"}
    conn_id: ClassVar[str] = ""
    endpoint: ClassVar[str] = ""
    response_model: ClassVar[type[BaseModel]] = _Body

    def __init__(self, *, payload: dict[str, Any], conn_id: str | None = None,
                 max_xcom_bytes: int = MAX_XCOM_BYTES, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.payload = payload
        if conn_id:
            self.conn_id = conn_id
        self.max_xcom_bytes = max_xcom_bytes

    def hook(self):
        from shared.http import JsonApiHook

        return JsonApiHook(self.conn_id)

    def call(self) -> dict[str, Any]:
        hook = self.hook()
        body = hook.post_json(self.endpoint, resolve_refs(self.payload), model=self.response_model)
        record_http_io(hook, inputs=[self.endpoint])
        return body.model_dump(mode="json")

    def execute(self, context) -> dict[str, Any]:
        return self.to_xcom(context, self.call())

    def to_xcom(self, context, result: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(result))
        if size <= self.max_xcom_bytes:
            return result
        key = run_key(context)
        store_result(key, self.task_id, result)
        from domains.hss_workflow.db import DATABASE

        record_postgres_io(DATABASE.hook(), outputs=["service_results"])
        self.log.info("%s answered %d bytes: stored in service_results, XCom holds the reference", self.endpoint, size)
        return {"ref": {"run_key": key, "task_id": self.task_id}, "size": size}


class AudioAnalysisOperator(WorkflowServiceOperator):
    """``POST /analyze/comprehensive`` ``{"song_id", "song_path"}``: tempo, energy, spectral features."""

    conn_id = "hss_workflow_audio"
    endpoint = "/analyze/comprehensive"
    response_model = AudioAnalysis


class ContentAnalysisOperator(WorkflowServiceOperator):
    """``POST /analyze/lyrics`` ``{"song_id", "song_path"}``: sentiment and text features."""

    conn_id = "hss_workflow_content"
    endpoint = "/analyze/lyrics"
    response_model = LyricsAnalysis


class MLPredictionOperator(WorkflowServiceOperator):
    """``POST /predict/single`` ``{"song_id", "audio_features", "content_features"}``: hit probability."""

    conn_id = "hss_workflow_ml_prediction"
    endpoint = "/predict/single"
    response_model = HitPrediction


class IntelligenceOperator(WorkflowServiceOperator):
    """``POST /insights/generate`` ``{"song_id", "audio", "content", "prediction"}``: recommendations."""

    conn_id = "hss_workflow_intelligence"
    endpoint = "/insights/generate"
    response_model = Insights


class MLTrainingOperator(WorkflowServiceOperator):
    """``POST /train/smart_ensemble`` submits a training job (202 ``{"job_id", "status"}``), then
    the task defers to ``shared.triggers.HttpPollTrigger`` on ``GET /train/status/{job_id}``
    (the looklyy review wait's pattern): no worker slot is held between polls. The job's final
    status (``completed``: metrics of the five models) is validated and returned; ``failed``
    fails the task with the service's error. ``timeout_seconds`` (default: Variable
    ``hss_workflow_training_timeout_seconds``, 6 h) bounds the wait (the trigger's deadline, and
    the deferral's timeout a margin later as a backstop); ``poll_seconds`` (Variable
    ``hss_workflow_training_poll_seconds``, 30 s) is the status poll interval.
    ``execute_complete`` does not rely on ``self`` keeping values set in ``execute`` (dag.test
    and a resumed task build a fresh operator): what it needs is in the event."""

    conn_id = "hss_workflow_ml_training"
    endpoint = "/train/smart_ensemble"
    status_endpoint = "/train/status/{job_id}"
    response_model = TrainingJob

    def __init__(self, *, timeout_seconds: float | None = None, poll_seconds: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timeout_seconds, self.poll_seconds = timeout_seconds, poll_seconds

    def execute(self, context) -> None:
        from airflow.sdk import Variable

        self.timeout_seconds = self.timeout_seconds or float(
            Variable.get("hss_workflow_training_timeout_seconds", default=str(6 * 3600)))
        self.poll_seconds = self.poll_seconds or float(Variable.get("hss_workflow_training_poll_seconds", default="30"))
        job = self.call()
        started = time.time()
        self.log.info("Training job %s submitted (%s); waiting on the triggerer", job["job_id"], job["status"])
        self.defer(
            trigger=HttpPollTrigger(
                conn_id=self.conn_id, endpoint=self.status_endpoint.format(job_id=job["job_id"]),
                done_field="status", done_values=["completed", "failed"],
                deadline=started + self.timeout_seconds, poll_seconds=self.poll_seconds, started=started),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout_seconds + 600),
        )

    def execute_complete(self, context, event: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowException, AirflowFailException

        from shared.http import validate

        if event["status"] == "error":
            raise AirflowFailException(f"training status: {event['message']}")
        if event["status"] == "timed_out":
            raise AirflowException(f"training not finished by its deadline"
                                   f" ({event['polls']} polls; last error: {event.get('last_error')})")
        status = validate(event["body"], TrainingStatus, f"GET {self.status_endpoint}")
        # Lineage of the resumed task (a new process): the training job it submitted.
        record_http_io(self.hook(), outputs=[self.endpoint])
        if status.status == "failed":
            raise AirflowFailException(f"training job {status.job_id} failed: {status.error}")
        return self.to_xcom(context, status.model_dump(mode="json"))


class DropFolderSensor(LineageMixin, FileSensor):
    """The provider's ``FileSensor`` (deferrable or not), reporting what it waited for: the folder
    its connection names (``fs`` connection, ``path`` extra), the same dataset the task that then
    picks a file from it reads (``domains.hss_workflow.drop``)."""

    def execute(self, context):
        super().execute(context)  # returns once a file is there; defers (TaskDeferred) otherwise
        self.record_watched_folder()

    def execute_complete(self, context, event=None):
        super().execute_complete(context, event)  # fails when the trigger found nothing
        self.record_watched_folder()

    def record_watched_folder(self) -> None:
        from pathlib import Path

        from airflow.providers.standard.hooks.filesystem import FSHook

        from shared.lineage import file_uri, record_io

        hook = FSHook(self.fs_conn_id)
        record_io(hook, inputs=[file_uri(Path(hook.get_path()).resolve())])
