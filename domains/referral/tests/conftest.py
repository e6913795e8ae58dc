"""Referral test wiring: both stand-ins on free ports, a fresh referral database, the mail sink."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from conftest import db_query, set_connection, set_variable
from devplatform.standin import StandInServer
from domains.referral.local.bullhorn import BullhornState, create_bullhorn_app
from domains.referral.local.ml_service import create_ml_app

FAST_RETRIES = {"backoff_initial": 0.01, "backoff_max": 0.05, "retry_after_max": 1, "timeout": 5}


@dataclass
class Referral:
    bullhorn: StandInServer
    ml: StandInServer
    db: dict
    mail: object

    @property
    def state(self) -> BullhornState:
        return self.bullhorn.app.state.bullhorn

    def query(self, sql: str, params=()) -> list[tuple]:
        return db_query(self.db, sql, params)


@pytest.fixture
def referral(standin, domain_db, mail_sink) -> Referral:
    bullhorn = standin(create_bullhorn_app())
    ml = standin(create_ml_app(api_key="ml-test-key"))
    set_connection("referral_bullhorn", conn_type="http", host=bullhorn.url, login="api.user", password="api.password",
                   extra={"auth_type": "none", "client_id": "platform-client", "client_secret": "platform-secret",
                          **FAST_RETRIES})
    set_connection("referral_ml_service", conn_type="http", host=ml.url, password="ml-test-key",
                   extra={"auth_type": "api_key", "api_key_header": "X-API-Key", **FAST_RETRIES})
    set_variable("referral_matching_score_threshold", "70")
    set_variable("referral_alert_emails", "recruiting@platform.local")
    return Referral(bullhorn, ml, domain_db("referral"), mail_sink)
