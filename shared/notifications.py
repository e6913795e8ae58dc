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


def render_summary(title: str, facts: Mapping[str, Any], tables: Mapping[str, Sequence[Mapping[str, Any]]] = {}) -> tuple[str, str]:
    """Plain text and simple HTML for a summary: key facts, then optional small tables."""
    width = max((len(k) for k in facts), default=0)
    lines = [title, "=" * len(title), ""] + [f"{k.ljust(width)}  {v}" for k, v in facts.items()]
    parts = [f"<h2>{html.escape(title)}</h2>", "<table>"]
    parts += [f"<tr><th align='left'>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items()]
    parts.append("</table>")
    for name, rows in tables.items():
        lines += ["", name, "-" * len(name)]
        if not rows:
            lines.append("(none)")
            parts.append(f"<h3>{html.escape(name)}</h3><p>(none)</p>")
            continue
        cols = list(rows[0].keys())
        lines.append(" | ".join(cols))
        lines += [" | ".join(str(r.get(c, "")) for c in cols) for r in rows]
        parts.append(f"<h3>{html.escape(name)}</h3><table border='1' cellpadding='4'><tr>")
        parts += [f"<th>{html.escape(c)}</th>" for c in cols]
        parts.append("</tr>")
        for r in rows:
            parts.append("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cols) + "</tr>")
        parts.append("</table>")
    return "\n".join(lines) + "\n", "\n".join(parts)


def send_summary(
    domain: str,
    subject: str,
    facts: Mapping[str, Any],
    tables: Mapping[str, Sequence[Mapping[str, Any]]] = {},
    to: Sequence[str] | None = None,
) -> list[str]:
    """Send a plain-text + HTML summary to the domain's recipients. Returns the recipients."""
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    from airflow.providers.smtp.hooks.smtp import SmtpHook

    to = list(to or recipients(domain))
    text, html_body = render_summary(subject, facts, tables)
    with SmtpHook(smtp_conn_id=SMTP_CONN_ID) as hook:
        sender = hook.from_email or "airflow@platform.local"
        msg = MIMEMultipart("alternative")
        msg["Subject"] = f"[{domain}] {subject}"
        msg["From"] = sender
        msg["To"] = ", ".join(to)
        msg.attach(MIMEText(text, "plain", "utf-8"))
        msg.attach(MIMEText(html_body, "html", "utf-8"))
        # The hook's send_email_smtp builds HTML-only messages; a text+HTML alternative goes
        # through the client the hook opened (connection, TLS and login handled by the hook).
        hook._smtp_client.sendmail(sender, to, msg.as_string())
    return to
