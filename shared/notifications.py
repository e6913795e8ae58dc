"""Mail: the platform's default failure notification and the domains' summary emails.

Both go through the SMTP provider (``smtp_default``, the platform's relay: the local SMTP
sink in development). Recipients are a domain variable, ``<domain>_alert_emails``
(comma-separated), read when the mail is sent, never at parse time.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

SMTP_CONN_ID = "smtp_default"


def recipients_var(domain: str) -> str:
    return f"{domain}_alert_emails"


def default_recipient(domain: str) -> str:
    return f"{domain}-team@platform.local"


def failure_notifier(domain: str):
    """An ``SmtpNotifier`` for task failures, addressed to the domain's recipients."""
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    var = recipients_var(domain)
    return SmtpNotifier(
        smtp_conn_id=SMTP_CONN_ID,
        to=f"{{{{ var.value.get('{var}', '{default_recipient(domain)}') }}}}",
        subject=f"[{domain}] FAILED {{{{ ti.dag_id }}}}.{{{{ ti.task_id }}}} (try {{{{ ti.try_number }}}})",
        html_content=(
            "<p>Task <b>{{ ti.task_id }}</b> of DAG <b>{{ ti.dag_id }}</b> failed.</p>"
            "<p>Run: {{ run_id }}<br>Logical date: {{ logical_date }}</p>"
            "<p>Error: <pre>{{ exception | e }}</pre></p>"
        ),
    )


class OnFailure:
    """Task failure callback that builds the domain's ``SmtpNotifier`` only when a task fails,
    keeping the SMTP provider out of DAG parsing."""

    def __init__(self, domain: str) -> None:
        self.domain = domain

    def __call__(self, context) -> None:
        failure_notifier(self.domain)(context)

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
    the recipients.

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
    return to


def send_alert(
    domain: str,
    subject: str,
    facts: Mapping[str, Any],
    tables: Mapping[str, Sequence[Mapping[str, Any]]] = {},
    context: Mapping[str, Any] | None = None,
    to: Sequence[str] | None = None,
) -> list[str]:
    """Mail an alert (a summary, as :func:`send_summary` lays it out) to the domain's
    recipients through the SMTP provider's ``SmtpNotifier``, with the task's ``context``.
    The report's text is sent verbatim (never rendered as a template). Returns the recipients."""
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    to = list(to or recipients(domain))
    report = html.escape(render_summary(subject, facts, tables), quote=False)
    notifier = SmtpNotifier(
        smtp_conn_id=SMTP_CONN_ID,
        to=to,
        subject=f"{{% raw %}}[{domain}] ALERT {subject}{{% endraw %}}",
        html_content=f"{{% raw %}}<pre>{report}</pre>{{% endraw %}}",
    )
    notifier(dict(context or {}))
    return to
