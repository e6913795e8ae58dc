"""Run code in ecommerce_ml's heavy environment (``.venv-embed`` / ``ECOMMERCE_ML_EMBED_PYTHON``)."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

from domains.ecommerce_ml.config import ROOT, embed_python


def heavy_python() -> str:
    python = embed_python()
    assert Path(python).is_file(), f"the heavy environment is missing: {python} (run `make install`)"
    return python


def run_heavy(code: str, timeout: float = 300) -> dict:
    """Run ``code`` in the heavy environment; it must ``print(json.dumps(...))`` as its last line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([heavy_python(), "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, f"heavy environment failed:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])
