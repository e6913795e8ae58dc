"""BullhornHook against the Bullhorn stand-in: login flow, session renewal, keyset paging."""

from __future__ import annotations

import pytest

from conftest import set_connection
from domains.referral.bullhorn.hook import BullhornHook
from shared.http import PermanentApiError


def test_login_follows_the_data_centre_redirect_and_gets_a_session(referral):
    hook = BullhornHook()
    hook.login()
    assert hook.rest_url == f"{referral.bullhorn.url}/rest-services/corp7/"
    assert hook.bh_rest_token in referral.state.sessions
    assert [c.path for c in referral.bullhorn.faults.calls[:2]] == [
        "/rest-services/loginInfo", "/dc2/rest-services/loginInfo"]


def test_relogin_uses_the_new_refresh_token_and_the_old_one_stops_working(referral):
    hook = BullhornHook()
    hook.login()
    first_refresh = hook.refresh_token
    hook.login()
    assert hook.refresh_token != first_refresh
    assert first_refresh not in referral.state.refresh_tokens
    assert hook.refresh_token in referral.state.refresh_tokens
    assert len(referral.bullhorn.faults.calls_to("/oauth/authorize")) == 1  # the second login refreshed


def test_expired_session_mid_paging_carries_on_from_the_same_page(referral):
    referral.state.seed(candidates=1203, positions=0)
    referral.state.expire_after_calls = 2
    hook = BullhornHook()
    pages = list(hook.iter_modified("Candidate", ["id", "dateLastModified"], page_size=500))
    assert [len(p) for p in pages] == [500, 500, 203]
    ids = [r["id"] for p in pages for r in p]
    assert len(ids) == len(set(ids)) == 1203
    assert hook.logins == 2


def test_wrong_password_fails_at_once_with_a_clear_error(referral):
    set_connection("referral_bullhorn", conn_type="http", host=referral.bullhorn.url, login="api.user",
                   password="wrong", extra={"auth_type": "none", "client_id": "platform-client",
                                            "client_secret": "platform-secret"})
    with pytest.raises(PermanentApiError, match=r"GET /oauth/authorize answered 401") as err:
        BullhornHook().login()
    assert "wrong" not in str(err.value)


def test_search_supports_lucene_date_ranges(referral):
    referral.state.seed(candidates=30, positions=0)
    hook = BullhornHook()
    hook.login()
    body = hook.rest_get("search/Candidate", {"query": "isDeleted:0 AND dateLastModified:[20000101000000 TO *]",
                                              "fields": "id,firstName", "sort": "dateLastModified,id", "count": 10})
    assert body["total"] == 30 and body["count"] == 10 and "_score" in body["data"][0]


def test_client_credentials_are_never_sent_as_headers(referral):
    # The http provider sends every connection extra it does not know as a header; the OAuth
    # client id and secret are the hook's settings and go only where Bullhorn asks for them.
    referral.state.seed(candidates=3, positions=0)
    list(BullhornHook().iter_modified("Candidate", ["id", "dateLastModified"]))
    calls = referral.bullhorn.faults.calls
    assert calls
    sent = {name.lower() for call in calls for name in call.headers}
    assert not sent & {"client_id", "client_secret", "auth_type"}, sent
