"""data_quality_pipeline's checks, declared with pandera, and the quality report.

Each of the seed's checks is one named pandera ``Check`` with a severity (``CHECKS``); the
checks of a group form one ``DataFrameSchema`` over one frame read from PostgreSQL, and a
lazy validation collects every failing row of every check at once. A finding is the check,
its severity, the rows checked and failing, and up to ``SAMPLE_IDS`` sample ids.

| check                                    | severity | a row fails when                                      |
|------------------------------------------|----------|-------------------------------------------------------|
| life_events.no_duplicates                | error    | same user, type and start as an earlier event         |
| life_events.valid_timestamps             | error    | it starts after the check's as-of time (future)       |
| life_events.valid_duration               | error    | duration <= 0 or >= 24 h                              |
| life_events.levels_in_range              | critical | energy or mood outside 1-10                           |
| life_events.required_fields              | critical | user, type, start, duration, energy or mood missing   |
| users.valid_email_format                 | error    | the email is missing or malformed                     |
| users.unique_email                       | critical | the email (case-insensitive) belongs to an earlier user |
| users.valid_subscription_tier            | critical | the tier is not free, premium or pro                  |
| users.active_status_consistency          | warning  | active with a deactivation time, or inactive without  |
| integrations.data_freshness              | warning  | an active integration last synced 48 h or more ago   |
| integrations.valid_provider              | error    | the provider is not a supported one                   |
| integrations.sync_success_rate           | error    | under 80 % of its last 7 days' syncs (>= 4) succeeded |
| integrations.data_completeness           | warning  | a successful sync of the last 7 days got < 90 % of the records expected |
| gamification.no_negative_xp              | critical | total XP below zero                                   |
| gamification.level_xp_consistency        | error    | the level is not the level of its XP (XP >= 0)        |
| gamification.valid_achievement_unlocks   | error    | unlocked below the achievement's level, in the future or before sign-up |
| gamification.no_orphaned_records         | warning  | a gamification row of a missing user or achievement   |

Life events are checked over the last ``LOOKBACK_DAYS`` days of arrivals (``created_at``);
the other groups over all their rows. Critical findings are mailed (``alert``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from domains.aurora.app import (
    EMAIL_PATTERN,
    LEVEL_MAX,
    LEVEL_MIN,
    MAX_EVENT_MINUTES,
    PROVIDERS,
    SUBSCRIPTION_TIERS,
    XP_PER_LEVEL_UNIT,
)

log = logging.getLogger(__name__)

SEVERITIES = ("critical", "error", "warning")
GROUPS = ("life_events", "users", "integrations", "gamification")
LOOKBACK_DAYS = 7
FRESHNESS_HOURS = 48
MIN_SYNC_SUCCESS = 0.8
MIN_SYNCS_FOR_RATE = 4
MIN_COMPLETENESS = 0.9
SAMPLE_IDS = 10


@dataclass(frozen=True)
class QualityCheck:
    name: str  # <group>.<check>
    severity: str
    description: str
    frame: str  # the frame it validates
    rule: Callable[[pd.DataFrame], pd.Series]  # True for a good row

    @property
    def group(self) -> str:
        return self.name.split(".", 1)[0]

    def pandera(self) -> pa.Check:
        return pa.Check(self.rule, name=self.name, ignore_na=False)


def _level_ok(s: pd.Series) -> pd.Series:
    return s.isna() | s.between(LEVEL_MIN, LEVEL_MAX)


def _level_of(xp: pd.Series) -> pd.Series:
    return np.floor(np.sqrt((xp.clip(lower=0) // XP_PER_LEVEL_UNIT).astype(float))) + 1


REQUIRED_EVENT_FIELDS = ["user_id", "event_type", "started_at", "duration_minutes", "energy_level", "mood_level"]

CHECKS: tuple[QualityCheck, ...] = (
    QualityCheck("life_events.no_duplicates", "error", "duplicate life event (same user, type and start)",
                 "life_events", lambda d: ~d.duplicated(["user_id", "event_type", "started_at"], keep="first")
                 | d["started_at"].isna()),
    QualityCheck("life_events.valid_timestamps", "error", "life event starts in the future",
                 "life_events", lambda d: d["started_at"].isna() | (d["started_at"] <= d["as_of"])),
    QualityCheck("life_events.valid_duration", "error", "duration not > 0 and < 24 h",
                 "life_events", lambda d: d["duration_minutes"].isna()
                 | ((d["duration_minutes"] > 0) & (d["duration_minutes"] < MAX_EVENT_MINUTES))),
    QualityCheck("life_events.levels_in_range", "critical", f"energy or mood outside {LEVEL_MIN}-{LEVEL_MAX}",
                 "life_events", lambda d: _level_ok(d["energy_level"]) & _level_ok(d["mood_level"])),
    QualityCheck("life_events.required_fields", "critical", "a required field is missing",
                 "life_events", lambda d: d[REQUIRED_EVENT_FIELDS].notna().all(axis=1)),
    QualityCheck("users.valid_email_format", "error", "missing or malformed email",
                 "users", lambda d: d["email"].fillna("").str.fullmatch(EMAIL_PATTERN)),
    QualityCheck("users.unique_email", "critical", "email already used by another user",
                 "users", lambda d: d["email"].isna() | ~d["email"].str.lower().duplicated(keep="first")),
    QualityCheck("users.valid_subscription_tier", "critical", f"tier not one of {', '.join(SUBSCRIPTION_TIERS)}",
                 "users", lambda d: d["subscription_tier"].isin(SUBSCRIPTION_TIERS)),
    QualityCheck("users.active_status_consistency", "warning", "is_active disagrees with deactivated_at",
                 "users", lambda d: d["is_active"] == d["deactivated_at"].isna()),
    QualityCheck("integrations.data_freshness", "warning", f"active integration not synced for {FRESHNESS_HOURS} h",
                 "integrations", lambda d: (d["status"] != "active")
                 | (d["last_sync_at"] > d["as_of"] - pd.Timedelta(hours=FRESHNESS_HOURS))),
    QualityCheck("integrations.valid_provider", "error", "unsupported provider",
                 "integrations", lambda d: d["provider"].isin(PROVIDERS)),
    QualityCheck("integrations.sync_success_rate", "error",
                 f"under {MIN_SYNC_SUCCESS:.0%} of the last 7 days' syncs succeeded",
                 "integrations", lambda d: (d["syncs_7d"] < MIN_SYNCS_FOR_RATE)
                 | (d["successful_7d"] >= MIN_SYNC_SUCCESS * d["syncs_7d"])),
    QualityCheck("integrations.data_completeness", "warning",
                 f"a successful sync received under {MIN_COMPLETENESS:.0%} of the records expected",
                 "integrations", lambda d: d["incomplete_7d"] == 0),
    QualityCheck("gamification.no_negative_xp", "critical", "negative total XP",
                 "user_gamification", lambda d: d["total_xp"] >= 0),
    QualityCheck("gamification.level_xp_consistency", "error", "level does not match total XP",
                 "user_gamification", lambda d: (d["total_xp"] < 0) | (d["level"] == _level_of(d["total_xp"]))),
    QualityCheck("gamification.valid_achievement_unlocks", "error",
                 "achievement unlocked below its level, in the future or before sign-up",
                 "user_achievements", lambda d: ~(d["user_exists"] & d["achievement_exists"])
                 | ((d["user_level"] >= d["required_level"]) & (d["unlocked_at"] <= d["as_of"])
                    & (d["unlocked_at"] >= d["user_created_at"]))),
    QualityCheck("gamification.no_orphaned_records", "warning", "gamification row of a missing user or achievement",
                 "gamification_records", lambda d: d["user_exists"] & d["achievement_exists"]),
)
CHECKS_BY_NAME = {c.name: c for c in CHECKS}
# frame -> the column whose values are reported as sample ids
ID_COLUMNS = {"life_events": "id", "users": "id", "integrations": "id", "user_gamification": "user_id",
              "user_achievements": "id", "gamification_records": "record"}


def schema(frame: str) -> pa.DataFrameSchema:
    """The pandera schema of one frame: its id column (unique, not null) and its checks."""
    id_col = ID_COLUMNS[frame]
    return pa.DataFrameSchema(
        columns={id_col: pa.Column(nullable=False, unique=frame != "life_events")},
        checks=[c.pandera() for c in CHECKS if c.frame == frame],
        name=frame,
    )


# -- the frames, read at as_of --------------------------------------------------------------------
FRAME_QUERIES = {
    "life_events": """
        SELECT id, user_id, event_type, started_at, duration_minutes, energy_level, mood_level
          FROM life_events WHERE created_at >= %(since)s AND created_at <= %(as_of)s ORDER BY id""",
    "users": "SELECT id, email, subscription_tier, is_active, deactivated_at FROM users ORDER BY id",
    "integrations": f"""
        SELECT i.id, i.provider, i.status, i.last_sync_at,
               count(s.id) AS syncs_7d,
               count(s.id) FILTER (WHERE s.status = 'success') AS successful_7d,
               count(s.id) FILTER (WHERE s.status = 'success' AND s.records_expected > 0
                                   AND coalesce(s.records_received, 0) < {MIN_COMPLETENESS} * s.records_expected)
                   AS incomplete_7d
          FROM integrations i
          LEFT JOIN integration_syncs s ON s.integration_id = i.id
                AND s.started_at > %(as_of)s - interval '7 days' AND s.started_at <= %(as_of)s
         GROUP BY i.id ORDER BY i.id""",
    "user_gamification": "SELECT user_id, total_xp, level FROM user_gamification ORDER BY user_id",
    "user_achievements": """
        SELECT ua.id, ua.user_id, ua.achievement_id, ua.unlocked_at,
               u.id IS NOT NULL AS user_exists, a.id IS NOT NULL AS achievement_exists,
               coalesce(g.level, 1) AS user_level, a.required_level, u.created_at AS user_created_at
          FROM user_achievements ua
          LEFT JOIN users u ON u.id = ua.user_id
          LEFT JOIN achievements a ON a.id = ua.achievement_id
          LEFT JOIN user_gamification g ON g.user_id = ua.user_id
         ORDER BY ua.id""",
    "gamification_records": """
        SELECT 'user_gamification:' || g.user_id AS record, u.id IS NOT NULL AS user_exists, true AS achievement_exists
          FROM user_gamification g LEFT JOIN users u ON u.id = g.user_id
        UNION ALL
        SELECT 'user_achievements:' || ua.id, u.id IS NOT NULL, a.id IS NOT NULL
          FROM user_achievements ua LEFT JOIN users u ON u.id = ua.user_id
          LEFT JOIN achievements a ON a.id = ua.achievement_id""",
}
GROUP_FRAMES = {
    "life_events": ("life_events",),
    "users": ("users",),
    "integrations": ("integrations",),
    "gamification": ("user_gamification", "user_achievements", "gamification_records"),
}
# the tables each group's frames read (its lineage)
GROUP_TABLES = {
    "life_events": ("life_events",),
    "users": ("users",),
    "integrations": ("integrations", "integration_syncs"),
    "gamification": ("user_gamification", "user_achievements", "users", "achievements"),
}


def read_frame(conn, frame: str, as_of) -> pd.DataFrame:
    as_of = pd.Timestamp(as_of).tz_convert("UTC") if pd.Timestamp(as_of).tzinfo else pd.Timestamp(as_of, tz="UTC")
    params = {"as_of": as_of.to_pydatetime(), "since": (as_of - timedelta(days=LOOKBACK_DAYS)).to_pydatetime()}
    with conn.cursor() as cur:
        cur.execute(FRAME_QUERIES[frame], params)
        cols = [d[0] for d in cur.description]
        rows = cur.fetchall()
    conn.commit()
    df = pd.DataFrame(rows, columns=cols)
    for col in df.columns:
        if col.endswith("_at"):
            df[col] = pd.to_datetime(df[col], utc=True)
    for col in ("user_id", "duration_minutes", "energy_level", "mood_level", "total_xp", "level",
                "user_level", "required_level", "syncs_7d", "successful_7d", "incomplete_7d"):
        if col in df.columns:
            df[col] = pd.to_numeric(df[col]).astype("Float64" if df[col].isna().any() else "int64")
    if "is_active" in df.columns:
        df["is_active"] = df["is_active"].astype(bool)
    for col in ("user_exists", "achievement_exists"):
        if col in df.columns:
            df[col] = df[col].astype(bool)
    df["as_of"] = as_of
    return df


# -- running the checks ---------------------------------------------------------------------------
def validate(frame_name: str, df: pd.DataFrame) -> list[dict[str, Any]]:
    """Run the frame's schema lazily; one finding per check (failed or not)."""
    failing: dict[str, set[int]] = {c.name: set() for c in CHECKS if c.frame == frame_name}
    try:
        schema(frame_name).validate(df, lazy=True)
    except pa.errors.SchemaErrors as e:
        cases = e.failure_cases
        broken = cases[cases["index"].isna() & cases["check"].isin(list(failing))]
        if len(broken):  # a check that raised instead of answering: never a silent pass
            cases_text = broken[["check", "failure_case"]].to_dict("records")
            raise RuntimeError(f"{frame_name}: checks could not run: {cases_text}") from e
        for check_name, idx in cases[["check", "index"]].dropna().itertuples(index=False):
            if check_name in failing:
                failing[check_name].add(int(idx))
            else:  # the schema's own column checks (id unique/not null): a broken extract, not data
                raise RuntimeError(f"{frame_name}: {check_name} failed on the frame itself") from e
    id_col = ID_COLUMNS[frame_name]
    out = []
    for name, rows in failing.items():
        c = CHECKS_BY_NAME[name]
        ids = sorted(df.loc[sorted(rows), id_col].tolist(), key=lambda v: (str(type(v)), v))
        out.append({
            "check_name": name, "check_group": c.group, "severity": c.severity, "description": c.description,
            "checked_rows": int(len(df)), "failed_rows": len(rows),
            "failure_rate": round(len(rows) / len(df), 6) if len(df) else 0.0,
            "sample_ids": [v if isinstance(v, str) else int(v) for v in ids[:SAMPLE_IDS]],
            "passed": not rows,
        })
    return out


def run_group(conn, group: str, as_of) -> list[dict[str, Any]]:
    """Every check of one group at ``as_of``: a finding per check (JSON-ready)."""
    out = []
    for frame in GROUP_FRAMES[group]:
        out.extend(validate(frame, read_frame(conn, frame, as_of)))
    return out


def status_of(findings: list[dict]) -> str:
    failed = {f["severity"] for f in findings if not f["passed"]}
    return next((s for s in SEVERITIES if s in failed), "passed")


def store_report(conn, run_key: str, as_of, findings: list[dict]) -> dict[str, Any]:
    """Store the run's report and every check's result; a rerun replaces its own rows."""
    failed = [f for f in findings if not f["passed"]]
    counts = {s: sum(1 for f in failed if f["severity"] == s) for s in SEVERITIES}
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO quality_runs (run_key, as_of, status, critical, errors, warnings) VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (run_key) DO UPDATE SET as_of = EXCLUDED.as_of, status = EXCLUDED.status,"
            " critical = EXCLUDED.critical, errors = EXCLUDED.errors, warnings = EXCLUDED.warnings, checked_at = now()",
            (run_key, as_of, status_of(findings), counts["critical"], counts["error"], counts["warning"]),
        )
        cur.execute("DELETE FROM quality_results WHERE run_key = %s", (run_key,))
        for f in findings:
            cur.execute(
                "INSERT INTO quality_results (run_key, check_name, check_group, severity, description, checked_rows,"
                " failed_rows, failure_rate, sample_ids, passed) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (run_key, f["check_name"], f["check_group"], f["severity"], f["description"], f["checked_rows"],
                 f["failed_rows"], f["failure_rate"], json.dumps(f["sample_ids"]), f["passed"]),
            )
    conn.commit()
    return {"status": status_of(findings), "checks": len(findings), **counts}


def critical_findings(findings: list[dict]) -> list[dict]:
    return [f for f in findings if not f["passed"] and f["severity"] == "critical"]


def alert_facts(run_key: str, as_of, findings: list[dict]) -> tuple[dict, dict]:
    crit = critical_findings(findings)
    facts = {"run": run_key, "as of": str(as_of), "critical checks failed": len(crit),
             "rows failing": sum(f["failed_rows"] for f in crit)}
    table = [{"check": f["check_name"], "failing": f["failed_rows"], "of": f["checked_rows"],
              "sample ids": ", ".join(map(str, f["sample_ids"]))} for f in crit]
    return facts, {"Critical findings": table}


def alert_pending(conn, run_key: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT alert_sent_at IS NULL FROM quality_runs WHERE run_key = %s", (run_key,))
        row = cur.fetchone()
    conn.commit()
    return bool(row and row[0])


def mark_alerted(conn, run_key: str, to: list[str]) -> None:
    with conn.cursor() as cur:
        cur.execute("UPDATE quality_runs SET alert_sent_at = now(), alert_to = %s WHERE run_key = %s", (to, run_key))
    conn.commit()


# -- the DAG's steps ----------------------------------------------------------------------------------
def check_group(group: str, as_of) -> list[dict[str, Any]]:
    """One check group against ``aurora_postgres``: a finding per check."""
    from contextlib import closing

    from domains.aurora.db import DATABASE, record_tables

    with closing(DATABASE.connect()) as conn:
        findings = run_group(conn, group, as_of)
    record_tables(inputs=GROUP_TABLES[group])
    for f in findings:
        if not f["passed"]:
            log.warning("%s [%s]: %d of %d rows fail (%s), e.g. %s", f["check_name"], f["severity"],
                        f["failed_rows"], f["checked_rows"], f["description"], f["sample_ids"])
    return findings


def store_quality_report(run_key: str, as_of, groups: list[list[dict]]) -> dict[str, Any]:
    from contextlib import closing

    from domains.aurora.db import DATABASE, record_tables

    findings = [f for g in groups for f in g]
    with closing(DATABASE.connect()) as conn:
        summary = store_report(conn, run_key, as_of, findings)
    record_tables(outputs=["quality_runs", "quality_results"])
    log.info("quality report %s: %s", run_key, summary)
    return {"run_key": run_key, **summary, "findings": [f for f in findings if not f["passed"]]}


def send_critical_alerts(report: dict[str, Any], as_of) -> dict[str, Any]:
    """Mail the critical findings (check, count, sample ids), once per run; nothing otherwise."""
    from contextlib import closing

    from domains.aurora.db import DATABASE, record_tables
    from shared.notifications import send_summary

    crit = critical_findings(report["findings"])
    run_key = report["run_key"]
    with closing(DATABASE.connect()) as conn:
        pending = alert_pending(conn, run_key)  # the run's stored report: its alert not sent yet
        record_tables(inputs=["quality_runs"])
        if not crit:
            return {"sent": False, "reason": "no critical finding"}
        if not pending:
            return {"sent": False, "reason": "already sent for this run"}
        facts, tables = alert_facts(run_key, as_of, crit)
        to = send_summary("aurora", f"ALERT data quality: {len(crit)} critical check(s) failed", facts, tables)
        mark_alerted(conn, run_key, to)
    record_tables(inputs=["quality_runs"], outputs=["quality_runs"])  # alert_sent_at: once per run
    return {"sent": True, "to": to, "checks": [f["check_name"] for f in crit]}
