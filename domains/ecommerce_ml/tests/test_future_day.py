"""The snapshot tables (``article_features``, ``customer_features``) keep only the newest day, so a run
for a day that has not come yet (a wrong logical date, a stray drop) is refused: the run fails for
good naming the day, its interval and why, and nothing is stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pendulum
import pytest

from conftest import run_dag
from devplatform.smtp_sink import body_text
from domains.ecommerce_ml.tests.conftest import DAY

FUTURE = datetime.now(UTC).date() + timedelta(days=2)
LATER = datetime(FUTURE.year, FUTURE.month, FUTURE.day, tzinfo=UTC) + timedelta(days=30)


def logical(day, hour) -> pendulum.DateTime:
    nxt = day + timedelta(days=1)
    return pendulum.datetime(nxt.year, nxt.month, nxt.day, hour, tz="UTC")


def _articles(ecom, day, run_id="setup"):
    from domains.ecommerce_ml import article_content
    from domains.ecommerce_ml.common import Run

    run = Run.for_day("ecommerce_ml_article_content", day, run_id)
    article_content.load_article_features(run, article_content.build_article_features(run, ecom.root()), ecom.root())


def _interactions(ecom, day):
    from domains.ecommerce_ml import interactions
    from domains.ecommerce_ml.common import Run

    run = Run.for_day("ecommerce_ml_user_item_interactions", day, "setup")
    interactions.load_interactions(run, interactions.build_interactions(run, ecom.root()), ecom.root())


def _refusal(mail_sink, dag_id, task_id) -> str:
    [mail] = [m for m in mail_sink.messages() if f"{dag_id}.{task_id}" in m["Subject"]]
    text = body_text(mail)
    assert f"refuses to process day {FUTURE}: it is after today" in text, text
    assert f"(data interval {FUTURE:%Y-%m-%d} 0" in text and "nothing was stored" in text, text
    return text


def test_article_content_refuses_a_day_after_today_and_stores_nothing(ecom, mail_sink):
    ecom.generate(DAY, parts=("articles",))
    _articles(ecom, DAY)
    tables = ("article_features", "article_changes", "article_content_history", "dataset_registry")
    before = ecom.tables_snapshot(*tables)
    ecom.generate(FUTURE, parts=("articles",))  # a stray drop in a future day's folder
    files = ecom.lake_files()
    dr, states = run_dag("ecommerce_ml_article_content", logical_date=logical(FUTURE, 3))
    assert dr.state == "failed" and states["build_article_features"] == "failed", states
    assert states["load_article_features"] != "success"
    assert ecom.tables_snapshot(*tables) == before
    assert ecom.query("SELECT DISTINCT snapshot_day FROM article_features") == [(DAY,)]
    assert ecom.lake_files() == files
    _refusal(mail_sink, "ecommerce_ml_article_content", "build_article_features")


def test_customer_features_refuses_a_day_after_today_and_stores_nothing(ecom, mail_sink, monkeypatch):
    from domains.ecommerce_ml import common, features
    from domains.ecommerce_ml.common import Run

    ecom.generate(DAY, parts=("articles", "customers", "transactions"))
    _interactions(ecom, DAY)
    _articles(ecom, DAY)
    features.build_customer_features(Run.for_day("ecommerce_ml_customer_features", DAY, "setup"), ecom.root())
    # the future day's inputs exist (as if that day had come), so only the day itself is wrong
    ecom.generate(FUTURE, parts=("articles", "customers", "transactions"))
    with monkeypatch.context() as m:
        m.setattr(common, "utcnow", lambda: LATER, raising=False)
        _interactions(ecom, FUTURE)
        _articles(ecom, FUTURE)
    before = ecom.tables_snapshot("customer_features", "dataset_registry")
    assert ecom.query("SELECT DISTINCT as_of FROM customer_features") == [(DAY,)]
    files = ecom.lake_files()
    dr, states = run_dag("ecommerce_ml_customer_features", logical_date=logical(FUTURE, 4))
    assert dr.state == "failed" and states["build_customer_features"] == "failed", states
    assert ecom.tables_snapshot("customer_features", "dataset_registry") == before
    assert ecom.lake_files() == files
    _refusal(mail_sink, "ecommerce_ml_customer_features", "build_customer_features")


def test_refuse_future_day_names_the_day_the_interval_and_why(monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from domains.ecommerce_ml import common
    from domains.ecommerce_ml.common import Run, refuse_future_day

    run = Run.for_day("ecommerce_ml_customer_features", DAY, "scheduled__x")
    monkeypatch.setattr(common, "utcnow", lambda: datetime(2024, 6, 4, 4, tzinfo=UTC))
    refuse_future_day(run, DAY)  # the run's own day, today or before: fine
    refuse_future_day(run, DAY + timedelta(days=1))  # the interval's last day
    with pytest.raises(AirflowFailException) as err:
        refuse_future_day(run, DAY + timedelta(days=2))
    assert str(err.value).startswith(
        "ecommerce_ml_customer_features run scheduled__x (data interval 2024-06-03 02:00 to 2024-06-04 02:00 UTC)"
        " refuses to process day 2024-06-05: it is after the run's data interval, which ends 2024-06-04 02:00 UTC")
    monkeypatch.setattr(common, "utcnow", lambda: datetime(2024, 6, 3, 12, tzinfo=UTC))
    with pytest.raises(AirflowFailException, match="day 2024-06-04: it is after today \\(2024-06-03 UTC\\)"):
        refuse_future_day(run, DAY + timedelta(days=1))
