"""Benchmark (not a test): per-DAG-file parse time in every bundle, once Airflow is imported.

Each bundle is parsed in a process of its own, the way the dag-processor does it.
Target: under 50 ms per file.
"""

from __future__ import annotations

from devplatform.parse import parse_all_bundles

TARGET_MS = 50


def main() -> None:
    report = parse_all_bundles()
    print(f"\n{'bundle':14s} {'file':44s} {'parse ms':>9s}  within {TARGET_MS} ms")
    files = 0
    for domain, r in report.items():
        for f, s in sorted(r["file_parse_seconds"].items()):
            files += 1
            print(f"{domain:14s} {f:44s} {s * 1000:9.1f}  {'yes' if s * 1000 < TARGET_MS else 'NO'}")
    if not files:
        print("(no DAG files yet)")


if __name__ == "__main__":
    main()
