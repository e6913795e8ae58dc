"""Mail: the platform's default failure notification and the domains' summary emails: one
path each. A failed task mails through the provider's ``SmtpNotifier`` (:class:`OnFailure`);
every report a task sends (a run's summary, aurora's critical-findings alert) through
:func:`send_summary`.

Both go through the SMTP provider (``smtp_default``, the platform's relay: the local SMTP
sink in development). Recipients are a domain variable, ``<domain>_alert_emails``
(comma-separated), read when the mail is sent, never at parse time.
"""

from __future__ import annotations

import html
import logging
import smtplib
from collections.abc import Mapping, Sequence
from typing import Any

SMTP_CONN_ID = "smtp_default"

log = logging.getLogger(__name__)


def recipients_var(domain: str) -> str:
    return f"{domain}_alert_emails"


def default_recipient(domain: str) -> str:
    return f"{domain}-team@platform.local"


def _get(obj: Any, *names: str) -> Any:
    for name in names:
        value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def failure_facts(context: Mapping[str, Any] | None) -> dict[str, str]:
    """What a failure alert says, from whatever the context holds. A run triggered without a
    logical date has no ``logical_date`` or data interval; a task failed before it started
    (lost worker, heartbeat timeout) or after a deferral timed out may have no exception or
    no try number: every fact is looked up with a fallback, never assumed."""
    context = context or {}
    ti = _get(context, "ti", "task_instance")
    dag_run = _get(context, "dag_run")
    dag = _get(context, "dag")
    logical_date = _get(context, "logical_date") or _get(dag_run, "logical_date")
    start = _get(context, "data_interval_start") or _get(dag_run, "data_interval_start")
    end = _get(context, "data_interval_end") or _get(dag_run, "data_interval_end")
    exception = _get(context, "exception")
    facts = {
        "DAG": _get(ti, "dag_id") or _get(dag, "dag_id") or _get(dag_run, "dag_id") or "(unknown)",
        "task": _get(ti, "task_id") or _get(_get(context, "task"), "task_id") or "(unknown)",
        "map index": _get(ti, "map_index"),
        "run": _get(context, "run_id") or _get(ti, "run_id") or _get(dag_run, "run_id") or "(unknown)",
        "try": _get(ti, "try_number"),
        "logical date": logical_date if logical_date is not None else "none (triggered without a logical date)",
        "data interval": f"{start} - {end}" if start is not None and end is not None else None,
        "triggered": _get(dag_run, "run_after"),
        "error": (f"{type(exception).__name__}: {exception}" if isinstance(exception, BaseException) else exception)
        or _get(context, "reason") or "(no exception was recorded: the task failed outside its own code, "
                                      "e.g. its worker was lost or it timed out while deferred)",
    }
    if facts["map index"] in (-1, None):
        del facts["map index"]
    return {k: str(v) for k, v in facts.items() if v is not None}


def _safe_recipients(domain: str) -> list[str]:
    try:
        return recipients(domain) or [default_recipient(domain)]
    except Exception:  # the variable could not be read: the alert still goes out
        log.exception("could not read %s; alerting %s", recipients_var(domain), default_recipient(domain))
        return [default_recipient(domain)]


def notify_failure(domain: str, context: Mapping[str, Any] | None) -> list[str]:
    """Mail a task failure to the domain's recipients; returns them.

    The mail is composed here from :func:`failure_facts` and handed to ``SmtpNotifier`` as
    text it does not render (``{% raw %}``), so no template can fail on a context without a
    logical date or data interval. Should composing it fail all the same, a plain alert with
    the error that broke it still goes out: a failure alert is never lost for a rendering error."""
    to = _safe_recipients(domain)
    try:
        facts = failure_facts(context)
        subject = f"FAILED {facts['DAG']}.{facts['task']}" + (f" (try {facts['try']})" if "try" in facts else "")
        _send_verbatim(domain, subject, render_summary(subject, facts), to, context)
    except _SmtpError:
        raise
    except Exception as exc:
        log.exception("the failure alert could not be composed; sending a plain one")
        context = context if isinstance(context, Mapping) else {}
        ti = context.get("ti")
        where = f"{_plain(ti, 'dag_id')}.{_plain(ti, 'task_id')}"
        text = (f"A task of {domain} failed ({where}, run {context.get('run_id', '?')}).\n"
                f"Its alert could not be composed: {type(exc).__name__}: {exc}\n"
                f"Error of the task: {context.get('exception', '(unknown)')}\n")
        _send_verbatim(domain, f"FAILED {where}", text, to, {})
    return to


def _plain(obj: Any, name: str) -> str:
    try:
        return str(getattr(obj, name))
    except Exception:
        return "?"


class _SmtpError(Exception):
    """The mail relay refused or could not be reached (no fallback can help)."""


def _send_verbatim(domain: str, subject: str, text: str, to: list[str], context: Mapping[str, Any] | None) -> None:
    """Send ``text`` as preformatted HTML through the provider's ``SmtpNotifier``, verbatim."""
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    notifier = SmtpNotifier(
        smtp_conn_id=SMTP_CONN_ID,
        to=to,
        subject=_raw(f"[{domain}] {subject}"),
        html_content=_raw(f"<pre>{html.escape(text, quote=False)}</pre>"),
    )
    try:
        notifier(dict(context or {}))
    except (OSError, smtplib.SMTPException) as exc:
        raise _SmtpError(f"could not send the alert through {SMTP_CONN_ID}: {exc}") from exc


def _raw(text: str) -> str:
    """Jinja text that renders to ``text`` exactly, whatever it contains."""
    return "{% raw %}" + text.replace("{% endraw %}", "{% endraw %}{{ '{% endraw %}' }}{% raw %}") + "{% endraw %}"


class OnFailure:
    """Task failure callback: :func:`notify_failure` for the domain. Builds the notifier only
    when a task fails, keeping the SMTP provider out of DAG parsing."""

    def __init__(self, domain: str) -> None:
        self.domain = domain

    def __call__(self, context) -> None:
        notify_failure(self.domain, context)

    def __repr__(self) -> str:
        return f"OnFailure({self.domain!r})"


def recipients(domain: str) -> list[str]:
    from airflow.sdk import Variable

    raw = Variable.get(recipients_var(domain), default=default_recipient(domain))
    return [r.strip() for r in raw.split(",") if r.strip()]


def render_summary(title: str, facts: Mapping[str, Any], tables: Mapping[str, Sequence[Mapping[str, Any]]] = {}) -> str:
    """A fixed-width report: key facts aligned, then optional small tables, one row a line."""
    width = max((len(k) for k in facts), default=0)
    lines = [title, "=" * len(title), ""] + [f"{k.ljust(width)}  {v}" for k, v in facts.items()]
    for name, rows in tables.items():
        lines += ["", name, "-" * len(name)]
        if not rows:
            lines.append("(none)")
            continue
        cols = list(rows[0].keys())
        lines.append(" | ".join(cols))
        lines += [" | ".join(str(r.get(c, "")) for c in cols) for r in rows]
    return "\n".join(lines) + "\n"


def send_summary(
    domain: str,
    subject: str,
    facts: Mapping[str, Any],
    tables: Mapping[str, Sequence[Mapping[str, Any]]] = {},
    to: Sequence[str] | None = None,
) -> list[str]:
    """Mail a summary to the domain's recipients through ``SmtpHook.send_email_smtp``, the
    provider's public sender (connection, TLS, login and retries are the provider's). Returns
    the recipients; each one's mailbox is reported as an output of the task (``shared.lineage``).

    The provider sends HTML only, so the report goes as preformatted HTML: columns stay
    aligned in every mail client."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    to = list(to or recipients(domain))
    report = render_summary(subject, facts, tables)
    with SmtpHook(smtp_conn_id=SMTP_CONN_ID) as hook:
        hook.send_email_smtp(
            to=to,
            subject=f"[{domain}] {subject}",
            html_content=f"<pre>{html.escape(report, quote=False)}</pre>",
            from_email=hook.from_email or "airflow@platform.local",
        )
        conn = hook.get_connection(SMTP_CONN_ID)
    from shared.lineage import mailbox, record_io

    record_io(hook, outputs=[mailbox(conn.host or "localhost", conn.port or 25, address) for address in to])
    return to
