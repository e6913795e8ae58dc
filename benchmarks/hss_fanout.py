"""Benchmark (not a test): the training fan-out of ml_training_smart_ensemble against a
stand-in with a fixed service time.

20,000 rows in batches of 400 (50 batches) go through ``domains.hss_workflow.fanout.post_all``
(what ``send_training_batches`` runs, with each body JSON text as PostgreSQL builds it) to
the training stand-in, served by uvicorn in a process
of its own with ``latency=0.2`` s per batch and no concurrency limit below 200, at 10, 50 and
100 requests in flight, interleaved over ROUNDS rounds (medians reported).

Two ratios:
- ``vs bound``: achieved batches/s divided by the bound ``in_flight / latency`` (50 / 0.2 s =
  250 batches/s at 50 in flight). With 50 batches and 100 in flight only 50 can be in flight,
  so that ratio cannot exceed 0.5 there by construction;
- ``vs ideal``: the ideal time ``ceil(batches / in_flight) * latency`` divided by the measured
  time: what fraction of the best possible time for this workload was reached.

Two servers, side by side in the same rounds:

- ``stand-in``: the training stand-in (FastAPI on uvicorn, one event loop), which also reads,
  validates (pydantic-core) and stores every batch: about 0.7 ms of its CPU per request, serial,
  before and after its 200 ms;
- ``fixed``: :class:`FixedLatency`, a bare HTTP/1.1 server (asyncio protocol on uvloop) that
  answers every request exactly ``LATENCY`` after it has read it, and does nothing else: the
  ceiling of the fan-out itself (client, connections, kernel) on this machine.

``python -m benchmarks.hss_fanout [ROWS] [BATCH] [ROUNDS]``
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
import os
import statistics
import sys
import time

LATENCY = 0.2
IN_FLIGHT = (10, 50, 100)
TARGET = 0.8


class FixedLatency(asyncio.Protocol):
    """A bare HTTP/1.1 keep-alive server for this benchmark only: reads each request (headers
    and its ``Content-Length`` body), answers ``200 {"accepted": true}`` ``latency`` seconds
    later, in order. No parsing of the body, no framework."""

    def __init__(self, latency: float) -> None:
        self.latency, self.buf, self.transport = latency, b"", None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if not sep:
                return
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(rest) < length:
                return
            self.buf = rest[length:]
            asyncio.get_running_loop().call_later(self.latency, self.answer)

    def answer(self) -> None:
        if not self.transport.is_closing():
            body = b'{"accepted": true}'
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                                 % (len(body), body))


def serve_fixed(port: int) -> None:
    import uvloop

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(lambda: FixedLatency(LATENCY), "127.0.0.1", port,
                                                                backlog=1024)
        await server.serve_forever()

    uvloop.run(main())


def serve(port: int) -> None:
    from devplatform.standin import serve as serve_standin
    from domains.hss_workflow.local.training import create_training_app

    serve_standin(create_training_app(api_key="bench", max_concurrent=200, latency=LATENCY), port, "warning")


def wait_listening(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main() -> None:
    import psutil

    from devplatform.ports import free_port
    from domains.hss_workflow.fanout import Endpoint, post_all
    from shared.http import ApiSettings

    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 400
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    servers = {"stand-in": serve, "fixed": serve_fixed}
    procs, endpoints = {}, {}
    try:
        for name, target in servers.items():
            port = free_port()
            procs[name] = multiprocessing.get_context("spawn").Process(target=target, args=(port,), daemon=True)
            procs[name].start()
            wait_listening(port)
            settings = ApiSettings(f"http://127.0.0.1:{port}", {"X-API-Key": "bench"}, timeout=30.0, backoff_initial=0.05)
            endpoints[name] = Endpoint(settings.url("/train/smart_ensemble/batches"), settings)
        # JSON text, as send_training_batches gets each body from PostgreSQL (training.load_batches)
        bodies = [json.dumps({"training_id": "bench", "batch_index": b,
                              "rows": [{"song_id": f"s{i}", "is_hit": i % 2,
                                        "features": {"tempo_bpm": 100 + i % 40, "energy": (i % 10) / 10}}
                                       for i in range(b * batch, min(rows, (b + 1) * batch))]}).encode()
                  for b in range(math.ceil(rows / batch))]
        runs = [(name, k) for name in servers for k in IN_FLIGHT]
        times: dict[tuple, list[float]] = {r: [] for r in runs}
        cpu: dict[tuple, list[float]] = {r: [] for r in runs}
        peaks: dict[tuple, int] = {}
        for name in servers:  # one wave each first: imports and first connections are not measured
            asyncio.run(post_all(endpoints[name], bodies, IN_FLIGHT[0]))
        for r in range(rounds):
            for name, k in runs[r % len(runs):] + runs[:r % len(runs)]:
                server = psutil.Process(procs[name].pid)
                c0, s0 = time.process_time(), sum(server.cpu_times()[:2])
                stats = asyncio.run(post_all(endpoints[name], bodies, k))
                cpu[name, k].append(time.process_time() - c0 + sum(server.cpu_times()[:2]) - s0)
                assert stats.sent == len(bodies), stats
                times[name, k].append(stats.seconds)
                peaks[name, k] = max(peaks.get((name, k), 0), stats.peak_in_flight)
        n = len(bodies)
        print(f"\n{rows:,} rows, batches of {batch} ({n} batches), service time {LATENCY} s, {rounds} rounds (median),"
              f" load average {os.getloadavg()[0]:.2f}")
        print(f"{'server':>8} {'in flight':>9} {'seconds':>8} {'batches/s':>10} {'bound/s':>8} {'vs bound':>9}"
              f" {'ideal s':>8} {'vs ideal':>9} {'peak':>5} {'CPU s':>6}")
        for name, k in runs:
            s = statistics.median(times[name, k])
            ideal = math.ceil(n / k) * LATENCY
            print(f"{name:>8} {k:9d} {s:8.3f} {n / s:10.1f} {k / LATENCY:8.0f} {n / s / (k / LATENCY):9.2f}"
                  f" {ideal:8.2f} {ideal / s:9.2f} {peaks[name, k]:5d} {statistics.median(cpu[name, k]):6.2f}")
        print(f"target: at least {TARGET} of the bound at 50 in flight. CPU s = client + server process:"
              f" when it nears the wall time, the machine's CPU, not the fan-out, is the limit")
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.join(5)


if __name__ == "__main__":
    main()
