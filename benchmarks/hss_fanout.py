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

``python -m benchmarks.hss_fanout [ROWS] [BATCH] [ROUNDS]``
"""

from __future__ import annotations

import json
import math
import multiprocessing
import statistics
import sys
import time

LATENCY = 0.2
IN_FLIGHT = (10, 50, 100)
TARGET = 0.8


def serve(port: int) -> None:
    from devplatform.standin import serve as serve_standin
    from domains.hss_workflow.standins.training import create_training_app

    serve_standin(create_training_app(api_key="bench", max_concurrent=200, latency=LATENCY), port, "warning")


def main() -> None:
    import asyncio

    import psutil
    import requests

    from devplatform.standin import free_port
    from domains.hss_workflow.fanout import Endpoint, post_all

    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 400
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    port = free_port()
    proc = multiprocessing.get_context("spawn").Process(target=serve, args=(port,), daemon=True)
    proc.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        # JSON text, as send_training_batches gets each body from PostgreSQL (training.load_batches)
        bodies = [json.dumps({"training_id": "bench", "batch_index": b,
                              "rows": [{"song_id": f"s{i}", "is_hit": i % 2,
                                        "features": {"tempo_bpm": 100 + i % 40, "energy": (i % 10) / 10}}
                                       for i in range(b * batch, min(rows, (b + 1) * batch))]}).encode()
                  for b in range(math.ceil(rows / batch))]
        endpoint = Endpoint(url=f"http://127.0.0.1:{port}/train/smart_ensemble/batches",
                            headers={"X-API-Key": "bench"}, timeout=30, backoff_initial=0.05)
        server = psutil.Process(proc.pid)
        times: dict[int, list[float]] = {k: [] for k in IN_FLIGHT}
        cpu: dict[int, list[float]] = {k: [] for k in IN_FLIGHT}
        peaks: dict[int, int] = {}
        for r in range(rounds):
            for k in IN_FLIGHT[r % len(IN_FLIGHT):] + IN_FLIGHT[:r % len(IN_FLIGHT)]:
                c0, s0 = time.process_time(), sum(server.cpu_times()[:2])
                stats = asyncio.run(post_all(endpoint, bodies, k))
                cpu[k].append(time.process_time() - c0 + sum(server.cpu_times()[:2]) - s0)
                assert stats.sent == len(bodies), stats
                times[k].append(stats.seconds)
                peaks[k] = max(peaks.get(k, 0), stats.peak_in_flight)
        n = len(bodies)
        print(f"\n{rows:,} rows, batches of {batch} ({n} batches), service time {LATENCY} s, {rounds} rounds (median)")
        print(f"{'in flight':>9} {'seconds':>8} {'batches/s':>10} {'bound/s':>8} {'vs bound':>9} {'ideal s':>8}"
              f" {'vs ideal':>9} {'peak':>5} {'CPU s':>6}")
        for k in IN_FLIGHT:
            s = statistics.median(times[k])
            ideal = math.ceil(n / k) * LATENCY
            print(f"{k:9d} {s:8.3f} {n / s:10.1f} {k / LATENCY:8.0f} {n / s / (k / LATENCY):9.2f} {ideal:8.2f}"
                  f" {ideal / s:9.2f} {peaks[k]:5d} {statistics.median(cpu[k]):6.2f}")
        print(f"target: at least {TARGET} of the bound at 50 in flight. CPU s = client + stand-in process:"
              f" when it nears the wall time, the machine's CPU, not the fan-out, is the limit")
    finally:
        proc.terminate()
        proc.join(5)


if __name__ == "__main__":
    main()
