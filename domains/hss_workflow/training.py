"""ml_training_smart_ensemble's steps: config check, dataset processing, batch fan-out, aggregation.

The training CSV (the seed's ``filtered_audio_only_*.csv``) has a ``song_id`` column, an
``is_hit`` label (0/1) and numeric feature columns (every other column). A row with a
missing id, a label other than 0/1 or a non-numeric feature is rejected and counted; more
than ``MAX_REJECTED_SHARE`` rejected fails the run (the file is broken, not a few rows).
The rows are stored in ``training_rows`` with their batch index, so the fan-out (and a retry
of it) reads the same batches; XComs hold only counts.
"""

from __future__ import annotations

import csv
import json
import math
from contextlib import closing
from typing import Any

from domains.hss_workflow.conf import ConfError, confine
from domains.hss_workflow.db import DATABASE
from shared.db import bulk_upsert
from shared.lineage import file_uri, record_io, record_postgres_io

BATCHES_PATH = "/train/smart_ensemble/batches"
MAX_REJECTED_SHARE = 0.05


def fail(message: str):
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(message)


def validate_training_config(params: dict[str, Any]) -> dict[str, Any]:
    """The conf again on the worker (schema + the file inside the training root), before any call."""
    try:
        path = confine("dataset_path", params.get("dataset_path"))
    except ConfError as exc:
        raise fail(str(exc)) from None
    batch_size, in_flight = params.get("batch_size", 400), params.get("max_concurrent_requests", 50)
    for name, value, top in (("batch_size", batch_size, 5000), ("max_concurrent_requests", in_flight, 200)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
            raise fail(f"Invalid input for param {name}: {value!r} is not an integer in 1..{top}")
    from shared.lineage import file_uri, record_io

    record_io(path, inputs=[file_uri(path)])  # the training file it checked, read by the next task
    return {"dataset_path": str(path), "training_id": str(params["training_id"]), "batch_size": batch_size,
            "max_concurrent_requests": in_flight}


def _parse(row: dict[str, str]) -> tuple[str, int, dict[str, float]] | None:
    song_id = (row.get("song_id") or "").strip()
    label = (row.get("is_hit") or "").strip()
    if not song_id or label not in ("0", "1"):
        return None
    features = {}
    for k, v in row.items():
        if k in ("song_id", "is_hit") or k is None:
            continue
        try:
            value = float(v)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(value):
            return None
        features[k] = value
    return song_id, int(label), features


def process_dataset(config: dict[str, Any]) -> dict[str, Any]:
    """Read the CSV into ``training_rows`` (batch index = row index // batch_size); idempotent."""
    training_id, size = config["training_id"], config["batch_size"]
    rows, rejected = [], 0
    with open(config["dataset_path"], newline="") as f:
        reader = csv.DictReader(f)
        missing = {"song_id", "is_hit"} - set(reader.fieldnames or [])
        if missing:
            raise fail(f"{config['dataset_path']}: missing column(s) {', '.join(sorted(missing))}")
        for raw in reader:
            parsed = _parse(raw)
            if parsed is None:
                rejected += 1
                continue
            i = len(rows)
            rows.append((training_id, i, i // size, parsed[0], parsed[1], json.dumps(parsed[2])))
    total = len(rows) + rejected
    if not rows or rejected > MAX_REJECTED_SHARE * total:
        raise fail(f"{config['dataset_path']}: {rejected} of {total} rows rejected"
                   f" (more than {MAX_REJECTED_SHARE:.0%}): missing song_id, is_hit not 0/1 or a non-numeric feature")
    batches = math.ceil(len(rows) / size)
    with closing(DATABASE.connect()) as conn:
        with conn.cursor() as cur:  # a rerun with another batch size must not keep old rows
            cur.execute("DELETE FROM training_rows WHERE training_id = %s AND row_index >= %s", (training_id, len(rows)))
            cur.execute(
                "INSERT INTO training_runs (training_id, dataset_path, rows, rejected, batches) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (training_id) DO UPDATE SET dataset_path = EXCLUDED.dataset_path, rows = EXCLUDED.rows,"
                " rejected = EXCLUDED.rejected, batches = EXCLUDED.batches",
                (training_id, config["dataset_path"], len(rows), rejected, batches))
        bulk_upsert(conn, "training_rows", ["training_id", "row_index", "batch_index", "song_id", "is_hit", "features"],
                    rows, key=["training_id", "row_index"])
    hook = DATABASE.hook()
    record_io(hook, inputs=[file_uri(config["dataset_path"])])
    record_postgres_io(hook, outputs=["training_runs", "training_rows"])
    return {"training_id": training_id, "rows": len(rows), "rejected": rejected, "batches": batches}


def load_batches(training_id: str) -> list[bytes]:
    """Each batch's request body, ``{"training_id", "batch_index", "rows"}``, as JSON text built
    by PostgreSQL in batch order: the fan-out sends it as is (no row is decoded or encoded here)."""
    with closing(DATABASE.connect()) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT json_build_object('training_id', training_id, 'batch_index', batch_index, 'rows',"
            " json_agg(json_build_object('song_id', song_id, 'is_hit', is_hit, 'features', features)"
            " ORDER BY row_index))::text FROM training_rows WHERE training_id = %s"
            " GROUP BY training_id, batch_index ORDER BY batch_index", (training_id,))
        return [row[0].encode() for row in cur]


def send_batches(config: dict[str, Any], conn_id: str = "hss_workflow_ml_training") -> dict[str, Any]:
    """All batches to the training service, ``max_concurrent_requests`` in flight (one task)."""
    from domains.hss_workflow.fanout import FanOutError, post_batches
    from shared.runs import idempotency_key

    bodies = load_batches(config["training_id"])
    try:
        stats = post_batches(conn_id, BATCHES_PATH, bodies, config["max_concurrent_requests"],
                             key_for=lambda i: idempotency_key(suffix=f"batch {i}"))
    except FanOutError as exc:
        raise fail(str(exc)) from None
    record_postgres_io(DATABASE.hook(), inputs=["training_rows"])
    return {"training_id": config["training_id"], **stats.summary()}


def aggregate_results(config: dict[str, Any], dataset: dict[str, Any], sent: dict[str, Any],
                      status: dict[str, Any]) -> dict[str, Any]:
    """The five models' metrics into ``training_model_metrics``, then the summary mail."""
    from shared.notifications import send_summary

    training_id = config["training_id"]
    models = status["models"]
    with closing(DATABASE.connect()) as conn:
        with conn.cursor() as cur:
            cur.execute("UPDATE training_runs SET job_id = %s, finished_at = coalesce(finished_at, now())"
                        " WHERE training_id = %s", (status["job_id"], training_id))
        bulk_upsert(conn, "training_model_metrics", ["training_id", "model", "accuracy", "f1", "weight"],
                    [(training_id, m["model"], m["accuracy"], m["f1"], m["weight"]) for m in models],
                    key=["training_id", "model"])
    record_postgres_io(DATABASE.hook(), outputs=["training_runs", "training_model_metrics"])
    best = max(models, key=lambda m: m["f1"])
    facts = {"training id": training_id, "dataset": config["dataset_path"], "rows trained": status["rows"],
             "rows rejected": dataset["rejected"],
             "batches sent": f"{sent['batches']} ({sent['throttled']} throttled, peak {sent['peak_in_flight']} in flight)",
             "best model": f"{best['model']} (F1 {best['f1']})"}
    to = send_summary("hss_workflow", f"smart ensemble training {training_id}", facts,
                      {"models": [{k: m[k] for k in ("model", "accuracy", "f1", "weight")} for m in models]})
    return {"training_id": training_id, "best_model": best["model"], "models": len(models), "mailed_to": to}
