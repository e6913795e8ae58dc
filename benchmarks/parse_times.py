"""Benchmark (not a test): per-DAG-file parse time in every bundle, once Airflow is loaded.

Each bundle is parsed in a process of its own, the way the dag-processor does it.
Target: under 50 ms per file.
"""

from __future__ import annotations

from devplatform.parse import parse_all_bundles

TARGET_MS = 50


def main() -> None:
    report = parse_all_bundles()
    print(f"\n{'bundle':14s} {'file':36s} {'first in process ms':>20s} {'once loaded ms':>15s}  within {TARGET_MS} ms")
    files = 0
    for domain, r in report.items():
        for f, s in sorted(r["file_parse_seconds"].items()):
            files += 1
            warm = r["file_reparse_seconds"].get(f, float("nan")) * 1000
            print(f"{domain:14s} {f:36s} {s * 1000:20.1f} {warm:15.1f}  {'yes' if warm < TARGET_MS else 'NO'}")
    print("\n'first in process' includes loading Airflow's DAG-authoring machinery (decorators, timetables)"
          " once per parser process; 'once loaded' is the file's own cost.")
    if not files:
        print("(no DAG files yet)")


if __name__ == "__main__":
    main()
