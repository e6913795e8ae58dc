"""A trigger without a team: no team's triggerer runs it, and it is alerted, not left unseen.

Issue 25: the platform starts no team-less triggerer (``PLATFORM_IDLE_SETTINGS=lean``, the
default; every bundle belongs to a team). Airflow's own trigger assignment
(``Trigger.assign_unassigned``, what each triggerer calls every loop, with its ``--team-name``) on
the session's real metadata database: each team's triggerer takes its own team's trigger and
never the team-less one; the platform's alert listener (``devplatform.alerts``) then mails, through
a real SMTP sink, that the team-less trigger waits for a triggerer.
"""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

from devplatform.alerts import Alerts, AlertSettings


def test_a_trigger_without_a_team_runs_in_no_teams_triggerer_and_is_alerted(monkeypatch, mail_sink):
    monkeypatch.setenv("AIRFLOW__CORE__MULTI_TEAM", "True")
    from airflow._shared.timezones import timezone
    from airflow.models.asset import AssetModel, AssetWatcherModel
    from airflow.models.team import Team
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session

    tag = uuid.uuid4().hex[:8]
    teams = [f"tl{tag}a", f"tl{tag}b"]
    created = timezone.utcnow() - timedelta(minutes=10)
    with create_session() as session:
        session.add_all([Team(name=t) for t in teams])
        session.flush()
        triggers = {}
        for team in (None, teams[0]):  # asset-watcher triggers: the kind a triggerer assigns without a task
            asset = AssetModel(name=f"tl{tag}-{team or 'none'}", uri=f"tl{tag}://{team or 'none'}")
            trigger = Trigger(classpath="airflow.providers.standard.triggers.temporal.DateTimeTrigger",
                              kwargs={"moment": created}, created_date=created, team_name=team)
            session.add_all([asset, trigger])
            session.flush()
            session.add(AssetWatcherModel(name=f"tl{tag}-watcher", asset_id=asset.id, trigger_id=trigger.id))
            triggers[team] = trigger.id
    teamless, own = triggers[None], triggers[teams[0]]

    # every team's triggerer looks for work, as it does each loop (triggerer ids: any unused numbers)
    ids = {team: 900_000_000 + i for i, team in enumerate(teams)}
    for team in teams:
        Trigger.assign_unassigned(ids[team], capacity=1000, health_check_threshold=30, team_name=team)
    assert own in Trigger.ids_for_triggerer(ids[teams[0]], team_name=teams[0])  # the control: assignment works
    for team in teams:
        assert teamless not in Trigger.ids_for_triggerer(ids[team], team_name=team)
    with create_session() as session:
        assert session.get(Trigger, teamless).triggerer_id is None  # nobody runs it...

    alerts = Alerts(AlertSettings(smtp_port=mail_sink.port, queued_seconds=60, teams=teams,
                                  db_url=os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]))
    alerts.check()  # ... and the platform's alert address hears of it
    subjects = [m["Subject"] for m in mail_sink.messages()]
    assert any("no team:" in s and "waiting for a triggerer" in s for s in subjects), subjects
    # the team's own trigger, taken by its triggerer, is not alerted
    assert not [s for s in subjects if teams[0] in s], subjects
