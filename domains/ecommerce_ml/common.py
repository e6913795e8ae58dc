"""What every ecommerce_ml task shares: the run's identity and interval, DuckDB -> PostgreSQL
streaming, and the lake paths of a day's drops."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared.runs import RunWindow

# The daily stages run from 01:00 to 05:00 UTC (the seed's schedules: reviews 01:00, interactions 02:00, article
# content 03:00, customer features 04:00, time series 05:00), each processing the day before.
DAILY_PIPELINE_CLOSES = timedelta(hours=5)


def manual_window(start: datetime, end: datetime, run_after: datetime) -> tuple[datetime, datetime]:
    """The window of a daily stage triggered without a logical date: the interval of its schedule over the
    last day whose whole daily pipeline has closed, the same day for every stage whenever they are triggered.
    Airflow's inference (``start``/``end``: the schedule's last complete interval) gives each schedule its own:
    between 02:00 and 05:00 the 02:00 stage would process yesterday and the 04:00 one the day before, which the
    02:00 stage has not processed. Windows other than one day are returned as they are."""
    if end - start != timedelta(days=1):
        return start, end
    day = (run_after.astimezone(UTC) - DAILY_PIPELINE_CLOSES).date() - timedelta(days=1)
    shift = timedelta(days=(start.astimezone(UTC).date() - day).days)
    return start - shift, end - shift


@dataclass(frozen=True)
class Run(RunWindow):
    """A DAG run's identity and data interval ``[start, end)`` (UTC): the platform's
    :class:`shared.runs.RunWindow` (a run triggered without a logical date gets the last
    complete interval of the DAG's schedule), plus this domain's version names."""

    @classmethod
    def from_context(cls, context: Any = None) -> Run:
        """:meth:`RunWindow.from_context`, with a daily stage triggered without a logical date on the day
        every stage agrees on (:func:`manual_window`)."""
        run = super().from_context(context)
        if not run.inferred:
            return run
        start, end = manual_window(run.start, run.end, run.run_after)
        return replace(run, start=start, end=end)

    @property
    def day_version(self) -> str:
        return self.day.isoformat()

    @property
    def slot_version(self) -> str:
        return self.start.astimezone(UTC).strftime("%Y-%m-%dT%H%M")

    @classmethod
    def for_day(cls, dag_id: str, day: date, run_id: str = "manual") -> Run:
        from datetime import timedelta

        start = datetime(day.year, day.month, day.day, 2, tzinfo=UTC)
        return cls(dag_id, run_id, start, start + timedelta(days=1))


def utcnow() -> datetime:
    return datetime.now(UTC)


def refuse_future_day(run: Run, day: date) -> None:
    """Refuse (permanently: AirflowFailException) a run for a day after its data interval's end or after today.

    ``article_features`` and ``customer_features`` keep only the newest day's snapshot, so storing a day
    that has not come yet (a wrong logical date, a stray drop) would freeze them for every later real day.
    Called before a features task stores anything."""
    end, today = run.end.astimezone(UTC), utcnow().date()
    if day > end.date():
        why = f"it is after the run's data interval, which ends {end:%Y-%m-%d %H:%M} UTC"
    elif day > today:
        why = f"it is after today ({today} UTC): that day has not come yet"
    else:
        return
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException(
        f"{run.dag_id} run {run.run_id} (data interval {run.start.astimezone(UTC):%Y-%m-%d %H:%M} to "
        f"{end:%Y-%m-%d %H:%M} UTC) refuses to process day {day}: {why}. The snapshot tables keep only the newest "
        f"day, so nothing was stored; check the run's logical date (and the drop's folder)")


def duck_rows(con: Any, sql: str, params: list | None = None, batch: int = 50_000) -> Iterator[tuple]:
    """Stream a DuckDB query's rows in batches (bounded memory)."""
    result = con.execute(sql, params) if params is not None else con.execute(sql)
    while rows := result.fetchmany(batch):
        yield from rows


def copy_from_duckdb(con: Any, sql: str, cur: Any, table: str, columns: list[str], params: list | None = None) -> None:
    """``COPY`` a DuckDB query's rows into a PostgreSQL table (streamed, no full copy in memory)."""
    from shared.db import copy_rows

    copy_rows(cur, table, columns, duck_rows(con, sql, params))


def publish_parquet(con: Any, sql: str, root: Any, dataset: str, version: str, stem: str = "part",
                    kv_metadata: dict[str, str] | None = None) -> dict:
    """Write a DuckDB query to ``curated/<dataset>/v=<version>/<stem>-<sha>.parquet`` (never overwritten),
    with ``kv_metadata`` in the Parquet footer's key-value metadata (DuckDB's ``parquet_kv_metadata``).

    Returns path (lake URL), relative (under curated/), rows, sha256, schema, written.
    """
    import tempfile
    from pathlib import Path

    from domains.ecommerce_ml import ingest, lake

    with tempfile.TemporaryDirectory(prefix="ecommerce-ml-out-") as tmp:
        out = Path(tmp) / f"{stem}.parquet"
        kv = ", ".join(f"{k}: '{v.replace(chr(39), chr(39) * 2)}'" for k, v in (kv_metadata or {}).items())
        con.execute(f"COPY ({sql}) TO '{out}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880"
                    f"{f', KV_METADATA {{{kv}}}' if kv else ''})")
        rows = ingest.fetch(con, f"SELECT count(*) FROM read_parquet('{out}')")[0][0]
        schema = [{"name": n, "type": t} for n, t, *_ in ingest.fetch(con, f"DESCRIBE SELECT * FROM read_parquet('{out}')")]
        dest, written = lake.publish(out, lake.curated_dir(root, dataset, version), stem, "parquet")
        sha = lake.sha256_file(out)
    return {"path": lake.url(dest), "relative": f"{dataset}/v={version}/{dest.name}", "rows": int(rows), "sha256": sha,
            "schema": schema, "written": written}


def artifact_output(artifact: dict, dataset: str) -> Any:
    from domains.ecommerce_ml import assets, registry

    return registry.Output(dataset, "artifact", artifact["path"], artifact["rows"], artifact["schema"],
                           f"sha256:{artifact['sha256']}", assets.artifact(dataset))


def registered_paths(cur: Any, dataset: str, first: str, last: str) -> list[tuple[str, str]]:
    """(version, path) of a dataset's registered versions in [first, last], oldest first."""
    cur.execute("SELECT version, path FROM dataset_registry WHERE dataset = %s AND kind = 'artifact'"
                " AND version BETWEEN %s AND %s"
                " ORDER BY version", (dataset, first, last))
    return cur.fetchall()


def lake_path(root: Any, registered: str) -> Any:
    """The ObjectStoragePath of a registered artifact (its path is stored as the lake URL)."""
    return root / "curated" / registered.split("/curated/", 1)[1]
