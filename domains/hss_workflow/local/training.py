"""Stand-in for the ML training service (``hss_workflow_ml_training``; development and tests).

Contract (header ``X-API-Key``; POSTs honour ``Idempotency-Key``):

- ``POST /train/smart_ensemble/batches`` ``{"training_id", "batch_index", "rows": [{"song_id",
  "is_hit": 0|1, "features": {name: number}}]}`` (at most 5000 rows) -> ``{"training_id",
  "batch_index", "accepted": n}``. Storing a batch index again replaces it (idempotent). At
  most ``max_concurrent`` batch requests are served at once: beyond that the service answers
  ``429`` with ``Retry-After`` (the concurrency limit the client must honour). ``latency``
  seconds are spent on every batch (a fixed service time, for the benchmark).
- ``POST /train/smart_ensemble`` ``{"training_id"}`` -> ``202 {"job_id", "status": "running"}``:
  trains the five-model ensemble on the batches received, asynchronously; at most
  ``max_jobs`` jobs run at once (``429`` beyond). 404 when no batch was received.
- ``GET /train/status/{job_id}`` -> ``{"job_id", "training_id", "status": "running" |
  "completed" | "failed", "rows", "models": [{"model", "accuracy", "f1", "weight"}], "error"}``.
  A job fails (``status`` ``failed``, ``error`` says why) when its rows hold one class only.

The five models are real and small (numpy): logistic regression, nearest centroid, a
decision stump, Gaussian naive Bayes and 5-nearest-neighbours, trained on 80% of the rows
(by a hash of ``song_id``) and scored on the other 20%; an ensemble weight is each model's
share of the summed F1.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import uuid
from typing import Annotated, Any, NamedTuple

from fastapi import Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from devplatform.standin import create_app
from domains.hss_workflow.local.services import DEV_KEY, Idempotent

MODELS = ("logistic_regression", "nearest_centroid", "decision_stump", "gaussian_nb", "knn5")


class Row(TypedDict):
    song_id: str
    is_hit: Annotated[int, Field(ge=0, le=1)]
    features: dict[str, float]


class Batch(TypedDict):
    training_id: str
    batch_index: Annotated[int, Field(ge=0)]
    rows: Annotated[list[Row], Field(max_length=5000)]


# Validated straight from the request's bytes into plain dicts (pydantic-core parses the JSON):
# about a third of the CPU of a model per row plus model_dump, which made the stand-in's own
# parsing, serial on its event loop, most of a fan-out's time (benchmarks/hss_fanout.py).
BATCH = TypeAdapter(Batch)


class StoredBatch(NamedTuple):
    """A received batch as the service keeps it: its row count and its JSON body, validated.

    Bytes, not the parsed rows: the service holds no long-lived row objects (20,000 rows as
    dicts are some 60,000) for full garbage collections to walk. The stand-in paused 130-170 ms
    on about every other fan-out wave (benchmarks/hss_fanout.py); what removed the pauses was
    this, the parsed rows dropped before the service wait, and the import-time heap frozen
    (``devplatform.standin.serve``) together: bytes alone did not. The job parses the bodies
    when it trains.
    """

    rows: int
    body: bytes

    def parsed_rows(self) -> list[dict[str, Any]]:
        return BATCH.validate_json(self.body)["rows"]


class TrainRequest(BaseModel):
    training_id: str


def _metrics(pred, y) -> tuple[float, float]:
    import numpy as np

    tp = float(np.sum((pred == 1) & (y == 1)))
    fp = float(np.sum((pred == 1) & (y == 0)))
    fn = float(np.sum((pred == 0) & (y == 1)))
    acc = float(np.mean(pred == y)) if len(y) else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return round(acc, 4), round(f1, 4)


def train_ensemble(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The five models' holdout metrics and ensemble weights (see the module docstring)."""
    import numpy as np

    names = sorted({k for r in rows for k in r["features"]})
    x = np.array([[r["features"].get(n, 0.0) for n in names] for r in rows], dtype=float)
    y = np.array([r["is_hit"] for r in rows], dtype=int)
    test = np.array([int(hashlib.sha1(r["song_id"].encode()).hexdigest(), 16) % 5 == 0 for r in rows])
    if test.all() or not test.any():
        test = np.arange(len(rows)) % 5 == 0
    mu, sd = x[~test].mean(axis=0), x[~test].std(axis=0) + 1e-9
    z = (x - mu) / sd
    xtr, ytr, xte, yte = z[~test], y[~test], z[test], y[test]
    preds: dict[str, Any] = {}
    w = np.zeros(z.shape[1])
    b = 0.0
    for _ in range(300):  # logistic regression, gradient descent
        p = 1 / (1 + np.exp(-(xtr @ w + b)))
        w -= 0.5 * xtr.T @ (p - ytr) / len(ytr)
        b -= 0.5 * float(np.mean(p - ytr))
    preds["logistic_regression"] = (1 / (1 + np.exp(-(xte @ w + b))) >= 0.5).astype(int)
    c1 = xtr[ytr == 1].mean(axis=0) if (ytr == 1).any() else np.zeros(z.shape[1])
    c0 = xtr[ytr == 0].mean(axis=0) if (ytr == 0).any() else np.zeros(z.shape[1])
    preds["nearest_centroid"] = (np.linalg.norm(xte - c1, axis=1) < np.linalg.norm(xte - c0, axis=1)).astype(int)
    best = (0.0, 0, 0.0, 1)
    for j in range(z.shape[1]):  # decision stump: the best single split
        for t in np.quantile(xtr[:, j], [0.25, 0.5, 0.75]):
            for sign in (1, -1):
                acc = float(np.mean(((sign * (xtr[:, j] - t)) > 0).astype(int) == ytr))
                if acc > best[0]:
                    best = (acc, j, t, sign)
    _, j, t, sign = best
    preds["decision_stump"] = ((sign * (xte[:, j] - t)) > 0).astype(int)
    prior1 = float(np.mean(ytr)) if len(ytr) else 0.5
    logp = []
    for cls, prior in ((0, 1 - prior1), (1, prior1)):  # Gaussian naive Bayes
        xs = xtr[ytr == cls] if (ytr == cls).any() else xtr
        m, v = xs.mean(axis=0), xs.var(axis=0) + 1e-3
        logp.append(np.log(max(prior, 1e-9)) - 0.5 * np.sum(np.log(v) + (xte - m) ** 2 / v, axis=1))
    preds["gaussian_nb"] = (logp[1] > logp[0]).astype(int)
    d = ((xte[:, None, :] - xtr[None, :, :]) ** 2).sum(axis=2) if len(xte) * len(xtr) <= 25_000_000 else None
    if d is None:  # too big for one matrix: chunks
        near = np.vstack([np.argsort(((xte[i:i + 256, None, :] - xtr[None, :, :]) ** 2).sum(axis=2), axis=1)[:, :5]
                          for i in range(0, len(xte), 256)])
    else:
        near = np.argsort(d, axis=1)[:, :5]
    preds["knn5"] = (ytr[near].mean(axis=1) >= 0.5).astype(int)
    scored = [(name, *_metrics(preds[name], yte)) for name in MODELS]
    total = sum(f1 for _, _, f1 in scored) or 1.0
    return [{"model": n, "accuracy": acc, "f1": f1, "weight": round(f1 / total if sum(s[2] for s in scored)
                                                                     else 1 / len(MODELS), 4)}
            for n, acc, f1 in scored]


def create_training_app(api_key: str = DEV_KEY, max_concurrent: int = 200, max_jobs: int = 2,
                        latency: float = 0.0, train_seconds: float = 0.5):
    app = create_app("hss-ml-training")
    idem = Idempotent(app)
    lock = threading.Lock()
    batches: dict[str, dict[int, StoredBatch]] = {}
    jobs: dict[str, dict[str, Any]] = {}
    state = {"in_flight": 0, "peak": 0, "running_jobs": 0}
    app.state.training = {"batches": batches, "jobs": jobs, "load": state}

    def check(key: str | None) -> None:
        if key != api_key:
            raise HTTPException(401, "missing or wrong X-API-Key")

    def busy(what: str) -> JSONResponse:
        return JSONResponse({"detail": f"{what}: concurrency limit reached, retry later"}, status_code=429,
                            headers={"Retry-After": "1"})

    @app.get("/health")
    def health():
        return {"status": "ok", "service": "hss-ml-training"}

    @app.post("/train/smart_ensemble/batches")
    async def put_batch(request: Request, x_api_key: str | None = Header(None)):
        check(x_api_key)
        with lock:
            if state["in_flight"] >= max_concurrent:
                return busy(f"{max_concurrent} batch requests in flight")
            state["in_flight"] += 1
            state["peak"] = max(state["peak"], state["in_flight"])
        try:
            body = await request.body()
            try:
                batch = BATCH.validate_json(body)
            except ValidationError as exc:  # FastAPI's own 422 answer
                raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None
            training_id, index, rows = batch["training_id"], batch["batch_index"], len(batch["rows"])
            del batch  # the parsed rows die young, before the wait (see StoredBatch)
            if latency:
                await asyncio.sleep(latency)

            def store():
                with lock:
                    batches.setdefault(training_id, {})[index] = StoredBatch(rows, body)
                return {"training_id": training_id, "batch_index": index, "accepted": rows}

            return idem.run(request, store)
        finally:
            with lock:
                state["in_flight"] -= 1

    def run_job(job_id: str, stored: list[StoredBatch]) -> None:
        job = jobs[job_id]
        try:
            time.sleep(train_seconds)
            rows = [r for b in stored for r in b.parsed_rows()]
            if len({r["is_hit"] for r in rows}) < 2:
                raise ValueError("the training set holds one class only (is_hit all 0 or all 1): nothing to learn")
            job["models"] = train_ensemble(rows)
            job["status"] = "completed"
        except Exception as exc:  # the job's failure is its status, as the real service reports it
            job.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            with lock:
                state["running_jobs"] -= 1

    @app.post("/train/smart_ensemble", status_code=202)
    def submit(req: TrainRequest, request: Request, x_api_key: str | None = Header(None)):
        check(x_api_key)
        key = request.headers.get("idempotency-key")
        with lock:
            if key and key in idem.answers:
                return idem.answers[key]
            received = batches.get(req.training_id)
            if not received:
                raise HTTPException(404, f"training_id {req.training_id}: no batches received")
            if state["running_jobs"] >= max_jobs:
                return busy(f"{max_jobs} training jobs running")
            state["running_jobs"] += 1
            stored = [received[i] for i in sorted(received)]
            job_id = uuid.uuid4().hex
            jobs[job_id] = {"job_id": job_id, "training_id": req.training_id, "status": "running",
                            "rows": sum(b.rows for b in stored),
                            "models": [], "error": None}
            answer = {"job_id": job_id, "status": "running"}
            if key:
                idem.answers[key] = answer
            app.state.work["/train/smart_ensemble"] += 1
        threading.Thread(target=run_job, args=(job_id, stored), daemon=True).start()
        return answer

    @app.get("/train/status/{job_id}")
    def status(job_id: str, x_api_key: str | None = Header(None)):
        check(x_api_key)
        if job_id not in jobs:
            raise HTTPException(404, f"no training job {job_id}")
        return jobs[job_id]

    return app
