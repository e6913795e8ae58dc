"""``python -m lineage_explorer load FILE`` | ``purge``, with the ``[lineage_explorer]``
settings of this process's Airflow configuration (``make lineage-load`` sets the local
platform's)."""

from __future__ import annotations

import argparse
import sys

from lineage_explorer.config import Settings
from lineage_explorer.ownership import OwnerResolver
from lineage_explorer.store import LineageStore


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lineage_explorer")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("load", help="load an OpenLineage JSON-lines file").add_argument("file")
    sub.add_parser("purge", help="apply the retention setting once")
    args = ap.parse_args(argv)
    settings = Settings.from_airflow()
    store = LineageStore(settings.dsn)
    try:
        if args.cmd == "load":
            from lineage_explorer.load import load_file

            report = load_file(args.file, store, OwnerResolver(settings))
            print(f"{args.file}: {report.stored} event(s) stored, {report.duplicates} already stored, "
                  f"{len(report.invalid)} invalid, {len(report.refused)} refused")
            for line in (report.invalid + report.refused)[:20]:
                print(f"  {line}", file=sys.stderr)
            return 1 if report.invalid or report.refused else 0
        from lineage_explorer.retention import purge

        print(purge(store, settings.retention_days))
        return 0
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
