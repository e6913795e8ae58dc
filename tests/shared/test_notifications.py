"""Summary mail through the SMTP provider's public sender, read back from a real SMTP sink."""

from __future__ import annotations

import re

import pytest

from devplatform.smtp_sink import body_text
from shared.notifications import notify_failure, send_summary


def test_summary_goes_through_the_provider_as_an_escaped_fixed_width_report(mail_sink):
    from airflow.sdk.lineage import get_hook_lineage_collector

    get_hook_lineage_collector.cache_clear()
    to = send_summary("platform_tests", "nightly load", {"rows loaded": 3, "source": "<api> & co"},
                      {"Slowest steps": [{"step": "load", "seconds": 1.5}], "Rejected": []},
                      to=["ops@platform.local", "data@platform.local"])
    assert to == ["ops@platform.local", "data@platform.local"]
    [mail] = mail_sink.messages()
    assert mail["Subject"] == "[platform_tests] nightly load"
    assert mail["From"] == "airflow@platform.local" and mail["To"] == "ops@platform.local, data@platform.local"
    html = body_text(mail)
    assert mail.get_body(preferencelist=("html",)) is not None and html.startswith("<pre>nightly load\n============\n")
    assert "rows loaded  3\nsource       &lt;api&gt; &amp; co\n" in html  # aligned, and the HTML cannot be broken into
    assert "Slowest steps\n-------------\nstep | seconds\nload | 1.5\n" in html
    assert "Rejected\n--------\n(none)\n" in html
    # the mailboxes are the task's outputs (shared.lineage, issue 23: a mail server is a service)
    from shared.lineage import collected_lineage

    lineage = collected_lineage()
    assert sorted((d.namespace, d.name) for d in lineage.outputs) == [
        (f"smtp://127.0.0.1:{mail_sink.port}", "data@platform.local"), (f"smtp://127.0.0.1:{mail_sink.port}", "ops@platform.local")]
    get_hook_lineage_collector.cache_clear()


# -- failure alerts: composed from whatever the context holds, never lost -------------------------

class _TI:
    dag_id, task_id, run_id, try_number, map_index = "d", "t", "manual__2026-12-05T10:00:00+00:00", 3, -1


class _BrokenTI:
    """A task instance whose attributes cannot be read (e.g. a half-built context)."""

    task_id = run_id = "x"

    @property
    def dag_id(self):
        raise RuntimeError("dag_id is not available here")


def _alert_contexts():
    from datetime import UTC, datetime

    err = ValueError("the drop for 2026-12-04 is missing <file>")
    yield "no logical date (manual trigger)", {"ti": _TI(), "run_id": _TI.run_id, "exception": err}
    yield "with logical date and interval", {"ti": _TI(), "run_id": _TI.run_id, "exception": err,
                                             "logical_date": datetime(2026, 12, 4, 2, tzinfo=UTC),
                                             "data_interval_start": datetime(2026, 12, 3, 2, tzinfo=UTC),
                                             "data_interval_end": datetime(2026, 12, 4, 2, tzinfo=UTC)}
    yield "failed before it started (no exception)", {"ti": _TI()}
    yield "nothing at all", {}


@pytest.mark.parametrize("case", list(_alert_contexts()), ids=lambda c: c[0])
def test_a_failure_alert_is_sent_whatever_the_context_holds(mail_sink, case):
    name, context = case
    to = notify_failure("platform_tests", context)
    [mail] = mail_sink.messages()
    assert mail["To"] == ", ".join(to)
    body = body_text(mail)
    if context:
        assert mail["Subject"] == "[platform_tests] FAILED d.t (try 3)"
        assert re.search(rf"^run +{re.escape(_TI.run_id)}$", body, re.M)
    else:
        assert mail["Subject"] == "[platform_tests] FAILED (unknown).(unknown)"
    if "exception" in context:
        assert "ValueError: the drop for 2026-12-04 is missing &lt;file&gt;" in body
    else:
        assert "no exception was recorded" in body
    assert ("none (triggered without a logical date)" in body) == ("logical_date" not in context)
    if "data_interval_start" in context:
        assert re.search(r"^data interval +2026-12-03 02:00:00\+00:00 - 2026-12-04 02:00:00\+00:00$", body, re.M)


def test_the_old_template_notifier_lost_the_alert_of_a_run_without_a_logical_date(mail_sink):
    """What this replaces: the SmtpNotifier templated with ``{{ logical_date }}`` raised on such a
    context, and no mail went out (the new path sends one: test above)."""
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier
    from airflow.sdk import DAG
    from jinja2 import UndefinedError

    notifier = SmtpNotifier(to="x@platform.local", subject="s", html_content="Logical date: {{ logical_date }}")
    with pytest.raises(UndefinedError):
        notifier({"ti": _TI(), "dag": DAG("d", schedule=None)})
    assert mail_sink.messages() == []


def test_an_alert_that_cannot_be_composed_still_goes_out_plain(mail_sink):
    notify_failure("platform_tests", {"ti": _BrokenTI(), "run_id": "r1", "exception": KeyError("data_interval_start")})
    [mail] = mail_sink.messages()
    assert mail["Subject"] == "[platform_tests] FAILED ?.x"
    body = body_text(mail)
    assert "Its alert could not be composed: RuntimeError: dag_id is not available here" in body
    assert "run r1" in body and "data_interval_start" in body


def test_template_syntax_in_an_error_is_sent_verbatim(mail_sink):
    notify_failure("platform_tests", {"ti": _TI(), "exception": RuntimeError("bad {{ value }} {% endraw %} {% if %}")})
    [mail] = mail_sink.messages()
    assert "RuntimeError: bad {{ value }} {% endraw %} {% if %}" in body_text(mail)


def test_recipients_fall_back_to_the_domain_default_when_the_variable_cannot_be_read(mail_sink, monkeypatch):
    from shared import notifications

    def unreadable(domain):
        raise ConnectionError("execution API unreachable")

    monkeypatch.setattr(notifications, "recipients", unreadable)
    assert notify_failure("platform_tests", {"ti": _TI()}) == ["platform_tests-team@platform.local"]
    assert mail_sink.messages()[0]["To"] == "platform_tests-team@platform.local"
