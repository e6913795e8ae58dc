"""Bullhorn REST API hook: login, session renewal and incremental reads.

Connection ``referral_bullhorn`` (type http): host = the login-info base URL (e.g.
``https://rest.bullhornstaffing.com``), login/password = the API user, extra
``{"client_id": ..., "client_secret": ..., "auth_type": "none"}``. Transport retries
(429 with Retry-After, 5xx, timeouts, truncated bodies) come from ``JsonApiHook``.

Login: ``loginInfo`` (following the data centre's 307) -> OAuth authorization code ->
access + refresh token -> REST login -> ``BhRestToken`` + ``restUrl``. The refresh token
Bullhorn hands out replaces the old one (which stops working); a 401 on a data call
means the session expired: the hook refreshes the token, logs in again and repeats the
call, so paging carries on from the page it was on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from airflow.sdk.log import mask_secret

from shared.http import JsonApiHook, Page, PermanentApiError, validate

log = logging.getLogger(__name__)

MAX_PAGE = 500
IDS_PER_CALL = 100  # ids in one entity/<Entity>/<id,id,...> call (keeps the URL short)


class BullhornHook(JsonApiHook):
    conn_name_attr = "bullhorn_conn_id"
    default_conn_name = "referral_bullhorn"
    hook_name = "Bullhorn REST (referral)"
    # OAuth client credentials are settings of this hook, never request headers.
    own_extras = (*JsonApiHook.own_extras, "client_id", "client_secret")

    def __init__(self, bullhorn_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(bullhorn_conn_id, **kwargs)
        self.rest_url: str | None = None
        self.bh_rest_token: str | None = None
        self.refresh_token: str | None = None
        self.logins = 0

    # -- login ---------------------------------------------------------------------------
    def _credentials(self) -> tuple[str, str, str, str]:
        conn = self.get_connection(self.http_conn_id)
        extra = conn.extra_dejson
        missing = [k for k in ("client_id", "client_secret") if not extra.get(k)]
        if missing or not conn.login or not conn.password:
            raise PermanentApiError(
                f"connection {self.http_conn_id!r} lacks {', '.join(missing + ([] if conn.login else ['login']))}"
                " (Bullhorn needs login, password and extra client_id/client_secret)")
        return conn.login, conn.password, extra["client_id"], extra["client_secret"]

    def _tokens(self, oauth_url: str, retry_code: bool = True) -> dict:
        username, password, client_id, client_secret = self._credentials()
        if self.refresh_token:
            try:
                return self.post_json(f"{oauth_url}/token", idempotency=False, params={
                    "grant_type": "refresh_token", "refresh_token": self.refresh_token,
                    "client_id": client_id, "client_secret": client_secret})
            except PermanentApiError as exc:
                log.warning("Bullhorn refresh token refused (%s); logging in afresh", exc.status)
        resp = self.send("GET", f"{oauth_url}/authorize", allow_redirects=False, expected=(301, 302, 303, 307),
                         params={"client_id": client_id, "response_type": "code", "username": username,
                                 "password": password, "action": "Login"})
        code = parse_qs(urlsplit(resp.headers.get("Location", "")).query).get("code")
        if not code:
            raise PermanentApiError("GET /oauth/authorize: the redirect carries no authorization code")
        try:
            return self.post_json(f"{oauth_url}/token", idempotency=False, params={
                "grant_type": "authorization_code", "code": code[0], "client_id": client_id,
                "client_secret": client_secret})
        except PermanentApiError as exc:
            # The code is single-use: when the answer to its exchange was lost, the retry is
            # refused with invalid_grant. Ask for a new code once.
            if exc.status != 400 or "invalid_grant" not in str(exc) or not retry_code:
                raise
            log.warning("Bullhorn refused the authorization code (already used); asking for a new one")
            return self._tokens(oauth_url, retry_code=False)

    def login(self) -> None:
        username = self._credentials()[0]
        info = self.get_json("/rest-services/loginInfo", params={"username": username})
        for attempt in (1, 2):
            tokens = self._tokens(info["oauthUrl"].rstrip("/"))
            self.refresh_token = tokens["refresh_token"]  # the previous one no longer works
            try:
                session = self.post_json(f"{info['restUrl'].rstrip('/')}/login", idempotency=False,
                                         params={"version": "*", "access_token": tokens["access_token"]})
                break
            except PermanentApiError as exc:
                # The access token is single-use: a retry after a lost answer is refused (401).
                if exc.status != 401 or attempt == 2:
                    raise
                log.warning("Bullhorn REST login refused a fresh access token; getting a new one")
        self.bh_rest_token, self.rest_url = session["BhRestToken"], session["restUrl"]
        for issued in (tokens["access_token"], tokens["refresh_token"], self.bh_rest_token):
            mask_secret(issued)  # issued credentials: redacted from task logs like the connection's
        self.logins += 1
        log.info("Logged in to Bullhorn (login %d)", self.logins)

    def rest_get(self, path: str, params: dict[str, Any]) -> Any:
        """GET ``{restUrl}{path}``; on 401 renew the session once and repeat the call."""
        for attempt in (1, 2):
            if not self.bh_rest_token:
                self.login()
            try:
                return self.get_json(f"{self.rest_url}{path}", params=params,
                                     headers={"BhRestToken": self.bh_rest_token})
            except PermanentApiError as exc:
                if exc.status == 401 and attempt == 1:
                    log.info("Bullhorn session expired on %s; logging in again", path)
                    self.bh_rest_token = None
                    continue
                raise
        raise AssertionError("unreachable")

    # -- reads ---------------------------------------------------------------------------
    def iter_modified(self, entity: str, fields: Sequence[str], since: tuple[int, int] = (0, 0),
                      page_size: int = MAX_PAGE) -> Iterator[list[dict]]:
        """Pages of records modified after ``since`` = (dateLastModified, id), in that order.

        Keyset paging on (dateLastModified, id): every page asks for rows after the last
        one seen, so records that change during a long sync neither shift nor hide others.
        """
        if not 0 < page_size <= MAX_PAGE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE}")
        from domains.referral.bullhorn.models import record_key

        dlm, rid = since
        while True:
            where = f"dateLastModified > {dlm} OR (dateLastModified = {dlm} AND id > {rid})"
            body = self.rest_get(f"query/{entity}", {
                "where": where, "fields": ",".join(fields), "orderBy": "dateLastModified,id",
                "start": 0, "count": page_size})
            page = validate(body, Page, f"GET query/{entity}")
            if page.data:
                yield page.data
            if page.count < page_size or page.start + page.count >= page.total:
                return
            keys = [k for k in map(record_key, page.data) if k is not None]
            if not keys or max(keys) <= (dlm, rid):
                raise PermanentApiError(
                    f"GET query/{entity}: a full page without a usable (dateLastModified, id); cannot page on")
            dlm, rid = max(keys)

    def get_by_ids(self, entity: str, ids: Sequence[int], fields: Sequence[str],
                   batch: int = IDS_PER_CALL) -> Iterator[list[dict]]:
        """The current records with these ids, ``batch`` ids per ``entity/<Entity>/<id,id,...>`` call.

        Bullhorn answers one id with ``{"data": {...}}`` and several with ``{"data": [...]}``
        holding those it found (404 when it finds none). Ids it does not return are simply
        absent from what is yielded.
        """
        if not 0 < batch <= MAX_PAGE:
            raise ValueError(f"batch must be 1..{MAX_PAGE}")
        for i in range(0, len(ids), batch):
            chunk = [int(x) for x in ids[i:i + batch]]
            path = f"entity/{entity}/{','.join(map(str, chunk))}"
            try:
                body = self.rest_get(path, {"fields": ",".join(fields), "count": len(chunk)})
            except PermanentApiError as exc:
                if exc.status == 404:  # none of these ids exists (any more)
                    yield []
                    continue
                raise
            data = body.get("data") if isinstance(body, dict) else None
            if isinstance(data, dict):
                data = [data]
            if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                raise PermanentApiError(f"GET {path}: expected {{\"data\": {{...}}}} or {{\"data\": [...]}}")
            yield data
