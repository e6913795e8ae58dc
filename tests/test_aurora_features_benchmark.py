"""benchmarks/aurora_features.py's full run (one command, every step against its bare baseline)
works and checks what it claims: at 300 users x 31 days, on its own embedded PostgreSQL, Redis and
Kafka stand-in, every feature group's bare query computes the project's values, the feature store's
bare writes the same rows and hashes, and every prediction_pipeline step gives the same rows (and
the same predicted values, the same saved rows and outbox events) after and bare (``--paths
new,bare``: the before path, an old tree, is the full run's default at scale). Timings are
printed, never asserted."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GROUPS = ("activity", "sleep", "exercise", "social")
PREDICTION_STEPS = ("predict:energy", "predict:mood", "predict:sleep_quality", "save", "cache", "publish")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> str:
    # a child process: the benchmark sets the connections in its environment and starts its own services
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AIRFLOW_HOME": str(tmp_path_factory.mktemp("airflow"))}
    out = subprocess.run([sys.executable, "-m", "benchmarks.aurora_features", "300", "31", "1", "--paths", "new,bare"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-6000:]
    return out.stdout


def test_every_feature_group_and_the_store_match_their_bare_baseline(full_run):
    for group in GROUPS:
        assert re.search(rf"^  {group} +bare computes the same values as new \(\d[\d,]* x \d", full_run, re.M), group
    assert re.search(r"store medians: .*same rows \(\d[\d,]*\) and hash", full_run)


def test_every_prediction_step_gives_the_same_result_after_and_bare(full_run):
    for step in PREDICTION_STEPS:
        line = re.search(rf"^  {re.escape(step)} +every path produced the same: (\d[\d,]*) rows(.*)$", full_run, re.M)
        assert line, step
        assert int(line[1].replace(",", "")) > 0, step
        if step.startswith("predict"):  # the predicted values, compared, not only counted
            assert re.fullmatch(r" \d+ rows, values [0-9a-f]{16}", line[2]), line[0]
        if step == "save":
            assert re.fullmatch(r" \d+ rows, [0-9a-f]{32}; [1-9]\d* events", line[2]), line[0]
    # each path of each step ran (1 round): after and bare
    for step in PREDICTION_STEPS:
        for path in ("new", "bare"):
            assert re.search(rf"^  {re.escape(step)} +{path} +1 ", full_run, re.M), (step, path)


def test_the_run_prints_the_closing_note_tables(full_run):
    tables = full_run[full_run.index("\nfeature_engineering_pipeline, 300 users x 31 days"):]
    for step in (*GROUPS, "update_feature_store", *PREDICTION_STEPS):
        row = re.search(rf"^\| {re.escape(step)} \(\d[\d,]* (users|rows)\) \|(.*)\|$", tables, re.M)
        assert row, step
        cells = [c.strip() for c in row[2].split("|")]
        # after and bare measured, after's ratio to bare given; no before path in this run
        assert re.fullmatch(r"\d+\.\d\d", cells[1]) and re.fullmatch(r"\d+\.\d\d", cells[2]), row[0]
        assert re.fullmatch(r"\d+\.\d\dx", cells[3]), row[0]
        assert cells[0] == "–" and cells[4] == "–", row[0]
