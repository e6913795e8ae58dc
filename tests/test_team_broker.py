"""A team's Redis broker is durable: what it held (the team's queued Celery tasks) is still there
after the server is SIGKILLed and started again; a server without the append-only file comes back
empty (what the fault matrix's Redis row would lose)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import redis

from devplatform.ports import free_port
from devplatform.tenants import redis_command, redis_conf, write_private


def start(conf) -> subprocess.Popen:
    return subprocess.Popen(redis_command(conf), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def client(port: int) -> redis.Redis:
    r = redis.Redis(host="127.0.0.1", port=port, password="pw", socket_timeout=5)
    deadline = time.monotonic() + 20
    while True:
        try:
            r.ping()
            return r
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.parametrize("durable", [True, False])
def test_a_killed_broker_keeps_its_queue_only_when_durable(tmp_path, durable):
    port = free_port()
    conf = tmp_path / "redis.conf"
    write_private(conf, redis_conf(port, tmp_path, ["requirepass pw"], durable=durable))
    server = start(conf)
    try:
        client(port).lpush("team_queue", *[f"task-{i}" for i in range(5)])
        os.kill(server.pid, signal.SIGKILL)  # no shutdown save: only what was already on disk survives
        server.wait(10)
        server = start(conf)
        left = client(port).lrange("team_queue", 0, -1)
    finally:
        server.kill()
        server.wait(10)
    assert len(left) == (5 if durable else 0)
