"""The lake's disk full: a write refused by the kernel mid-file fails the publish with the
kernel's reason and leaves nothing half-written; the rerun writes the file whole.

The refusal is real: the writing process runs with a file-size limit (RLIMIT_FSIZE), so the
kernel refuses the write that would pass it with EFBIG ("File too large"), in the middle of the
copy, exactly where a full disk refuses it with ENOSPC; CPython ignores SIGXFSZ, so the writer
sees the error as a full disk's OSError. (A small filesystem of our own, a tmpfs or a loop
device, needs root's mount.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from devplatform.paths import ROOT

PUBLISH = """
import json, resource, sys
from airflow.sdk import ObjectStoragePath
from domains.ecommerce_ml.lake import publish
limit = int(sys.argv[3])
if limit:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    dest, written = publish(sys.argv[1], ObjectStoragePath(sys.argv[2]), "interactions", "parquet")
    print(json.dumps({"dest": dest.path, "written": written}))
except OSError as e:
    print(json.dumps({"errno": e.errno, "error": str(e)}))
"""


def publish_in_process(source, lake, limit: int) -> dict:
    out = subprocess.run([sys.executable, "-c", PUBLISH, str(source), f"file://{lake}/", str(limit)],
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_full_lake_fails_the_publish_clearly_leaves_nothing_half_written_and_a_rerun_repairs(tmp_path):
    import errno

    source = tmp_path / "interactions.parquet"
    source.write_bytes(os.urandom(3 << 20))  # 3 MiB: three 1-MiB chunks through copyfileobj
    lake = tmp_path / "lake"
    lake.mkdir()

    full = publish_in_process(source, lake, limit=(1 << 20) + 4096)  # the second chunk passes the limit
    assert full["errno"] == errno.EFBIG, full
    assert "File too large" in full["error"]
    assert list(lake.rglob("*")) == []  # neither the file nor its .partial

    done = publish_in_process(source, lake, limit=0)
    assert done["written"] is True
    assert [p.name for p in lake.rglob("*")] == [os.path.basename(done["dest"])]
    assert (lake / os.path.basename(done["dest"])).read_bytes() == source.read_bytes()
