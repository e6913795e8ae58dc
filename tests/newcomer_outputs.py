"""What a DAG run of the live newcomer test must have written: one small check per DAG.

``output_problems(dag_id, cur, run)`` lists what is missing of ``run``'s outputs (empty when
all are present). ``cur`` is a psycopg2 cursor on the DAG's domain database (named after the
domain, :data:`DAG_DOMAINS`, opened as a superuser); ``run`` holds

- ``run_id``, ``run_key`` (``f"{dag_id}/{run_id}"``: what ``shared.runs.run_key`` gives a run
  triggered with ``{"logical_date": null}``),
- ``start_date``, ``end_date`` (aware datetimes of the run),
- ``lake_dir`` (the domain's lake root, the ``<domain>_lake`` connection's ``base_url``; None
  for a domain without a lake), ``mail_dir`` (the SMTP sink's folder of ``*.eml`` files),
- ``run_after`` (the REST answer's: the time the run's window is inferred from) and
  optionally ``conf`` (the run's conf).

Each check looks at what THIS run wrote: rows keyed by its run key / run id, rows written
between its start and end, registry rows of the version its window processes, lake files
those rows point at, or its summary mail. A run without a logical date works on the last
complete interval of its schedule (``shared.runs.RunWindow``), so the ecommerce_ml checks
compute that interval with the same function (``shared.runs.last_complete_interval``).

``follow_up_runs(dag_id, cur, run)`` names the runs a run triggered (daily_model_training's
``ml_training_smart_ensemble`` run): wait for them before checking the triggering run.
"""

from __future__ import annotations

import email.policy
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from tests.newcomer import DAGS

# Clock rounding between the database, the workers and the API's timestamps (one machine).
SLACK = timedelta(seconds=30)

DAG_DOMAINS = DAGS

Run = dict[str, Any]
Check = Callable[[Any, Run], list[str]]


# -- helpers ------------------------------------------------------------------------------------
def _bounds(run: Run) -> tuple[datetime, datetime]:
    return run["start_date"] - SLACK, run["end_date"] + SLACK


def _in_run(ts: datetime | None, run: Run) -> bool:
    lo, hi = _bounds(run)
    return ts is not None and lo <= ts <= hi


def _one(cur, sql: str, params: tuple = ()) -> Any:
    cur.execute(sql, params)
    row = cur.fetchone()
    return None if row is None else row[0]


def _mail_subjects(run: Run) -> list[str]:
    """Subjects of the mails the sink received while the run ran (file names start with the
    arrival time in ns: devplatform/smtp_sink.py; else the file's mtime)."""
    folder = run.get("mail_dir")
    if folder is None or not Path(folder).is_dir():
        return []
    lo, hi = _bounds(run)
    subjects = []
    for path in sorted(Path(folder).glob("*.eml")):
        try:
            at = datetime.fromtimestamp(int(path.name.split("-", 1)[0]) / 1e9, UTC)
        except ValueError:
            at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        if lo <= at <= hi:
            with path.open("rb") as f:
                subjects.append(str(BytesHeaderParser(policy=email.policy.default).parse(f)["Subject"] or ""))
    return subjects


def _mail_problem(run: Run, text: str, what: str) -> list[str]:
    if any(text in s for s in _mail_subjects(run)):
        return []
    return [f"mail: no {what} whose subject contains {text!r} in {run.get('mail_dir')} during the run"]


# -- windows (ecommerce_ml: a run without a logical date processes the last complete interval) ----
def _window(cron: str, run: Run) -> tuple[datetime, datetime]:
    """The run's window: the last complete interval of the schedule when it was triggered, on the day
    every daily ecommerce_ml stage agrees on, as the tasks themselves compute it
    (``shared.runs.last_complete_interval``, ``domains.ecommerce_ml.common.manual_window``)."""
    from airflow.timetables.interval import CronDataIntervalTimetable

    from domains.ecommerce_ml.common import manual_window
    from shared.runs import last_complete_interval

    start, end = last_complete_interval(CronDataIntervalTimetable(cron, "UTC"), run["run_after"])
    return manual_window(start, end, run["run_after"])


# -- ecommerce_ml: registry rows of the run's version and the lake files they point at ------------
def _registry_problems(cur, run: Run, dag_id: str, version: str,
                       expected: list[tuple[str, str]]) -> tuple[list[str], dict[tuple[str, str], tuple]]:
    """The ``dataset_registry`` rows (dataset, kind) of ``version`` registered by ``dag_id``.

    A rerun of the same version with the same content leaves its row untouched (the earlier
    run's run_id), so the row is keyed by the version the run processed, not by its run_id."""
    cur.execute("SELECT dataset, kind, path, row_count, run_id FROM dataset_registry"
                " WHERE dag_id = %s AND version = %s", (dag_id, version))
    rows = {(d, k): (p, n, r) for d, k, p, n, r in cur.fetchall()}
    problems = [f"ecommerce_ml.dataset_registry: no {kind} row for {dataset!r} version {version} by {dag_id}"
                for dataset, kind in expected if (dataset, kind) not in rows]
    lake = run.get("lake_dir")
    for (dataset, kind), (path, _, _) in rows.items():
        if kind != "artifact" or lake is None or (dataset, kind) not in expected:
            continue
        relative = path.split("/curated/", 1)[1] if "/curated/" in path else None
        if relative is None or not (Path(lake) / "curated" / relative).is_file():
            problems.append(f"ecommerce_ml lake: {dataset} v={version}: registered file {path} is not under "
                            f"{Path(lake) / 'curated'}")
    return problems, rows


def _table_matches_registry(cur, rows: dict, dataset: str, table: str, where: str, params: tuple,
                            label: str, nonempty: bool = False) -> list[str]:
    """The table's rows of the version agree with the registry's row count (and exist)."""
    if (dataset, "table") not in rows:
        return []
    registered = rows[(dataset, "table")][1]
    n = _one(cur, f"SELECT count(*) FROM {table} WHERE {where}", params)
    problems = []
    if n != registered:
        problems.append(f"ecommerce_ml.{table}: {n} rows for {label}, the registry says {registered}")
    if nonempty and not n:
        problems.append(f"ecommerce_ml.{table}: no rows for {label}")
    return problems


def check_user_item_interactions(cur, run: Run) -> list[str]:
    dag_id = "ecommerce_ml_user_item_interactions"

    start, _ = _window("0 2 * * *", run)
    day = start.date()
    problems, rows = _registry_problems(cur, run, dag_id, day.isoformat(), [
        ("interactions", "artifact"), ("interaction_rejections", "table"), ("user_item_matrix", "artifact")])
    if ("interactions", "artifact") in rows and not rows[("interactions", "artifact")][1]:
        problems.append(f"ecommerce_ml interactions artifact: no rows for day {day}")  # lake only (migration 0006)
    problems += _table_matches_registry(cur, rows, "interaction_rejections", "interaction_rejections",
                                        "day = %s", (day,), f"day {day}")
    return problems


def check_article_content(cur, run: Run) -> list[str]:
    dag_id = "ecommerce_ml_article_content"

    start, _ = _window("0 3 * * *", run)
    day = start.date()
    problems, rows = _registry_problems(cur, run, dag_id, day.isoformat(), [
        ("article_content", "artifact"), ("article_features", "table"), ("article_changes", "table")])
    # article_features holds the newest drop: its snapshot_day rows match the registry when current
    problems += _table_matches_registry(cur, rows, "article_features", "article_features", "snapshot_day = %s",
                                        (day,), f"snapshot_day {day}")
    problems += _table_matches_registry(cur, rows, "article_changes", "article_changes", "day = %s", (day,),
                                        f"day {day}")
    return problems


def check_article_embeddings(cur, run: Run) -> list[str]:
    # Only articles whose text/image hash or model changed are recomputed: a run after an
    # unchanged article_content writes no vector row (rows of a recomputing run carry its
    # run_id). What every successful run leaves: each current article has a current sentence
    # and TF-IDF vector, and the registry row of each table (versioned by model) matches it.
    dag_id = "ecommerce_ml_article_embeddings"
    problems = []
    for table in ("article_sentence_embeddings", "article_tfidf_vectors", "article_image_embeddings"):
        cur.execute("SELECT row_count FROM dataset_registry WHERE dag_id = %s AND dataset = %s AND kind = 'table'"
                    " ORDER BY registered_at DESC LIMIT 1", (dag_id, table))
        row = cur.fetchone()
        n = _one(cur, f"SELECT count(*) FROM {table}")
        if row is None:
            problems.append(f"ecommerce_ml.dataset_registry: no table row for {table} by {dag_id}")
        elif row[0] != n:
            problems.append(f"ecommerce_ml.{table}: {n} rows, its newest registry row says {row[0]}")
    for table in ("article_sentence_embeddings", "article_tfidf_vectors"):
        stale = _one(cur, f"SELECT count(*) FROM article_features a LEFT JOIN {table} e"
                          " ON e.article_id = a.article_id AND e.content_hash = a.text_hash WHERE e.article_id IS NULL")
        if stale:
            problems.append(f"ecommerce_ml.{table}: {stale} article(s) of article_features without a vector of their"
                            " current text")
    no_image = _one(cur, "SELECT count(*) FROM article_features a LEFT JOIN article_image_embeddings e"
                         " USING (article_id) WHERE a.image_path IS NOT NULL AND e.article_id IS NULL")
    if no_image:
        problems.append(f"ecommerce_ml.article_image_embeddings: {no_image} article(s) with an image without a vector")
    if not _one(cur, "SELECT count(*) FROM article_features"):
        problems.append("ecommerce_ml.article_features: empty (the run had nothing to embed)")
    return problems


def check_customer_features(cur, run: Run) -> list[str]:
    dag_id = "ecommerce_ml_customer_features"

    start, _ = _window("0 4 * * *", run)
    day = start.date()
    problems, rows = _registry_problems(cur, run, dag_id, day.isoformat(), [
        ("customer_features", "artifact"), ("customer_features", "table")])
    problems += _table_matches_registry(cur, rows, "customer_features", "customer_features", "as_of = %s",
                                        (day,), f"as_of {day}")
    return problems


def check_time_series(cur, run: Run) -> list[str]:
    dag_id = "ecommerce_ml_time_series"

    start, _ = _window("0 5 * * *", run)
    day = start.date()
    problems, rows = _registry_problems(cur, run, dag_id, day.isoformat(), [
        ("sales_daily_article", "artifact"), ("sales_daily_article", "table"),
        ("sales_daily_group", "artifact"), ("sales_daily_group", "table")])
    for table in ("sales_daily_article", "sales_daily_group"):
        problems += _table_matches_registry(cur, rows, table, table, "day = %s", (day,), f"day {day}",
                                            nonempty=True)
    return problems


def check_reviews_nlp(cur, run: Run) -> list[str]:
    dag_id = "ecommerce_ml_reviews_nlp"

    start, _ = _window("0 1 * * *", run)
    day = start.date()
    problems, rows = _registry_problems(cur, run, dag_id, day.isoformat(), [
        ("reviews", "table"), ("review_sentiment", "table"), ("review_embeddings", "table"),
        ("article_review_aggregates", "table")])
    source = f"%raw/reviews/dt={day.isoformat()}/reviews.csv"
    problems += _table_matches_registry(cur, rows, "reviews", "reviews", "source_file LIKE %s", (source,),
                                        f"the drop of {day}", nonempty=True)
    unscored = _one(cur, "SELECT count(*) FROM reviews r LEFT JOIN review_sentiment s USING (review_id)"
                         " LEFT JOIN review_embeddings e USING (review_id)"
                         " WHERE r.source_file LIKE %s AND (s.review_id IS NULL OR e.review_id IS NULL)", (source,))
    if unscored:
        problems.append(f"ecommerce_ml.review_sentiment/review_embeddings: {unscored} review(s) of {day} unscored")
    # aggregates as of the day's end (or of a later day, processed since)
    day_end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    reviewed = _one(cur, "SELECT count(DISTINCT article_id) FROM reviews WHERE source_file LIKE %s", (source,))
    aggregated = _one(cur, "SELECT count(*) FROM article_review_aggregates a WHERE a.as_of >= %s AND a.article_id"
                           " IN (SELECT article_id FROM reviews WHERE source_file LIKE %s)", (day_end, source))
    if aggregated != reviewed:
        problems.append(f"ecommerce_ml.article_review_aggregates: {aggregated} of the {reviewed} reviewed"
                        f" articles of {day} aggregated as of {day_end.isoformat()} or later")
    return problems


def check_events_funnels(cur, run: Run) -> list[str]:
    dag_id = "ecommerce_ml_events_funnels"

    start, end = _window("*/15 * * * *", run)
    version = start.strftime("%Y-%m-%dT%H%M")
    problems, rows = _registry_problems(cur, run, dag_id, version, [
        ("funnel_article", "artifact"), ("event_sessions", "artifact"), ("funnel_interval", "table"),
        ("funnel_article", "table"), ("event_rejections", "table")])
    active = _one(cur, "SELECT active_sessions FROM funnel_interval WHERE slot_start = %s", (start,))
    if active is None:
        problems.append(f"ecommerce_ml.funnel_interval: no row for slot_start {start.isoformat()}")
    for table in ("funnel_article", "event_rejections"):
        problems += _table_matches_registry(cur, rows, table, table, "slot_start >= %s AND slot_start < %s",
                                            (start, end), f"slot {version}")
    # the sessions live in the lake (migration 0007): the slot's registered file, one row per active session
    sessions = rows.get(("event_sessions", "artifact"))
    if sessions and run.get("lake_dir") and "/curated/" in sessions[0]:
        path = Path(run["lake_dir"]) / "curated" / sessions[0].split("/curated/", 1)[1]
        if path.is_file():
            import duckdb

            with duckdb.connect() as con:
                n = con.execute("SELECT count(*) FROM read_parquet(?)", [str(path)]).fetchone()[0]
            if n != sessions[1] or (active is not None and n != active):
                problems.append(f"ecommerce_ml lake: event_sessions v={version}: {n} rows in {path.name}, the"
                                f" registry says {sessions[1]}, funnel_interval {active} active sessions")
    return problems


# -- looklyy --------------------------------------------------------------------------------------
LOOKLYY_STEPS = ("global_database_refresh", "user_database_sync", "surface_for_manual_review", "wait_for_manual_review",
                 "apply_model_learning", "send_completion_notification")


def check_looklyy_crawler(cur, run: Run) -> list[str]:
    key = run["run_key"]
    problems = []
    cur.execute("SELECT step, status, finished_at, details FROM pipeline_logs WHERE run_id = %s", (key,))
    steps = {s: (st, fin, det) for s, st, fin, det in cur.fetchall()}
    for step in LOOKLYY_STEPS:
        if step not in steps:
            problems.append(f"looklyy.pipeline_logs: no row for step {step} of run {key}")
        elif steps[step][0] != "success" or not _in_run(steps[step][1], run):
            problems.append(f"looklyy.pipeline_logs: step {step} is {steps[step][0]}, finished {steps[step][1]}"
                            " (expected success within the run)")
    crawled = (steps.get("global_database_refresh", (None, None, {}))[2] or {}).get("images_crawled")
    lo, hi = _bounds(run)
    if crawled and not _one(cur, "SELECT count(*) FROM global_images WHERE source = 'harper-bazaar'"
                                 " AND crawled_at BETWEEN %s AND %s", (lo, hi)):
        problems.append(f"looklyy.global_images: the crawl reported {crawled} images, none crawled during the run")
    cur.execute("SELECT id, status, opened_at FROM review_sessions WHERE run_id = %s", (key,))
    session = cur.fetchone()
    if session is None:
        problems.append(f"looklyy.review_sessions: no review session for run {key}")
    else:
        if not _in_run(session[2], run):
            problems.append(f"looklyy.review_sessions: session {session[0]} opened at {session[2]}, not during the run")
        # a review that timed out re-applies the previous patterns and writes none
        if session[1] == "completed" and not _one(
                cur, "SELECT count(*) FROM learning_patterns WHERE session_id = %s", (session[0],)):
            problems.append(f"looklyy.learning_patterns: no pattern learnt from the completed review {session[0]}")
    return problems + _mail_problem(run, f"Crawler pipeline {key}", "summary mail")


# -- hss_workflow ---------------------------------------------------------------------------------
HSS_MODELS = 5  # the training service's five models (domains/hss_workflow/local/training.py)


def check_comprehensive_analysis(cur, run: Run) -> list[str]:
    key = run["run_key"]
    song_id = (run.get("conf") or {}).get("song_id", "example_song_123")
    cur.execute("SELECT hit_probability, audio, insights, created_at, updated_at FROM song_analyses"
                " WHERE song_id = %s AND run_key = %s", (song_id, key))
    row = cur.fetchone()
    if row is None:
        return [f"hss_workflow.song_analyses: no row for song {song_id!r} with run_key {key}"]
    problems = []
    hit, audio, insights, created, updated = row
    if not 0 <= hit <= 1:
        problems.append(f"hss_workflow.song_analyses: hit_probability {hit} is not in [0, 1]")
    if not audio or not insights:
        problems.append("hss_workflow.song_analyses: empty audio features or insights")
    if not (_in_run(created, run) or _in_run(updated, run)):
        problems.append(f"hss_workflow.song_analyses: row written at {created}/{updated}, not during the run")
    return problems


def _training_problems(cur, training_id: str) -> list[str]:
    cur.execute("SELECT rows, job_id, finished_at FROM training_runs WHERE training_id = %s", (training_id,))
    row = cur.fetchone()
    if row is None:
        return [f"hss_workflow.training_runs: no row for training {training_id!r}"]
    rows, job_id, finished = row
    problems = []
    if job_id is None or finished is None:
        problems.append(f"hss_workflow.training_runs: training {training_id!r} has no job or is not finished")
    stored = _one(cur, "SELECT count(*) FROM training_rows WHERE training_id = %s", (training_id,))
    if not rows or stored != rows:
        problems.append(f"hss_workflow.training_rows: {stored} rows stored for {training_id!r}, the run says {rows}")
    models = _one(cur, "SELECT count(*) FROM training_model_metrics WHERE training_id = %s", (training_id,))
    if models != HSS_MODELS:
        problems.append(f"hss_workflow.training_model_metrics: {models} models for {training_id!r},"
                        f" expected {HSS_MODELS}")
    return problems


def _ensemble_training_ids(cur, run: Run) -> list[str]:
    """The run's training id: from its conf, or its run id (``daily__<training_id>[__attemptN]``,
    domains/hss_workflow/drop.py), else the trainings finished or mailed during the run."""
    conf_id = (run.get("conf") or {}).get("training_id")
    if conf_id:
        return [str(conf_id)]
    if m := re.fullmatch(r"daily__(.+?)(?:__attempt\d+)?", run["run_id"]):
        return [m.group(1)]
    lo, hi = _bounds(run)
    cur.execute("SELECT training_id FROM training_runs WHERE finished_at BETWEEN %s AND %s", (lo, hi))
    ids = {r[0] for r in cur.fetchall()}
    ids |= {m.group(1) for s in _mail_subjects(run) if (m := re.search(r"smart ensemble training (\S+)", s))}
    return sorted(ids)


def check_ml_training_smart_ensemble(cur, run: Run) -> list[str]:
    ids = _ensemble_training_ids(cur, run)
    if not ids:
        return ["hss_workflow.training_runs: no training finished during the run (and no summary mail)"]
    # finished_at keeps the first finish of a training id: the mail is this run's own evidence
    per_id = [_training_problems(cur, training_id)
              + _mail_problem(run, f"smart ensemble training {training_id}", "summary mail") for training_id in ids]
    # discovered by time (no conf, no daily__ run id), another training may have finished meanwhile:
    # one complete training is the run's
    return [] if any(not p for p in per_id) else [p for ps in per_id for p in ps]


def _handed_file(cur, run: Run) -> tuple | None:
    cur.execute("SELECT training_id, attempt, dataset_path, handed_at FROM dataset_files WHERE claimed_by = %s",
                (run["run_key"],))
    return cur.fetchone()


def check_daily_model_training(cur, run: Run) -> list[str]:
    # A run without a new file in the drop folder legitimately hands nothing over (pick_new_dataset
    # and start_training are skipped) and writes nothing. This test drops a new CSV, so the run
    # must have claimed it in dataset_files and started ml_training_smart_ensemble on it, whose
    # training rows are then checked (wait for follow_up_runs() first: this run's success only
    # means the training run was triggered).
    handed = _handed_file(cur, run)
    if handed is None:
        return [f"hss_workflow.dataset_files: no file handed over by run {run['run_key']} (the test drops a new CSV)"]
    training_id, attempt, path, handed_at = handed
    problems = []
    if not _in_run(handed_at, run):
        problems.append(f"hss_workflow.dataset_files: {path} handed over at {handed_at}, not during the run")
    triggered = _training_run_id(training_id, attempt)
    problems += [f"{p} (triggered run ml_training_smart_ensemble/{triggered})"
                 for p in _training_problems(cur, training_id)]
    return problems


def _training_run_id(training_id: str, attempt: int) -> str:
    """domains/hss_workflow/drop.py ``training_run_id``."""
    return f"daily__{training_id}" if attempt == 1 else f"daily__{training_id}__attempt{attempt}"


# -- aurora ----------------------------------------------------------------------------------------
AURORA_MODELS = {"aurora_energy", "aurora_mood", "aurora_sleep_quality"}
AURORA_TARGETS = ("energy", "mood", "sleep_quality")
AURORA_FEATURE_GROUPS = ("activity", "sleep", "exercise", "social")
AURORA_QUALITY_CHECKS = 17  # domains/aurora/quality.py CHECKS
AURORA_QUALITY_GROUPS = {"life_events", "users", "integrations", "gamification"}


def check_ml_training_pipeline(cur, run: Run) -> list[str]:
    key = run["run_key"]
    problems = []
    cur.execute("SELECT model_name, trained_at FROM model_registry WHERE run_key = %s", (key,))
    trained = dict(cur.fetchall())
    for name in sorted(AURORA_MODELS - set(trained)):
        problems.append(f"aurora.model_registry: no version of {name} with run_key {key}")
    problems += [f"aurora.model_registry: {name} registered at {at}, not during the run"
                 for name, at in trained.items() if not _in_run(at, run)]
    cur.execute("SELECT name FROM training_datasets WHERE run_key = %s", (key,))
    names = {r[0] for r in cur.fetchall()}
    if not any(n.startswith("snapshot:") for n in names):
        problems.append(f"aurora.training_datasets: no training snapshot for run_key {key}")
    problems += [f"aurora.training_datasets: no features:{t} for run_key {key}"
                 for t in AURORA_TARGETS if f"features:{t}" not in names]
    cur.execute("SELECT payload->'data'->>'model_name' FROM event_outbox WHERE topic = 'aurora.training'"
                " AND payload->'data'->>'run_key' = %s", (key,))
    events = {r[0] for r in cur.fetchall()}
    problems += [f"aurora.event_outbox: no aurora.model.trained event for {name} of run_key {key}"
                 for name in sorted(AURORA_MODELS - events)]
    return problems


def _datasets_of_run(cur, run: Run, prefix: str) -> dict[datetime, dict[str, int]]:
    """as_of -> {name: rows} of the ``training_datasets`` whose run key starts with ``prefix``
    (aurora keys a feature or prediction run by its as_of) written during the run."""
    lo, hi = _bounds(run)
    cur.execute("SELECT as_of, name, rows FROM training_datasets WHERE run_key LIKE %s"
                " AND created_at BETWEEN %s AND %s", (prefix + "%", lo, hi))
    out: dict[datetime, dict[str, int]] = {}
    for as_of, name, rows in cur.fetchall():
        out.setdefault(as_of, {})[name] = rows
    return out


def check_feature_engineering(cur, run: Run) -> list[str]:
    groups = [f"features:{g}" for g in AURORA_FEATURE_GROUPS]
    written = {as_of: d for as_of, d in _datasets_of_run(cur, run, "feature_store:").items()
               if all(g in d for g in groups)}
    if not written:
        return ["aurora.training_datasets: no complete set of the four feature groups computed during the run"]
    as_of = max(written)
    problems = []
    _, tick = _window("0 */6 * * *", run)  # the last 6-hour tick at the trigger: the run's as_of
    if as_of != tick:
        problems.append(f"aurora.feature_store: as_of {as_of} is not {tick}, the end of the last complete 6-hour interval")
    users = max(written[as_of][g] for g in groups)
    stored = _one(cur, "SELECT count(*) FROM feature_store WHERE as_of = %s", (as_of,))
    if not stored or stored < users:
        problems.append(f"aurora.feature_store: {stored} rows with as_of {as_of.isoformat()}, the groups have {users}"
                        " users")
    return problems


def check_prediction_pipeline(cur, run: Run) -> list[str]:
    written = {as_of: d for as_of, d in _datasets_of_run(cur, run, "predictions:").items() if "cohort" in d}
    if not written:
        return ["aurora.training_datasets: no prediction cohort selected during the run"]
    as_of = max(written)
    problems = []
    cur.execute("SELECT target, count(*) FROM predictions WHERE as_of = %s GROUP BY target", (as_of,))
    stored = dict(cur.fetchall())
    for target in AURORA_TARGETS:
        # stored in parts, one per chunk of users (``predictions:<target>#000000``...; datasets.save_parts)
        parts = [rows for name, rows in written[as_of].items() if re.fullmatch(rf"predictions:{target}#\d{{6}}", name)]
        expected = sum(parts) if f"predictions:{target}#parts" in written[as_of] else None
        if expected is None:
            problems.append(f"aurora.training_datasets: no {target} predictions computed during the run")
        elif stored.get(target, 0) < expected or (written[as_of]["cohort"] and not expected):
            problems.append(f"aurora.predictions: {stored.get(target, 0)} {target} rows with as_of"
                            f" {as_of.isoformat()}, {expected} computed for {written[as_of]['cohort']} users")
    return problems


def check_data_quality(cur, run: Run) -> list[str]:
    key = run["run_key"]
    cur.execute("SELECT checked_at, critical, errors, warnings, alert_sent_at FROM quality_runs WHERE run_key = %s",
                (key,))
    row = cur.fetchone()
    if row is None:
        return [f"aurora.quality_runs: no report with run_key {key}"]
    checked_at, critical, errors, warnings, alert_sent_at = row
    problems = []
    if not _in_run(checked_at, run):
        problems.append(f"aurora.quality_runs: report checked at {checked_at}, not during the run")
    cur.execute("SELECT check_group, severity, passed FROM quality_results WHERE run_key = %s", (key,))
    results = cur.fetchall()
    if len(results) != AURORA_QUALITY_CHECKS:
        problems.append(f"aurora.quality_results: {len(results)} checks for run_key {key},"
                        f" expected {AURORA_QUALITY_CHECKS}")
    missing = AURORA_QUALITY_GROUPS - {g for g, _, _ in results}
    if missing:
        problems.append(f"aurora.quality_results: no result of group(s) {', '.join(sorted(missing))}")
    failed = {s: sum(1 for _, sev, ok in results if sev == s and not ok) for s in ("critical", "error", "warning")}
    if (failed["critical"], failed["error"], failed["warning"]) != (critical, errors, warnings):
        problems.append(f"aurora.quality_runs: counts {critical}/{errors}/{warnings} (critical/error/warning) do not"
                        f" match the failed results {failed}")
    if critical:  # critical findings only are mailed, once per run
        if not _in_run(alert_sent_at, run):
            problems.append(f"aurora.quality_runs: {critical} critical finding(s), alert sent at {alert_sent_at}")
        problems += _mail_problem(run, "ALERT data quality", "critical-findings alert")
    return problems


# -- referral --------------------------------------------------------------------------------------
def check_bullhorn_sync(cur, run: Run) -> list[str]:
    # A run that changes nothing (no Bullhorn record modified, none to replay, no match new,
    # updated or retired) writes nothing, not even its watermarks, and skips its summary
    # mail. What every successful run leaves: both entities synced (watermarks), every live
    # record embedded from its current content, matching done through the newest embedding;
    # and when it changed anything, the summary mail naming the run.
    run_id = run["run_id"]
    lo, hi = _bounds(run)
    problems = []
    cur.execute("SELECT entity, updated_at FROM sync_watermarks")
    marks = dict(cur.fetchall())
    problems += [f"referral.sync_watermarks: no watermark for {e}" for e in ("Candidate", "JobOrder") if e not in marks]
    for source, target, key in (("candidates", "candidate_embeddings", "candidate_id"),
                                ("positions", "position_embeddings", "position_id")):
        stale = _one(cur, f"SELECT count(*) FROM {source} s LEFT JOIN {target} e ON e.{key} = s.id"
                          f" AND e.content_hash = s.content_hash WHERE NOT s.is_deleted AND e.{key} IS NULL")
        if stale:
            problems.append(f"referral.{target}: {stale} live {source} without an embedding of their current content")
    if not _one(cur, "SELECT count(*) FROM candidates WHERE NOT is_deleted"):
        problems.append("referral.candidates: no live candidate synced")
    cur.execute("SELECT (SELECT candidates_through FROM matching_state)"
                " >= coalesce((SELECT max(e.embedded_at) FROM candidates c JOIN candidate_embeddings e"
                "              ON e.candidate_id = c.id WHERE NOT c.is_deleted), '-infinity'),"
                " (SELECT positions_through FROM matching_state)"
                " >= coalesce((SELECT max(e.embedded_at) FROM positions p JOIN position_embeddings e"
                "              ON e.position_id = p.id WHERE p.is_open IS TRUE AND NOT p.is_deleted), '-infinity')")
    c_done, p_done = cur.fetchone()
    if not (c_done and p_done):
        problems.append("referral.matching_state: matching has not covered the newest embeddings"
                        f" (candidates {c_done}, positions {p_done})")
    changed = (any(_in_run(at, run) for at in marks.values())
               or _one(cur, "SELECT count(*) FROM matches WHERE run_id = %s", (run_id,))
               or _one(cur, "SELECT count(*) FROM rejected_records WHERE last_run_id = %s OR resolved_run_id = %s",
                       (run_id, run_id))
               or _one(cur, "SELECT (SELECT count(*) FROM candidate_embeddings WHERE embedded_at BETWEEN %s AND %s)"
                            " + (SELECT count(*) FROM position_embeddings WHERE embedded_at BETWEEN %s AND %s)",
                       (lo, hi, lo, hi)))
    if changed:
        problems += _mail_problem(run, f"Bullhorn sync {run_id}", "summary mail")
    return problems


CHECKS: dict[str, Check] = {
    "looklyy_crawler_pipeline": check_looklyy_crawler,
    "ecommerce_ml_user_item_interactions": check_user_item_interactions,
    "ecommerce_ml_article_content": check_article_content,
    "ecommerce_ml_article_embeddings": check_article_embeddings,
    "ecommerce_ml_customer_features": check_customer_features,
    "ecommerce_ml_time_series": check_time_series,
    "ecommerce_ml_reviews_nlp": check_reviews_nlp,
    "ecommerce_ml_events_funnels": check_events_funnels,
    "comprehensive_analysis": check_comprehensive_analysis,
    "ml_training_smart_ensemble": check_ml_training_smart_ensemble,
    "daily_model_training": check_daily_model_training,
    "ml_training_pipeline": check_ml_training_pipeline,
    "feature_engineering_pipeline": check_feature_engineering,
    "prediction_pipeline": check_prediction_pipeline,
    "data_quality_pipeline": check_data_quality,
    "bullhorn_sync_optimized": check_bullhorn_sync,
}


def output_problems(dag_id: str, cur, run: dict) -> list[str]:
    """What is missing of the run's outputs (empty when all are present)."""
    return CHECKS[dag_id](cur, run)


def follow_up_runs(dag_id: str, cur, run: dict) -> list[tuple[str, str]]:
    """(dag_id, run_id) of the runs ``run`` triggered, to wait for before checking it."""
    if dag_id == "daily_model_training" and (handed := _handed_file(cur, run)) is not None:
        return [("ml_training_smart_ensemble", _training_run_id(handed[0], handed[1]))]
    return []
