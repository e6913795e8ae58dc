"""daily_model_training's choice of the next training file from the drop folder.

The drop folder is ``incoming/`` under the training root (connection
``hss_workflow_training_drop``, type ``fs``, whose ``path`` extra names it). Files are known
by the SHA-256 of their content (``dataset_files``), so the same data under another name, or
a file seen again the next day, is not new; new content under an old name is.

A file counts as trained on only once its ``ml_training_smart_ensemble`` run succeeded. Each
daily run first looks up the runs it handed files to (``status`` ``handed``): success marks the
file ``trained``; a failed run, or a hand-over that never started its run, marks it
``failed``, and a failed file is handed over again (``attempt`` + 1). The training id is
derived from the file (name and content hash); the triggered run's id from the training id
and the attempt, so a retried hand-over starts no second run and a new attempt gets a run of
its own.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from domains.hss_workflow.conf import allowed_root
from domains.hss_workflow.db import DATABASE

DROP_CONN = "hss_workflow_training_drop"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


TRAINING_DAG = "ml_training_smart_ensemble"


def training_run_id(training_id: str, attempt: int) -> str:
    """The triggered training run's id: the first attempt keeps the plain form."""
    return f"daily__{training_id}" if attempt == 1 else f"daily__{training_id}__attempt{attempt}"


def refresh_outcomes(cur, run: str, run_state: Callable[[str], str | None]) -> None:
    """Record the outcome of every training run handed a file by an earlier daily run."""
    cur.execute("SELECT sha256, training_id, attempt FROM dataset_files WHERE status = 'handed' AND claimed_by <> %s",
                (run,))
    for digest, training_id, attempt in cur.fetchall():
        state = run_state(training_run_id(training_id, attempt))
        if state in ("success", "failed", None):  # None: the hand-over never started its run
            cur.execute("UPDATE dataset_files SET status = %s WHERE sha256 = %s",
                        ("trained" if state == "success" else "failed", digest))


def pick_new_dataset(drop_folder: str, run: str, run_state: Callable[[str], str | None]) -> dict[str, Any]:
    """The oldest CSV in the drop folder not trained on yet, recorded as handed over by ``run``
    (a retry of the same run gets the same file again); skip if none. ``run_state`` gives a
    training run's state by run id (None: no such run)."""
    from airflow.sdk.exceptions import AirflowSkipException

    root = allowed_root("dataset_path").resolve()
    folder = Path(drop_folder).resolve()
    if not folder.is_relative_to(root):
        raise ValueError(f"drop folder {folder} is outside the training root {root}")
    from shared.lineage import file_uri, record_io, record_postgres_io

    hook = DATABASE.hook()
    record_io(hook, inputs=[file_uri(folder)])
    record_postgres_io(hook, outputs=["dataset_files"])
    files = sorted((p for p in folder.glob("*.csv") if p.is_file()), key=lambda p: (p.stat().st_mtime, p.name))
    with closing(DATABASE.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT dataset_path, training_id, sha256, attempt FROM dataset_files WHERE claimed_by = %s",
                    (run,))
        mine = cur.fetchone()
        if mine is not None:
            return picked(*mine)
        refresh_outcomes(cur, run, run_state)
        conn.commit()
        for path in files:
            digest = sha256_of(path)
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem)[:80]
            training_id = f"daily_{stem}_{digest[:12]}"
            relative = str(path.relative_to(root))
            # new content, or content whose last training failed: hand it over (again)
            cur.execute("INSERT INTO dataset_files (sha256, dataset_path, training_id, claimed_by)"
                        " VALUES (%s, %s, %s, %s) ON CONFLICT (sha256) DO UPDATE SET"
                        " attempt = dataset_files.attempt + 1, status = 'handed', dataset_path = EXCLUDED.dataset_path,"
                        " claimed_by = EXCLUDED.claimed_by, handed_at = now() WHERE dataset_files.status = 'failed'"
                        " RETURNING training_id, attempt", (digest, relative, training_id, run))
            claimed = cur.fetchone()
            if claimed is None:  # trained on, or its training still running
                continue
            conn.commit()
            return picked(relative, claimed[0], digest, claimed[1])
    raise AirflowSkipException(f"no new training file in {folder} ({len(files)} trained on or in training)")


def picked(dataset_path: str, training_id: str, digest: str, attempt: int) -> dict[str, Any]:
    return {"dataset_path": dataset_path, "training_id": training_id, "sha256": digest, "attempt": attempt,
            "training_run_id": training_run_id(training_id, attempt)}
