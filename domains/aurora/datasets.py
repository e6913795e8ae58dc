"""A run's intermediate data (ml_training_pipeline's snapshot and feature sets), kept in
PostgreSQL between tasks (``training_datasets``), so any worker can run the next task.

A large frame is stored in parts (:func:`save_parts`, :func:`load_parts`): one part written (or
read) and dropped before the next, so memory holds one part whatever the frame's size.

Frames are stored as compressed numpy archives without pickles: numbers as they are,
timestamps as UTC nanoseconds, dates as days, text as unicode arrays (missing text: None).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd

KEEP_DAYS = 7  # older runs' datasets are deleted when a new snapshot is taken


def frame_to_bytes(frame: pd.DataFrame) -> bytes:
    arrays: dict[str, np.ndarray] = {}
    meta = []
    for i, (name, col) in enumerate(frame.items()):
        key = f"c{i}"
        if isinstance(col.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(col):
            ts = pd.to_datetime(col, utc=True)
            arrays[key] = ts.dt.tz_localize(None).to_numpy("datetime64[ns]").astype("int64")
            arrays[key + "_na"] = ts.isna().to_numpy()
            kind = "ts"
        elif pd.api.types.is_bool_dtype(col) and not col.isna().any():
            arrays[key], kind = col.to_numpy(bool), "bool"
        elif pd.api.types.is_numeric_dtype(col):
            arrays[key], kind = col.to_numpy(float, na_value=np.nan), "float"
        elif len(col) and all(hasattr(v, "toordinal") for v in col.dropna().head(5)) and col.notna().any():
            arrays[key] = pd.to_datetime(col).to_numpy().astype("datetime64[D]").astype("int64")
            kind = "date"
        else:
            arrays[key + "_na"] = col.isna().to_numpy()
            arrays[key], kind = col.fillna("").astype(str).to_numpy(dtype="U"), "str"
        meta.append([name, kind])
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def frame_from_bytes(payload: bytes) -> pd.DataFrame:
    with np.load(io.BytesIO(bytes(payload)), allow_pickle=False) as z:
        meta = json.loads(z["__meta__"].tobytes().decode())
        cols = {}
        for i, (name, kind) in enumerate(meta):
            a = z[f"c{i}"]
            if kind == "ts":
                s = pd.Series(pd.to_datetime(a, unit="ns", utc=True))
                s[z[f"c{i}_na"]] = pd.NaT
            elif kind == "date":
                s = pd.Series(a.astype("datetime64[D]")).dt.date
            elif kind == "str":
                s = pd.Series(a, dtype=object)
                s[z[f"c{i}_na"]] = None
            else:
                s = pd.Series(a)
            cols[name] = s.reset_index(drop=True)
    return pd.DataFrame(cols)


def save_frame(conn, run_key: str, name: str, as_of, frame: pd.DataFrame, commit: bool = True) -> int:
    """Store ``frame`` under (run_key, name), replacing what a previous try stored."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO training_datasets (run_key, name, as_of, rows, columns, payload) VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (run_key, name) DO UPDATE SET as_of = EXCLUDED.as_of, rows = EXCLUDED.rows,"
            " columns = EXCLUDED.columns, payload = EXCLUDED.payload, created_at = now()",
            (run_key, name, as_of, len(frame), list(map(str, frame.columns)), frame_to_bytes(frame)),
        )
    if commit:
        conn.commit()
    return len(frame)


def load_frame(conn, run_key: str, name: str) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute("SELECT payload FROM training_datasets WHERE run_key = %s AND name = %s", (run_key, name))
        row = cur.fetchone()
    if row is None:
        raise LookupError(f"no dataset {name!r} for run {run_key!r}: run the upstream task first")
    return frame_from_bytes(row[0])


def part_name(name: str, index: int) -> str:
    """The name part ``index`` of ``name`` is stored under (``<name>#<index>``, in order as text)."""
    return f"{name}#{index:06d}"


def save_parts(conn, run_key: str, name: str, as_of, frames: Iterable[pd.DataFrame], commit: bool = True) -> int:
    """Store each frame of ``frames`` as one part of ``name`` (:func:`part_name`), as it comes: a
    generator's frame is written, then dropped, before the next is made. Replaces every part a
    previous try stored, in one transaction; the part count (``<name>#parts``, a one-row frame)
    is written last, so :func:`load_parts` tells "no parts" from "not run". Returns the rows."""
    prefix = f"{name}#"
    with conn.cursor() as cur:
        cur.execute("DELETE FROM training_datasets WHERE run_key = %s AND starts_with(name, %s)", (run_key, prefix))
    rows = parts = 0
    for frame in frames:
        save_frame(conn, run_key, part_name(name, parts), as_of, frame, commit=False)
        rows, parts = rows + len(frame), parts + 1
    save_frame(conn, run_key, f"{prefix}parts", as_of, pd.DataFrame({"parts": [parts], "rows": [rows]}), commit=False)
    if commit:
        conn.commit()
    return rows


def load_parts(conn, run_key: str, name: str) -> Iterator[pd.DataFrame]:
    """The parts :func:`save_parts` stored, in order, each read when the previous one is done
    with; a frame stored whole (:func:`save_frame`, e.g. by an earlier version) as one part.
    ``LookupError`` when neither is there."""
    try:
        count = int(load_frame(conn, run_key, f"{name}#parts")["parts"].iloc[0])
    except LookupError:
        yield load_frame(conn, run_key, name)
        return
    for i in range(count):
        yield load_frame(conn, run_key, part_name(name, i))


def prune(conn, keep_run_key: str, keep_days: int = KEEP_DAYS, commit: bool = True) -> int:
    """Delete other runs' datasets older than ``keep_days``."""
    with conn.cursor() as cur:
        cur.execute("DELETE FROM training_datasets WHERE run_key <> %s AND created_at < now() - make_interval(days => %s)",
                    (keep_run_key, keep_days))
        n = cur.rowcount
    if commit:
        conn.commit()
    return n
