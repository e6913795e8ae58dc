"""The ecommerce_ml lake: one ``airflow.sdk.ObjectStoragePath`` whose base comes from the
connection ``ecommerce_ml_lake`` (its extra ``base_url``): ``file://.../lake`` on the local
platform and in tests, ``s3://bucket/prefix`` in production (the connection then also carries
the AWS credentials the Amazon provider's filesystem reads). Every path below is built from
that one base, so the same code runs on both.

Layout (see README.md for the file formats)::

    raw/hm/dt=YYYY-MM-DD/articles.csv               H&M drops, column for column
    raw/hm/dt=YYYY-MM-DD/customers.csv
    raw/hm/dt=YYYY-MM-DD/transactions_train.csv     that day's transactions
    raw/hm/images/<first 3 digits>/<article_id>.jpg
    raw/reviews/dt=YYYY-MM-DD/reviews.csv
    raw/events/dt=YYYY-MM-DD/slot=HHMM/part-<arrival YYYYMMDDHHMM>.csv   events by their ts's 15-minute slot
    curated/<dataset>/v=<version>/<name>-<content sha256[:16]>.<ext>

Curated files are never overwritten in place: the file name carries its content hash, so a
rerun with the same inputs finds the same file already there (nothing written) and a rerun
with different inputs adds a new file beside the old one; the registry row
(:mod:`domains.ecommerce_ml.registry`) points at the current one.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

LAKE_CONN_ID = "ecommerce_ml_lake"
HM_FILES = ("articles.csv", "customers.csv", "transactions_train.csv")


def lake_root(conn_id: str = LAKE_CONN_ID) -> ObjectStoragePath:
    """The lake's base path, from the connection's extra ``base_url``."""
    from airflow.sdk import BaseHook, ObjectStoragePath

    conn = BaseHook.get_connection(conn_id)
    base = (conn.extra_dejson or {}).get("base_url")
    if not base:
        raise ValueError(f"connection {conn_id!r} has no extra 'base_url' (e.g. file:///data/lake or s3://bucket/lake)")
    return ObjectStoragePath(base.rstrip("/") + "/", conn_id=conn_id)


def day_str(day: date | datetime | str) -> str:
    return day if isinstance(day, str) else day.strftime("%Y-%m-%d")


def hm_root(root: ObjectStoragePath) -> ObjectStoragePath:
    """The H&M drops' folder: a ``dt=<day>`` folder per day, and ``images``."""
    return root / "raw" / "hm"


def hm_day(root: ObjectStoragePath, day: date | str) -> ObjectStoragePath:
    return hm_root(root) / f"dt={day_str(day)}"


def images_dir(root: ObjectStoragePath) -> ObjectStoragePath:
    return hm_root(root) / "images"


def image_path(root: ObjectStoragePath, article_id: str) -> ObjectStoragePath:
    """``images/<first 3 digits>/<article_id>.jpg``, as H&M publishes them."""
    return images_dir(root) / article_id[:3] / f"{article_id}.jpg"


def reviews_file(root: ObjectStoragePath, day: date | str) -> ObjectStoragePath:
    return root / "raw" / "reviews" / f"dt={day_str(day)}" / "reviews.csv"


def events_slot_dir(root: ObjectStoragePath, slot_start: datetime) -> ObjectStoragePath:
    return root / "raw" / "events" / f"dt={slot_start:%Y-%m-%d}" / f"slot={slot_start:%H%M}"


def curated_dir(root: ObjectStoragePath, dataset: str, version: str) -> ObjectStoragePath:
    return root / "curated" / dataset / f"v={version}"


def url(path: ObjectStoragePath) -> str:
    """The path's URL without the connection id (``file:///...``, ``s3://bucket/key``): how
    the registry and error messages name it, the same whichever connection reached it."""
    protocol = path.protocol or "file"
    return f"{protocol}://{path.path}"


def local_path(path: ObjectStoragePath) -> str | None:
    """The OS path of a ``file://`` lake path (DuckDB then reads it directly), else None."""
    return path.path if path.protocol in ("file", "local", "") else None


def record_reads(*paths: ObjectStoragePath) -> None:
    """Report lake paths a task read (hook lineage, ``shared.lineage``), named as Airflow's
    ``ObjectStoragePath`` names the files it reads and writes itself (``publish``'s outputs), so a
    file written by one task and read by the next is one dataset."""
    from shared.lineage import record_io

    for path in paths:
        record_io(path, inputs=[str(path)])


@contextmanager
def readable(path: ObjectStoragePath):
    """A local file name for ``path``: itself on a local lake, else a temporary copy (streamed).
    Either way the read is reported as the task's input (:func:`record_reads`)."""
    record_reads(path)
    local = local_path(path)
    if local is not None:
        yield local
        return
    with tempfile.TemporaryDirectory(prefix="ecommerce-ml-") as tmp:
        target = Path(tmp) / path.name
        with path.open("rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        yield str(target)


def sha256_file(filename: str | Path) -> str:
    digest = hashlib.sha256()
    with open(filename, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def publish(local_file: str | Path, folder: ObjectStoragePath, stem: str, ext: str) -> tuple[ObjectStoragePath, bool]:
    """Put ``local_file`` into ``folder`` as ``<stem>-<sha[:16]>.<ext>``, never overwriting.

    Returns (path, written): ``written`` is False when the same content was already there.
    """
    from shared.lineage import record_io

    sha = sha256_file(local_file)
    dest = folder / f"{stem}-{sha[:16]}.{ext}"
    record_io(dest, outputs=[str(dest)])  # the file the task produces (not its temporary name)
    if dest.exists():
        return dest, False
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{dest.name}.partial"
    # through the file system itself: ObjectStoragePath.open would report the temporary name
    try:
        with open(local_file, "rb") as src, partial.fs.open(partial.path, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except BaseException:
        # a full disk (ENOSPC), a file size limit (EFBIG), a lost connection: no half-written
        # file is left behind (the task fails saying why; a rerun writes the file whole)
        if partial.exists():
            partial.unlink()
        raise
    partial.rename(dest)
    return dest, True


def ensure_parent(path: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
