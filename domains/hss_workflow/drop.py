"""daily_model_training's choice of the next training file from the drop folder.

The drop folder is ``incoming/`` under the training root (connection
``hss_workflow_training_drop``, type ``fs``, whose ``path`` extra names it). A file counts as
trained on once it has been handed to ``ml_training_smart_ensemble``: recorded in
``dataset_files`` by the SHA-256 of its content, so the same data under another name, or a
file seen again the next day, is not trained again; new content under an old name is new.
The training id is derived from the file (name and content hash), and the triggered run's id
from the training id, so a retried hand-over starts no second run.
"""

from __future__ import annotations

import hashlib
import re
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


def pick_new_dataset(drop_folder: str, run: str) -> dict[str, Any]:
    """The oldest CSV in the drop folder not trained on yet, recorded as handed over by ``run``
    (a retry of the same run gets the same file again); skip if none."""
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
        cur.execute("SELECT dataset_path, training_id, sha256 FROM dataset_files WHERE claimed_by = %s", (run,))
        mine = cur.fetchone()
        if mine is not None:
            return {"dataset_path": mine[0], "training_id": mine[1], "sha256": mine[2]}
        for path in files:
            digest = sha256_of(path)
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem)[:80]
            training_id = f"daily_{stem}_{digest[:12]}"
            cur.execute("INSERT INTO dataset_files (sha256, dataset_path, training_id, claimed_by)"
                        " VALUES (%s, %s, %s, %s) ON CONFLICT (sha256) DO NOTHING RETURNING training_id",
                        (digest, str(path.relative_to(root)), training_id, run))
            claimed = cur.fetchone()
            if claimed is None:  # already handed over
                continue
            conn.commit()
            return {"dataset_path": str(path.relative_to(root)), "training_id": training_id, "sha256": digest}
    raise AirflowSkipException(f"no new training file in {folder} ({len(files)} already trained on)")
