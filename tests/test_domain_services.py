"""`make start`'s domain services: the domain Redis with its ACL users and the Kafka stand-in,
started before the settings are applied (the Kafka connection needs the stand-in's address)
and stopped by `make stop`."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import redis

from devplatform import settings
from devplatform.config import PlatformConfig
from devplatform.platform import LocalPlatform
from devplatform.ports import free_ports


def test_start_serves_redis_and_kafka_and_fills_the_connections(monkeypatch):
    redis_port, pg_port = free_ports(2)
    monkeypatch.delenv("AURORA_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("AURORA_REDIS_PASSWORD", raising=False)
    # a state folder the platform's OS user can reach (pytest's tmp_path is root's alone), locked
    # as `make start` locks it before it starts any process
    state = Path(tempfile.mkdtemp(prefix="domain-services-"))
    os.chmod(state, 0o711)
    platform = LocalPlatform(PlatformConfig(state=state, pg_port=pg_port, domain_redis_port=redis_port), quiet=True)
    try:
        for sub in (platform.config.run_dir, state / "logs"):
            sub.mkdir(parents=True, exist_ok=True)
        platform.lock_state()
        platform.start_supervisor()  # every platform process runs under it, as in `make start`
        platform.start_domain_services()
        assert {"redis-domains", "kafka-standin"} <= {n for n, up in platform.status().items() if up}
        values = platform.config.settings_vars()
        conns = {c["conn_id"]: settings.connection_fields(c) for c in settings.load("aurora", values)["connections"]}
        r = conns["aurora_redis"]
        assert r["port"] == redis_port and r["login"] == "aurora"
        client = redis.Redis(host=r["host"], port=r["port"], username=r["login"], password=r["password"])
        client.set("aurora:up", "1")
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.get("referral:x")
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=redis_port).ping()
        bootstrap = conns["aurora_kafka"]["extra"]["bootstrap.servers"]
        assert bootstrap == platform.config.kafka_bootstrap() and bootstrap.startswith("127.0.0.1:")
        from confluent_kafka import Producer

        assert Producer({"bootstrap.servers": bootstrap}).list_topics(timeout=10).brokers
    finally:
        stopped = platform.stop()
    assert {"redis-domains", "kafka-standin", "supervisord"} <= set(stopped)
    assert platform.config.kafka_bootstrap() is None
    shutil.rmtree(state, ignore_errors=True)
