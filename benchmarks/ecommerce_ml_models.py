"""Benchmark (not a test): ecommerce_ml's models in the heavy environment (.venv-embed), and the
environment itself. Prints the environment's size, the time to import and load each model and to
encode 1,000 texts / images (domains/ecommerce_ml/heavy/bench.py), and the peak memory.

    python -m benchmarks.ecommerce_ml_models [n_texts] [n_images]

The build time of the environment is measured by timing `make install` after `rm -rf .venv-embed`.
Times depend on how busy the 2 cores are: run it on an idle machine and report `uptime` with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from domains.ecommerce_ml.config import ROOT, embed_python


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def main() -> None:
    python = embed_python()
    venv = Path(python).parent.parent
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([python, "-m", "domains.ecommerce_ml.heavy.bench", *sys.argv[1:3]], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["env_size_mb"] = round(size_mb(venv), 1)
    result["load_average"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
