"""Summary mail through the SMTP provider's public sender, read back from a real SMTP sink."""

from __future__ import annotations

from devplatform.smtp_sink import body_text
from shared.notifications import send_summary


def test_summary_goes_through_the_provider_as_an_escaped_fixed_width_report(mail_sink):
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
