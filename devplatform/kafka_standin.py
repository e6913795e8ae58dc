"""The local stand-in Kafka broker: librdkafka's built-in mock cluster, served by one process.

No Kafka broker installs from the package registries here. confluent-kafka's librdkafka has a
mock cluster (``test.mock.num.brokers``) that speaks the real Kafka protocol on localhost TCP
ports: producers, consumers and consumer groups of any process can use it through
``bootstrap.servers``. The mock cluster lives as long as the client handle that created it,
so this process holds one and idles. librdkafka chooses the ports; the process writes the
bootstrap address (``host:port,...``) to a file, from which ``make start`` fills the
domains' Kafka connections (``<DOMAIN>_KAFKA_BOOTSTRAP_SERVERS``) and the tests theirs.

The cluster keeps its topics in memory: stopping the process is a broker outage (every
client gets connection refused), starting it again is a new, empty cluster on new ports.
Development and test tooling only: no deployed connection points at it.

    python -m devplatform kafka-standin --bootstrap-file .local/run/kafka-bootstrap
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from devplatform.paths import ROOT

NUM_BROKERS = 1


def serve(bootstrap_file: Path, num_brokers: int = NUM_BROKERS) -> None:
    """Create the mock cluster, publish its bootstrap address, then hold it until SIGTERM."""
    from confluent_kafka import Producer

    stop = False

    def on_term(signum, frame) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    holder = Producer({"test.mock.num.brokers": num_brokers, "bootstrap.servers": ""})
    brokers = holder.list_topics(timeout=30).brokers
    bootstrap = ",".join(f"{b.host}:{b.port}" for b in sorted(brokers.values(), key=lambda b: b.id))
    bootstrap_file = Path(bootstrap_file)
    tmp = bootstrap_file.with_suffix(".tmp")
    tmp.write_text(bootstrap)
    tmp.replace(bootstrap_file)  # readers never see a half-written address
    print(f"Kafka stand-in (librdkafka mock cluster, {num_brokers} broker(s)) at {bootstrap}", flush=True)
    try:
        while not stop:
            holder.poll(0.5)
    finally:
        bootstrap_file.unlink(missing_ok=True)


def command(bootstrap_file: Path, python: str | None = None) -> list[str]:
    return [python or sys.executable, "-m", "devplatform", "kafka-standin", "--bootstrap-file", str(bootstrap_file)]


def wait_bootstrap(bootstrap_file: Path, alive=lambda: True, timeout: float = 30) -> str:
    """The address the stand-in published (waits for it to appear)."""
    deadline = time.monotonic() + timeout
    while not Path(bootstrap_file).exists():
        if not alive():
            raise RuntimeError("the Kafka stand-in exited before publishing its bootstrap address")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no Kafka stand-in bootstrap address in {bootstrap_file} after {timeout} s")
        time.sleep(0.05)
    return Path(bootstrap_file).read_text().strip()


class KafkaStandIn:
    """The stand-in as a child process (tests): ``start()``, ``stop()`` (a broker outage), ``start()`` again."""

    def __init__(self, folder: Path, on_start: Callable[[str], None] | None = None) -> None:
        """``on_start(bootstrap)`` runs after each start (e.g. to point connections at it)."""
        self.folder = Path(folder)
        self.on_start = on_start
        self.bootstrap_file = self.folder / "kafka-bootstrap"
        self.process: subprocess.Popen | None = None
        self.bootstrap = ""

    def start(self) -> str:
        if self.process is not None:
            raise RuntimeError("the Kafka stand-in is already running")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.bootstrap_file.unlink(missing_ok=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            command(self.bootstrap_file), env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=open(self.folder / "kafka-standin.log", "ab"),
        )
        self.bootstrap = wait_bootstrap(self.bootstrap_file, alive=lambda: self.process.poll() is None)
        if self.on_start is not None:
            self.on_start(self.bootstrap)
        return self.bootstrap

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None
