"""Alerts about the platform itself, mailed to the platform's alert address.

``python -m devplatform.alerts``: supervisord's event listener (``devplatform.supervisor``),
running as the platform's user. It mails ``PLATFORM_ALERT_EMAIL`` (default
``platform-alerts@platform.local``; locally the mail sink) when

- a platform process exits without being asked to (``PROCESS_STATE_EXITED``: supervisord is
  restarting it; the mail quotes supervisord's line, e.g. ``terminated by SIGKILL``),
- supervisord gives up on one (``PROCESS_STATE_FATAL``: it died on every one of its tries),
- a team's Celery worker is not running (checked every ``PLATFORM_ALERT_CHECK_SECONDS``),
- a team's queue backs up: at least ``PLATFORM_ALERT_QUEUE_LENGTH`` messages waiting in the
  team's Redis broker, or a task instance of the team ``queued`` for longer than
  ``PLATFORM_ALERT_QUEUED_SECONDS`` in the metadata database,
- a trigger waits for a triggerer (no triggerer has taken it) for longer than
  ``PLATFORM_ALERT_QUEUED_SECONDS``: its team's triggerer is not running, or the trigger has no
  team (its DAG's bundle has none, or its team was deleted). In multi-team mode a team's
  triggerer takes only its own team's triggers, and the platform runs no team-less triggerer
  (``PLATFORM_IDLE_SETTINGS=previous`` starts one): nothing runs such a trigger, and its
  deferred task would wait, unseen, until its trigger's timeout (forever without one).

The same alert (kind and subject) is mailed at most once per ``PLATFORM_ALERT_REPEAT_SECONDS``;
how many were held back is said in the next one. A mail that cannot be sent (the mail sink is
the one restarting) is kept and sent again on the next tick. Everything is logged to stderr
(``.local/logs/platform-alerts.log``); stdout belongs to supervisord's listener protocol.
"""

from __future__ import annotations

import json
import os
import smtplib
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

DEFAULT_ALERT_EMAIL = "platform-alerts@platform.local"
SENDER = "platform@platform.local"
SUBJECT_PREFIX = "[platform alert]"


def log(msg: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{stamp} {msg}", file=sys.stderr, flush=True)


@dataclass
class AlertSettings:
    to: str = DEFAULT_ALERT_EMAIL
    smtp_port: int = 1025
    check_seconds: float = 30
    queue_length: int = 50
    queued_seconds: float = 300
    repeat_seconds: float = 600
    teams: list[str] = field(default_factory=list)
    brokers: dict[str, str] = field(default_factory=dict)  # team -> its Redis broker URL
    queue: str = "default"
    db_url: str = ""
    supervisor_log: str = ""

    @classmethod
    def from_env(cls, env: dict[str, str]) -> AlertSettings:
        s = json.loads(env["PLATFORM_ALERTS"])
        return cls(**s)


class Alerts:
    def __init__(self, settings: AlertSettings, rpc=None) -> None:
        self.s = settings
        self.rpc = rpc
        self.last_sent: dict[str, float] = {}
        self.held: dict[str, int] = {}
        self.outbox: list[EmailMessage] = []
        self.last_check = 0.0

    # -- mail ---------------------------------------------------------------------------
    def alert(self, key: str, subject: str, body: str) -> bool:
        now = time.monotonic()
        if now - self.last_sent.get(key, -1e9) < self.s.repeat_seconds:
            self.held[key] = self.held.get(key, 0) + 1
            log(f"held back (sent less than {self.s.repeat_seconds:.0f} s ago): {subject}")
            return False
        self.last_sent[key] = now
        held = self.held.pop(key, 0)
        if held:
            body += f"\n\n({held} more alert(s) of this kind held back since the last mail.)"
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = SENDER, self.s.to, f"{SUBJECT_PREFIX} {subject}"
        msg["X-Platform-Alert"] = key
        msg.set_content(body + "\n")
        log(f"alert: {subject}")
        self.outbox.append(msg)
        self.flush()
        return True

    def flush(self) -> None:
        while self.outbox:
            try:
                with smtplib.SMTP("127.0.0.1", self.s.smtp_port, timeout=5) as smtp:
                    smtp.send_message(self.outbox[0])
            except (OSError, smtplib.SMTPException) as e:
                log(f"mail not sent yet ({e!r}); {len(self.outbox)} waiting, retried on the next tick")
                return
            self.outbox.pop(0)

    # -- supervisord's events -------------------------------------------------------------
    def supervisor_line(self, name: str) -> str:
        """supervisord's last ``exited:``/``gave up:`` line about ``name`` (the signal or exit code)."""
        try:
            lines = Path(self.s.supervisor_log).read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return next((ln for ln in reversed(lines) if f"exited: {name} " in ln or f"gave up: {name} " in ln), "")

    def on_event(self, event: str, payload: str) -> None:
        if event.startswith("TICK"):
            self.flush()
            if time.monotonic() - self.last_check >= self.s.check_seconds:
                self.last_check = time.monotonic()
                self.check()
            return
        fields = dict(kv.split(":", 1) for kv in payload.split() if ":" in kv)
        name = fields.get("processname", "?")
        if event == "PROCESS_STATE_EXITED":
            line = self.supervisor_line(name)
            self.alert(f"exited:{name}", f"{name} exited unexpectedly; restarting it",
                       f"Platform process {name} (pid {fields.get('pid')}) exited without being asked to "
                       f"(exit code expected: {fields.get('expected') == '1'}).\nsupervisord: {line}\n"
                       "supervisord restarts it (autorestart); if it keeps dying it backs off and then "
                       "gives up, and you get a second alert.")
        elif event == "PROCESS_STATE_FATAL":
            line = self.supervisor_line(name)
            self.alert(f"fatal:{name}", f"{name} could not be restarted: given up",
                       f"supervisord gave up restarting platform process {name}: it died on every try "
                       f"while starting.\nsupervisord: {line}\nLook at its log (.local/logs/{name}.log); "
                       f"then `supervisorctl -c .local/run/supervisord.conf start platform:{name}` or make restart.")

    # -- periodic checks --------------------------------------------------------------------
    def check(self) -> None:
        states = self.worker_states()
        waiting = self.queue_lengths()
        queued = self.queued_task_instances()
        for team in self.s.teams:
            state = states.get(f"worker-{team}")
            if state is not None and state not in ("RUNNING", "STARTING"):
                self.alert(f"worker-gone:{team}", f"team {team}: its Celery worker is not running ({state})",
                           f"Team {team}'s worker (worker-{team}) is {state}: its queued tasks wait "
                           f"(broker queue: {waiting.get(team, '?')} message(s); task instances queued: "
                           f"{queued.get(team, (0, 0))[0]}).")
            n_msgs = waiting.get(team, 0)
            n_ti, oldest = queued.get(team, (0, 0.0))
            if n_msgs >= self.s.queue_length or (n_ti and oldest >= self.s.queued_seconds):
                self.alert(f"backlog:{team}", f"team {team}: its queue is backing up",
                           f"Team {team}: {n_msgs} message(s) waiting in its Redis broker (alert at "
                           f"{self.s.queue_length}); {n_ti} task instance(s) queued, the oldest for "
                           f"{oldest:.0f} s (alert at {self.s.queued_seconds:.0f} s). Its worker: "
                           f"{states.get(f'worker-{team}', '?')}.")

        for team, (n, oldest, waiting_tasks) in self.triggers_waiting().items():
            if oldest < self.s.queued_seconds:
                continue
            who = f"team {team}" if team else "no team"
            why = (f"team {team}'s triggerer (triggerer-{team}: {states.get(f'triggerer-{team}', '?')}) has not taken them"
                   if team else "a trigger without a team is run by no triggerer here (each team's triggerer takes only "
                   "its own team's; the DAG's bundle has no team, or its team was deleted)")
            self.alert(f"trigger-waiting:{team or '-'}", f"{who}: {n} trigger(s) waiting for a triggerer",
                       f"{n} trigger(s) of {who} not taken by any triggerer, the oldest created {oldest:.0f} s ago "
                       f"(alert at {self.s.queued_seconds:.0f} s): {why}. Deferred task(s) waiting on them: "
                       f"{waiting_tasks or 'none (asset or callback triggers)'}. They stay deferred until their "
                       "trigger's timeout (or forever without one).")

    def worker_states(self) -> dict[str, str]:
        if self.rpc is None:
            return {}
        try:
            return {i["name"]: i["statename"] for i in self.rpc.supervisor.getAllProcessInfo()}
        except Exception as e:  # noqa: BLE001 (a check must not stop the listener)
            log(f"supervisord's states not read: {e!r}")
            return {}

    def queue_lengths(self) -> dict[str, int]:
        import redis

        out = {}
        for team, url in self.s.brokers.items():
            try:
                with redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2) as client:  # closed each tick
                    out[team] = int(client.llen(self.s.queue))
            except Exception as e:  # noqa: BLE001
                log(f"team {team}'s broker not read: {e!r}")
        return out

    def queued_task_instances(self) -> dict[str, tuple[int, float]]:
        """Team -> (task instances queued, seconds the oldest has been), from the metadata DB."""
        rows = self._metadata_rows(
            "SELECT bt.team_name, count(*), coalesce(extract(epoch FROM now() - min(ti.queued_dttm)), 0)"
            " FROM task_instance ti JOIN dag d ON d.dag_id = ti.dag_id"
            " JOIN dag_bundle_team bt ON bt.dag_bundle_name = d.bundle_name"
            " WHERE ti.state = 'queued' GROUP BY bt.team_name", "queued task instances")
        return {team: (int(n), float(age)) for team, n, age in rows}

    def triggers_waiting(self) -> dict[str | None, tuple[int, float, str]]:
        """Team (None: no team) -> (triggers no triggerer has taken, seconds since the oldest was
        created, the deferred tasks waiting on them), from the metadata DB."""
        rows = self._metadata_rows(
            "SELECT t.team_name, count(DISTINCT t.id), extract(epoch FROM now() - min(t.created_date)),"
            " coalesce(string_agg(DISTINCT ti.dag_id || '.' || ti.task_id, ', '), '')"
            " FROM trigger t LEFT JOIN task_instance ti ON ti.trigger_id = t.id"
            " WHERE t.triggerer_id IS NULL GROUP BY t.team_name", "waiting triggers")
        return {team: (int(n), float(age), tasks) for team, n, age, tasks in rows}

    def _metadata_rows(self, sql: str, what: str) -> list[tuple]:
        """The rows of ``sql`` on the metadata DB; none (logged) when it cannot be read."""
        if not self.s.db_url:
            return []
        import psycopg2

        try:
            with closing(psycopg2.connect(self.s.db_url.replace("postgresql+psycopg2://", "postgresql://"),
                                          connect_timeout=3)) as conn, conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()
        except psycopg2.Error as e:
            log(f"{what} not read: {e!r}")
            return []


def main() -> None:
    from supervisor import childutils

    settings = AlertSettings.from_env(dict(os.environ))
    rpc = childutils.getRPCInterface(os.environ) if os.environ.get("SUPERVISOR_SERVER_URL") else None
    alerts = Alerts(settings, rpc)
    log(f"platform alerts to {settings.to} (SMTP 127.0.0.1:{settings.smtp_port}); teams: {', '.join(settings.teams)}")
    while True:
        headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
        try:
            alerts.on_event(headers["eventname"], payload)
        except Exception as e:  # noqa: BLE001 (an alert that fails must not stop the next)
            log(f"event {headers.get('eventname')} not handled: {e!r}")
        childutils.listener.ok(sys.stdout)


if __name__ == "__main__":
    main()
