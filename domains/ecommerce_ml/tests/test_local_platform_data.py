"""`make start` writes the ecommerce_ml raw drops into the team's lake folder (settings.yaml
`local.setup`), once: a second start finds them there and writes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from devplatform.config import PlatformConfig
from devplatform.platform import LocalPlatform


def run_setups(platform: LocalPlatform) -> None:
    setups = platform.start_setups()
    assert [d for d, _ in setups] == ["ecommerce_ml"]
    assert all(proc.wait() == 0 for _, proc in setups)


def test_start_writes_the_last_two_days_once(tmp_path):
    cfg = PlatformConfig(state=tmp_path / "state", domains=["ecommerce_ml"], executor="local")
    platform = LocalPlatform(cfg, quiet=True)
    run_setups(platform)
    lake = cfg.tenant_dir("ecommerce_ml") / "lake"
    assert cfg.settings_vars()["ECOMMERCE_ML_LAKE_URL"] == f"file://{lake}"
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    for day in (yesterday - timedelta(days=1), yesterday):
        for name in ("articles.csv", "customers.csv", "transactions_train.csv"):
            assert (lake / "raw" / "hm" / f"dt={day}" / name).stat().st_size > 1000
        assert (lake / "raw" / "reviews" / f"dt={day}" / "reviews.csv").exists()
        assert any((lake / "raw" / "events" / f"dt={day}").rglob("part-*.csv"))
    assert any((lake / "raw" / "hm" / "images").rglob("*.jpg"))
    stamps = {p: p.stat().st_mtime_ns for p in lake.rglob("*") if p.is_file()}
    run_setups(platform)
    assert {p: p.stat().st_mtime_ns for p in lake.rglob("*") if p.is_file()} == stamps
    assert json.loads((cfg.state / "secrets.json").read_text())  # the platform's own state, as make start makes it
