"""A newcomer's first day in the Airflow UI, on the real platform (the session's ``live_platform``):
a team's op user logs in through the UI's login form, opens a DAG's page, presses "Trigger" and
triggers a run (1) without a logical date (the form fills in "now": the user clears it) and
(2) with a logical date typed into the form; the REST API then shows (1) with ``logical_date``
null and (2) with the date entered, and both runs succeed. Debian's chromium driven by
Playwright, exactly as tests/test_lineage_page.py (never a browser download).

``ecommerce_ml_time_series`` (one quick task) works on the interactions and article features
of its day, which ``ecommerce_ml_user_item_interactions`` and ``ecommerce_ml_article_content``
make from that day's drop: on a fresh platform the test first runs them for that day through
REST, as the team's op user (the README's way). Both UI runs process the same day: the last
complete interval of the ``0 5 * * *`` schedule (a run without a logical date), and the
interval Airflow infers from the logical date entered (that interval's end + 1 h).

This module's name sorts between test_first_day.py and test_isolation.py, which shares the
platform and stops it last. Screenshots: ``.local/screenshots/first_day_ui_*.png``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest

from conftest import ROOT
from tests.chromium import needs_chromium
from tests.newcomer import Newcomer, Run

WAIT_MS = 90_000  # generous: the machine's two cores are shared (no timing is asserted)
SHOTS = ROOT / ".local" / "screenshots"
TEAM = "ecommerce_ml"
USER = f"{TEAM}_op"
DAG_ID = "ecommerce_ml_time_series"
TICK_HOUR = 5  # its schedule, "0 5 * * *" (UTC): each run processes the day before
# what it reads, and the hour (UTC) of their daily ticks
PREREQUISITES = {"ecommerce_ml_user_item_interactions": 2, "ecommerce_ml_article_content": 3}
NO_DATE = "Select date and time"  # the form's logical date field once cleared

pytestmark = needs_chromium


def logical_date_to_enter(now: datetime, end: datetime) -> datetime:
    """The logical date the user types (to the minute): after ``end`` (Airflow infers the interval
    ``[end - 1 day, end]`` from it, and it is never a scheduled run's logical date, which is an
    interval's start) and not after ``now``: a run whose logical date lies ahead is not started
    before it, so between 05:00 and 06:00 UTC ``end + 1 h`` kept the run queued past the test's
    wait. Up to an hour after ``end``, half-way to ``now``, at least a minute."""
    room = min(timedelta(hours=1), (now - end) / 2)
    return end + timedelta(minutes=max(1, int(room.total_seconds() // 60)))


def last_tick(at: datetime, hour: int) -> datetime:
    """The latest daily ``hour``:00 UTC tick at or before ``at``."""
    tick = at.replace(hour=hour, minute=0, second=0, microsecond=0)
    return tick if tick <= at else tick - timedelta(days=1)


def task_logs(platform, run: Run) -> str:
    """The tail of each task log of a run (what to read when it did not succeed)."""
    folder = platform.config.task_log_dir / f"dag_id={run.dag_id}" / f"run_id={run.run_id}"
    return "\n".join(f"--- {log}\n{log.read_text(errors='replace')[-3000:]}" for log in sorted(folder.glob("**/*.log")))


def finished(newcomer: Newcomer, platform, run: Run, timeout: float = 900) -> Run:
    newcomer.wait(run, timeout=timeout)
    assert run.state == "success", f"{run.dag_id} {run.run_id}: {run.state} {run.tasks}\n{task_logs(platform, run)}"
    return run


def log_in(browser, api: str, user: str, password: str):
    """A fresh browser context logged in through the UI's login form (UTC, as the UI's default
    zone); (context, page)."""
    context = browser.new_context(viewport={"width": 1500, "height": 950}, timezone_id="UTC")
    page = context.new_page()
    page.goto(api + "/")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda u: "/auth/login" not in u, timeout=WAIT_MS)
    return context, page


def shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"first_day_ui_{name}.png"
    page.screenshot(path=str(path))
    return path


def submit(page, dialog) -> dict:
    """Press the form's "Trigger": the request the UI sent, and the run the API answered with."""
    from playwright.sync_api import expect

    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith(f"/api/v2/dags/{DAG_ID}/dagRuns"),
                              timeout=WAIT_MS) as answer:
        dialog.get_by_test_id("trigger-dag-submit").click()
    response = answer.value
    assert response.status == 200, (response.status, response.text())
    run = response.json()
    page.wait_for_url(lambda u: f"/runs/{run['dag_run_id']}" in unquote(u), timeout=WAIT_MS)  # the UI opens the new run
    expect(page.get_by_text(run["dag_run_id"], exact=True).first).to_be_visible(timeout=WAIT_MS)  # ... and draws it
    return {"sent": response.request.post_data_json, "run": run}


def open_trigger_form(page, api: str):
    """The DAG's page, its "Trigger" button, the form with its logical date field."""
    from playwright.sync_api import expect

    page.goto(f"{api}/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger Dag").click(timeout=WAIT_MS)  # text "Trigger", aria-label "Trigger Dag"
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name=DAG_ID).first).to_be_visible(timeout=WAIT_MS)  # "Trigger Dag - <dag_id>"
    field = dialog.get_by_test_id("datetime-input")  # a button showing the date; it opens a date/time popover
    expect(field).not_to_have_text(NO_DATE, timeout=WAIT_MS)  # the form fills in "now"
    return dialog, field


@pytest.mark.parametrize("minute_of_day", range(0, 24 * 60, 7))
def test_the_logical_date_entered_is_never_ahead_and_gives_the_last_complete_day(minute_of_day):
    """At any minute of the day (05:00-06:00 UTC included, where ``end + 1 h`` lay ahead and the run
    waited for it): the date typed is past ``end``, at most a minute ahead of ``now`` (only in the
    first two minutes after the tick), to the minute, and Airflow infers ``[end - 1 day, end]`` from it."""
    from airflow.timetables.interval import CronDataIntervalTimetable

    now = datetime(2026, 12, 6, tzinfo=UTC) + timedelta(minutes=minute_of_day, seconds=17)
    end = last_tick(now, TICK_HOUR)
    entered = logical_date_to_enter(now, end)
    assert end < entered <= max(now, end + timedelta(minutes=1)) and entered - end <= timedelta(hours=1)
    assert entered.second == entered.microsecond == 0
    interval = CronDataIntervalTimetable(f"0 {TICK_HOUR} * * *", timezone="UTC").infer_manual_data_interval(
        run_after=entered)
    assert (interval.start, interval.end) == (end - timedelta(days=1), end)


def test_a_team_op_triggers_a_dag_in_the_ui_with_and_without_a_logical_date(live_platform, browser):
    from playwright.sync_api import expect

    t0 = time.monotonic()
    timings = {}
    api = live_platform.config.api_url
    newcomer = Newcomer(live_platform)

    # the day a run without a logical date processes now: [last 05:00 tick - 1 day, last 05:00 tick]
    now = datetime.now(UTC)
    end = last_tick(now, TICK_HOUR)
    day = (end - timedelta(days=1)).date()
    entered = logical_date_to_enter(now, end)

    # that day's inputs: the two DAGs it reads, run for that day through REST as the team op
    prerequisites = []
    for dag_id, hour in PREREQUISITES.items():
        r = newcomer.call(TEAM, "PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        assert r.status_code == 200, (dag_id, r.status_code, r.text)
        # a logical date whose inferred interval starts on `day` at the DAG's tick (never a scheduled run's)
        logical = datetime(day.year, day.month, day.day, hour, 30, tzinfo=UTC) + timedelta(days=1)
        r = newcomer.call(TEAM, "POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": logical.isoformat()})
        assert r.status_code == 200, (dag_id, r.status_code, r.text)
        assert r.json()["data_interval_start"].startswith(day.isoformat()), r.json()
        prerequisites.append(Run(dag_id, TEAM, r.json()["dag_run_id"], datetime.fromisoformat(r.json()["run_after"])))
    for run in prerequisites:
        finished(newcomer, live_platform, run)
    timings["prerequisites"] = time.monotonic() - t0

    r = newcomer.call(TEAM, "PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})  # the README's unpause
    assert r.status_code == 200 and r.json()["is_paused"] is False, (r.status_code, r.text)

    # the UI: the login form, the DAG's page, "Trigger" (UTC in the browser as in the UI's default zone)
    context, page = log_in(browser, api, USER, live_platform.logins()[USER])
    assert any(c["name"] == "_token" for c in context.cookies()), context.cookies()

    # (1) without a logical date: clear the one the form filled in
    dialog, field = open_trigger_form(page, api)
    shot(page, "1_form_default")
    field.click()
    page.get_by_role("button", name="Clear start date").click()  # in the popover: empties date and time
    expect(field).to_have_text(NO_DATE, timeout=WAIT_MS)
    shot(page, "2_form_no_logical_date")
    first = submit(page, dialog)
    assert first["sent"]["logical_date"] is None, first["sent"]
    assert first["run"]["logical_date"] is None and first["run"]["data_interval_start"] is None, first["run"]
    shot(page, "3_run_without_logical_date")

    # (2) with a logical date typed into the popover's date and time fields
    dialog, field = open_trigger_form(page, api)
    field.click()
    page.get_by_placeholder("YYYY/MM/DD").fill(entered.strftime("%Y/%m/%d"))
    page.get_by_placeholder("HH:mm").fill(entered.strftime("%H:%M"))
    dialog.get_by_role("heading", name=DAG_ID).first.click()  # the form's title: closes the popover
    expect(field).to_have_text(entered.strftime("%b %d, %Y %H:%M"), timeout=WAIT_MS)
    expect(page.get_by_placeholder("YYYY/MM/DD")).to_be_hidden(timeout=WAIT_MS)  # the popover has faded out
    shot(page, "4_form_with_logical_date")
    second = submit(page, dialog)
    assert datetime.fromisoformat(second["sent"]["logical_date"]) == entered, second["sent"]
    timings["ui"] = time.monotonic() - t0 - timings["prerequisites"]

    # the REST API, as the team op: what the runs are, and that both succeed
    runs = [Run(DAG_ID, TEAM, x["run"]["dag_run_id"], datetime.fromisoformat(x["run"]["run_after"])) for x in (first, second)]
    without, with_date = (finished(newcomer, live_platform, run, timeout=600) for run in runs)
    timings["runs"] = time.monotonic() - t0 - timings["prerequisites"] - timings["ui"]
    assert without.detail["logical_date"] is None and without.detail["data_interval_start"] is None, without.detail
    assert datetime.fromisoformat(with_date.detail["logical_date"]) == entered, with_date.detail
    assert (datetime.fromisoformat(with_date.detail["data_interval_start"]),
            datetime.fromisoformat(with_date.detail["data_interval_end"])) == (end - timedelta(days=1), end), with_date.detail
    for run in (without, with_date):
        assert (run.detail["run_type"], run.detail["triggered_by"], run.detail["triggering_user_name"]) == (
            "manual", "ui", USER), run.detail
        assert run.tasks == {"build_time_series": "success"}, run.tasks

    # the DAG's runs in the UI: both, successful
    page.goto(f"{api}/dags/{DAG_ID}/runs")
    for run in (without, with_date):
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name=run.run_id, exact=True))
        expect(row.get_by_text("Success", exact=True)).to_be_visible(timeout=WAIT_MS)
    shot(page, "5_runs")
    page.goto(f"{api}/dags/{DAG_ID}/runs/{with_date.run_id}/details")
    expect(page.get_by_text(entered.strftime("%Y-%m-%d %H:%M:%S")).first).to_be_visible(timeout=WAIT_MS)
    shot(page, "6_run_with_logical_date_details")
    context.close()
    print(f"\nday {day}, logical date entered {entered.isoformat()}; runs {without.run_id} (no logical date), "
          f"{with_date.run_id}; seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))


def test_the_assets_page_shows_a_team_only_its_own_assets(live_platform, browser):
    """The UI's Assets page, as two teams' op users: every asset the REST API lists for the user
    is drawn (first page), and none that only another team may see (platform_runtime.asset_scope)."""
    import requests
    from playwright.sync_api import expect

    api = live_platform.config.api_url

    def names(user: str) -> set[str]:
        token = requests.post(f"{api}/auth/token", json={"username": user, "password": live_platform.logins()[user]},
                              timeout=30).json()["access_token"]
        r = requests.get(f"{api}/api/v2/assets", params={"limit": 500}, headers={"Authorization": f"Bearer {token}"},
                         timeout=60)
        assert r.status_code == 200, r.text
        return {a["name"] for a in r.json()["assets"]}

    everything = names("admin")
    for user in (USER, "referral_op"):
        own = names(user)
        others = everything - own
        assert own and others, (user, own, others)
        context, page = log_in(browser, api, user, live_platform.logins()[user])
        page.goto(f"{api}/assets")
        first = sorted(own)[0]
        expect(page.get_by_text(first, exact=True).first).to_be_visible(timeout=WAIT_MS)
        shot(page, f"assets_{user}")
        text = page.inner_text("body")
        assert [n for n in others if n in text.split()] == [], user
        context.close()


# the Lineage page after the full run of tests/test_first_day.py: admin and two teams' op users
LINEAGE_USERS = {"admin": None, "aurora_op": "aurora", "ecommerce_ml_op": "ecommerce_ml"}
# per user, the DAG expanded into its tasks (the largest of what the user sees)
LINEAGE_EXPAND = {"admin": "looklyy_crawler_pipeline", "aurora_op": "prediction_pipeline",
                  "ecommerce_ml_op": "ecommerce_ml_events_funnels"}


def test_the_lineage_page_is_readable_after_a_full_run_as_admin_and_as_two_teams(live_platform, browser):
    """Issue 23, item 1, at platform scale: after every DAG of every team has run (the lineage
    store holds the whole platform's events), the "Lineage" navigation entry as admin and as two
    teams' op users draws one node per DAG of what the user may see, grouped by domain, with
    labels at a readable size, every domain box in view as the page opens (no panning) and no
    edge across the whole graph; a DAG expands into its tasks;
    the list beside the graph names the user's DAGs and no other team's. Screenshots:
    ``.local/screenshots/first_day_ui_lineage_*.png``."""
    from tests.newcomer import DAGS
    from tests.test_lineage_page import domains_outside, drawn, lineage_frame, readable

    api = live_platform.config.api_url
    saved = []
    for user, team in LINEAGE_USERS.items():
        mine = {d for d, t in DAGS.items() if team is None or t == team}
        context, page = log_in(browser, api, user, live_platform.logins()[user])
        page.goto(f"{api}/plugin/lineage")
        frame = lineage_frame(page)
        seen = drawn(frame)
        assert mine <= seen["dag"], (user, sorted(mine - seen["dag"]))
        if team is not None:  # a team user: its own DAGs, its own domain, nothing else
            assert seen["dag"] == mine and seen["domain"] == {team}, (user, seen["dag"], seen["domain"])
            others = set(DAGS) - mine
            assert [d for d in others if d in frame.locator("body").inner_text()] == [], user
        else:
            assert set(DAGS.values()) <= seen["domain"], seen["domain"]
        looks = readable(frame)
        saved.append(shot(page, f"lineage_{user}"))  # kept, also when it is not readable
        assert looks["minFont"] >= 10 and looks["maxEdge"] < looks["width"], (user, looks)
        assert domains_outside(page, frame) == {}, (user, looks)
        # a DAG expanded into its tasks and what they read and write
        dag = LINEAGE_EXPAND[user]
        frame.get_by_role("button", name=f"▸ {dag}", exact=True).click()
        frame.wait_for_function("(id) => window.lineageGraph.getElementById(id).hasClass('dag-open')",
                                arg=f"dag:{dag}", timeout=WAIT_MS)
        tasks = {j for j in drawn(frame)["job"] if j.startswith(dag + ".")}
        assert tasks, (user, dag)
        looks = readable(frame)
        saved.append(shot(page, f"lineage_{user}_{dag}"))
        assert looks["minFont"] >= 10, (user, dag, looks)
        context.close()
    print("\nscreenshots: " + ", ".join(str(p) for p in saved))
