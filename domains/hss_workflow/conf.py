"""The triggered DAGs' conf: ``Params`` with a JSON schema, and the allowed roots for paths.

A deployment sets the roots in the environment of every component (the api-server validates
conf against the schema before a run exists, so it needs them too):

- ``HSS_WORKFLOW_SONGS_ROOT`` (default ``/app/songs``, the seed's): where ``song_path`` may point;
- ``HSS_WORKFLOW_TRAINING_ROOT`` (default ``/app/data/training_data``): ``dataset_path``.

A path is either relative to its root or absolute under it, and has no ``..`` segment. The
schema says so, so ``POST /api/v2/dags/{dag_id}/dagRuns`` refuses anything else with a 400
naming the field and saying what is wrong in words ("must be a file under the songs folder,
no '..'"): jsonschema's message quotes the failing keyword's value and prints the schema it sits
in, so the ``pattern`` (which spells out the server's folder) is an ``if`` whose failures are never
reported, and the refusal comes from its ``else``. :func:`confine` checks again when the run starts
(symlinks, a root changed since the DAG was parsed) before any service is called.
Dependency-free: imported while parsing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

ROOT_ENV = {"song_path": "HSS_WORKFLOW_SONGS_ROOT", "dataset_path": "HSS_WORKFLOW_TRAINING_ROOT"}
ROOT_DEFAULT = {"song_path": "/app/songs", "dataset_path": "/app/data/training_data"}
FOLDER_WORDS = {"song_path": "the songs folder", "dataset_path": "the training data folder"}


class ConfError(ValueError):
    """A conf value breaks the DAG's contract; the message names the field."""


def allowed_root(field: str) -> Path:
    return Path(os.environ.get(ROOT_ENV[field]) or ROOT_DEFAULT[field])


def path_pattern(root: Path) -> str:
    """A JSON-schema pattern: relative, or absolute under ``root``; never a ``..`` segment."""
    base = re.escape(str(root).rstrip("/"))
    return rf"^(?!.*(^|/)\.\.(/|$))({base}/|(?!/))[^\x00]+$"


def path_param(field: str, description: str, **kwargs: Any):
    from airflow.sdk import Param

    root = allowed_root(field)
    rule = {"if": {"pattern": path_pattern(root)}, "else": {"const": f"must be a file under {FOLDER_WORDS[field]}, no '..'"}}
    return Param(type="string", minLength=1, maxLength=1024, **rule,
                 description=f"{description}: relative to {root}, or absolute under it (no '..')", **kwargs)


def identifier_param(description: str, **kwargs: Any):
    from airflow.sdk import Param

    # "(?!\n)": the value's very end (Python's "$" also matches before a final newline; an ECMA-262
    # pattern, the UI's, has no "\Z")
    return Param(type="string", minLength=1, maxLength=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$(?!\n)",
                 description=description, **kwargs)


def confine(field: str, value: Any, *, must_exist: bool = True) -> Path:
    """The real path ``value`` names, if it lies inside the field's allowed root; else ConfError."""
    root = allowed_root(field)
    if not isinstance(value, str) or not value:
        raise ConfError(f"Invalid input for param {field}: {value!r} is not a non-empty string")
    if not re.match(path_pattern(root), value):
        raise ConfError(f"Invalid input for param {field}: {value!r} is outside {root} or contains '..'")
    path = (root / value).resolve()  # an absolute value replaces root
    if not path.is_relative_to(root.resolve()):
        raise ConfError(f"Invalid input for param {field}: {value!r} resolves outside {root}")
    if must_exist and not path.is_file():
        raise ConfError(f"Invalid input for param {field}: {value!r}: no such file under {root}")
    return path


def analysis_params() -> dict[str, Any]:
    return {
        "song_id": identifier_param("the song's id, e.g. example_song_123"),
        "song_path": path_param("song_path", "the audio file (WAV or MP3)"),
    }


def training_params() -> dict[str, Any]:
    from airflow.sdk import Param

    return {
        "dataset_path": path_param("dataset_path", "the training CSV"),
        "training_id": identifier_param("the training's id (one training per id)"),
        "batch_size": Param(400, type="integer", minimum=1, maximum=5000, description="rows per batch"),
        "max_concurrent_requests": Param(50, type="integer", minimum=1, maximum=200,
                                         description="batches in flight to the training service at most"),
    }
