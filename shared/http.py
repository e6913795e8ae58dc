"""JSON services over HTTP, configured entirely by an Airflow connection: the one way.

:class:`ApiSettings` is a service as its connection describes it (base URL, auth, headers,
timeout, retry policy), read once; :data:`TRANSIENT_STATUS` is what is worth retrying and
:meth:`ApiSettings.retrying`/:meth:`ApiSettings.async_retrying` the one retry policy
(tenacity, sync and async). Three clients stand on them: :class:`JsonApiHook` (sync, a task's
calls), ``shared.triggers.HttpPollTrigger`` (async, a deferred wait on the triggerer) and
``domains.hss_workflow.fanout`` (async, many requests in flight from one task).

``JsonApiHook`` extends the http provider's ``HttpHook`` (base URL, session, TLS and
proxy handling, extras) with what every domain needs:

- auth from the connection: ``login``/``password`` = basic auth (``"auth_type": "none"``
  for services whose hook logs in itself); extra
  ``{"auth_type": "api_key", "api_key_header": "X-API-Key"}`` or ``{"auth_type":
  "bearer"}`` take the key or token from the connection's password;
- retries (tenacity) with exponential backoff and jitter on connection errors, timeouts,
  truncated bodies, 408, 425, 429 (honouring Retry-After, capped) and 5xx; any other 4xx fails at
  once with :class:`PermanentApiError` naming method, path, status and a body excerpt;
- an ``Idempotency-Key`` on every POST made inside a task, derived from the run (its logical
  date, else its run_id), task and map index, so a retried or rerun call is recognisable;
- :meth:`JsonApiHook.paginate` for ``{total, start, count, data}`` envelopes, one page at
  a time;
- response validation with pydantic: a wrong shape names the field.

Connection extras understood here (others go to the provider as usual, i.e. headers):
``auth_type``, ``api_key_header``, ``max_attempts`` (default 5), ``backoff_initial``
(0.5 s), ``backoff_max`` (30 s), ``retry_after_max`` (60 s), ``timeout`` (provider: s or
[connect, read]).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from airflow.providers.http.hooks.http import HttpHook
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from pydantic import BaseModel, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from shared.runs import idempotency_key, run_key  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

OWN_EXTRAS = ("auth_type", "api_key_header", "max_attempts", "backoff_initial", "backoff_max", "retry_after_max")
# The http provider's request options among the extras (``HttpHook``): never headers.
PROVIDER_EXTRAS = ("timeout", "stream", "cert", "proxies", "proxy", "verify", "verify_ssl", "allow_redirects",
                   "max_redirects", "trust_env", "check_response", "srv_lookup")
# Worth retrying, for every client: the statuses that say "try again later" (RFC 9110: 408,
# 425, 429, 5xx). Connection errors, timeouts and truncated bodies are transient too.
TRANSIENT_STATUS = frozenset({408, 425, 429}) | frozenset(range(500, 600))
EXCERPT = 200


class ApiError(AirflowException):
    """An HTTP call failed. ``status`` is None for network errors."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class TransientApiError(ApiError):
    """Worth retrying: network error, timeout, 429, 5xx, truncated body."""


class PermanentApiError(ApiError, AirflowFailException):
    """Not worth retrying: the request or the response breaks the contract.

    An ``AirflowFailException``: the task fails at once, without using its retries."""


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT else text[:EXCERPT] + "…"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import datetime as dt

        return max(0.0, (parsedate_to_datetime(value) - dt.datetime.now(dt.UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


class _WaitRetryAfter:
    """Wait what a 429's Retry-After says (capped), else exponential backoff with jitter."""

    def __init__(self, initial: float, maximum: float, retry_after_max: float) -> None:
        self.backoff = wait_exponential_jitter(multiplier=initial, max=maximum, jitter=initial)
        self.retry_after_max = retry_after_max

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, ApiError) and exc.retry_after is not None:
            return min(exc.retry_after, self.retry_after_max)
        return self.backoff(state)


def status_error(where: str, status: int, text: str, retry_after: str | None = None) -> ApiError:
    """The error for an unexpected answer: :class:`TransientApiError` (with its Retry-After)
    for :data:`TRANSIENT_STATUS`, else :class:`PermanentApiError`; the message names the call,
    the status and an excerpt of the body."""
    msg = f"{where} answered {status}: {_excerpt(text)}"
    if status in TRANSIENT_STATUS:
        return TransientApiError(msg, status=status, retry_after=parse_retry_after(retry_after))
    return PermanentApiError(msg, status=status)


@dataclass(frozen=True)
class ApiSettings:
    """A JSON service as its Airflow connection describes it (see the module docstring for the
    extras): built once by :meth:`from_connection`, used by every client."""

    base_url: str
    headers: dict[str, str] = field(default_factory=dict)  # auth (api key, bearer), Accept, extras
    basic_auth: tuple[str, str] | None = None
    timeout: float | tuple[float, float] = 30.0
    max_attempts: int = 5
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 60.0

    @classmethod
    def from_connection(cls, conn: Any, extras: Mapping[str, Any] | None = None) -> ApiSettings:
        """From an Airflow ``Connection`` (``extras``: its ``extra_dejson``, when read already,
        e.g. with ``aextra_dejson()`` on the triggerer)."""
        e = dict(conn.extra_dejson if extras is None else extras)
        host = conn.host or ""
        base = host if "://" in host else f"{conn.schema or 'http'}://{host}"
        if conn.port:
            base += f":{conn.port}"
        headers = {"Accept": "application/json"}
        headers.update({k: str(v) for k, v in e.items() if k not in OWN_EXTRAS and k not in PROVIDER_EXTRAS})
        basic = None  # the auth header (below) wins over an extra of the same name
        auth_type = e.get("auth_type", "basic")
        if auth_type == "api_key":
            headers[e.get("api_key_header", "X-API-Key")] = conn.password or ""
        elif auth_type == "bearer":
            headers["Authorization"] = f"Bearer {conn.password or ''}"
        elif auth_type == "basic" and conn.login:
            basic = (conn.login, conn.password or "")
        timeout = e.get("timeout", 30)
        return cls(base.rstrip("/"), headers, basic,
                   tuple(float(t) for t in timeout) if isinstance(timeout, list | tuple) else float(timeout),
                   int(e.get("max_attempts", 5)), float(e.get("backoff_initial", 0.5)),
                   float(e.get("backoff_max", 30)), float(e.get("retry_after_max", 60)))

    def aiohttp_timeout(self) -> Any:
        """``timeout`` for aiohttp: a total, or ``[connect, read]`` as socket timeouts."""
        import aiohttp

        if isinstance(self.timeout, tuple):
            connect, read = self.timeout
            return aiohttp.ClientTimeout(sock_connect=connect, sock_read=read)
        return aiohttp.ClientTimeout(total=self.timeout)

    def aiohttp_auth(self) -> Any:
        import aiohttp

        return aiohttp.BasicAuth(*self.basic_auth) if self.basic_auth else None

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + "/" + path.lstrip("/")

    def wait(self) -> _WaitRetryAfter:
        """The wait between tries: Retry-After (capped) when the answer gave one, else
        exponential backoff with jitter from ``backoff_initial`` up to ``backoff_max``."""
        return _WaitRetryAfter(self.backoff_initial, self.backoff_max, self.retry_after_max)

    def _retry_kwargs(self, attempts: int | None, until: float | None = None,
                      backoff_cap: float | None = None) -> dict[str, Any]:
        stop = stop_after_attempt(int(attempts or self.max_attempts))
        if until is not None:  # a poll loop: no attempt limit, only its deadline (epoch seconds)
            stop = stop_before_delay(max(0.0, until - time.time()))
        wait = self.wait() if backoff_cap is None else _WaitRetryAfter(
            self.backoff_initial, min(self.backoff_max, backoff_cap), self.retry_after_max)
        return dict(
            stop=stop,
            wait=wait,
            retry=retry_if_exception_type(TransientApiError),
            reraise=True,
            before_sleep=lambda s: log.warning(
                "Attempt %d failed (%s); retrying in %.1f s", s.attempt_number, s.outcome.exception(), s.upcoming_sleep
            ),
        )

    def retrying(self, attempts: int | None = None, sleep: Callable[[float], None] | None = None) -> Retrying:
        """The retry policy for synchronous calls: :class:`TransientApiError` is tried again."""
        return Retrying(**self._retry_kwargs(attempts), **({"sleep": sleep} if sleep is not None else {}))

    def async_retrying(self, attempts: int | None = None, *, until: float | None = None,
                       backoff_cap: float | None = None) -> AsyncRetrying:
        """The same policy for coroutines (``async for attempt in settings.async_retrying(): ...``).
        A poll loop passes ``until`` (its deadline, epoch seconds: tries stop before a wait would
        pass it, instead of after ``max_attempts``) and ``backoff_cap`` (its poll interval: the
        backoff never waits longer; a Retry-After still wins)."""
        return AsyncRetrying(**self._retry_kwargs(attempts, until, backoff_cap))


class JsonApiHook(HttpHook):
    """A JSON service behind an Airflow HTTP connection. See the module docstring."""

    conn_name_attr = "http_conn_id"
    default_conn_name = "http_default"
    conn_type = "http"
    hook_name = "JSON API (platform)"
    # Connection extras that are this hook's settings, not request headers (the provider sends
    # every extra it does not know as a header). Subclasses add their own.
    own_extras: tuple[str, ...] = OWN_EXTRAS

    def __init__(self, http_conn_id: str, *, sleep: Callable[[float], None] | None = None, **kwargs: Any) -> None:
        super().__init__(method="GET", http_conn_id=http_conn_id, **kwargs)
        self._session: requests.Session | None = None
        self.settings: ApiSettings | None = None  # the connection's, once get_conn has read it
        self._sleep = sleep

    # -- session ------------------------------------------------------------------------
    def get_conn(self, headers: dict | None = None, extra_options: dict | None = None) -> requests.Session:
        """The provider's session (base URL, TLS, proxies, keep-alive, extras as headers), then
        this hook's auth and settings applied to it through the session's public attributes."""
        if self._session is not None and headers is None and extra_options is None:
            return self._session
        session = super().get_conn(headers, extra_options)
        conn = self.get_connection(self.http_conn_id)
        self.settings = ApiSettings.from_connection(conn)
        # The provider sends every extra it does not know as a header; this hook's own extras
        # are settings, not headers.
        for name in self.own_extras:
            session.headers.pop(name, None)
        if headers:
            session.headers.update(headers)
        if self.settings.basic_auth is None:
            session.auth = None  # no basic auth: an api-key or bearer header, or the hook logs in itself
        for name, value in self.settings.headers.items():  # the auth header wins; Accept only by default
            if name in self.own_extras:  # a subclass's own settings
                continue
            if name == "Accept":
                session.headers.setdefault(name, value)
            else:
                session.headers[name] = value
        self._session = session
        return session

    @property
    def timeout(self) -> Any:
        value = self.merged_extra.get("timeout", 30)
        return tuple(value) if isinstance(value, list) else value

    # -- requests -----------------------------------------------------------------------
    def _retrying(self, attempts: int | None = None) -> Retrying:
        self.get_conn()
        return self.settings.retrying(attempts, sleep=self._sleep)

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotency: bool | str = True,
        expected: tuple[int, ...] = (200, 201, 202, 204),
        parse_json: bool = False,
        allow_redirects: bool = True,
    ) -> requests.Response:
        """One logical call, retried as above. With ``parse_json`` a truncated body is retried too,
        and the parsed body is available as ``response.parsed``. ``path`` may be an absolute URL
        (services that hand out their own URLs at login); errors name only its path."""
        session = self.get_conn()
        method = method.upper()
        absolute = path.startswith(("http://", "https://"))
        url = path if absolute else self.url_from_endpoint(path)
        if absolute:
            path = urlsplit(path).path
        hdrs = dict(headers or {})
        if method == "POST" and idempotency:
            key = idempotency if isinstance(idempotency, str) else idempotency_key(suffix=f"{method} {path}")
            if key:
                hdrs["Idempotency-Key"] = key
        where = f"{method} {path}"

        def attempt() -> requests.Response:
            try:
                resp = session.request(
                    method, url, params=params, json=json_body, headers=hdrs, timeout=self.timeout,
                    allow_redirects=allow_redirects,
                )
            except requests.Timeout as exc:
                raise TransientApiError(f"{where}: timed out ({type(exc).__name__})") from None
            except requests.ConnectionError as exc:
                raise TransientApiError(f"{where}: connection failed ({type(exc).__name__})") from None
            if resp.status_code not in expected:
                self.raise_for_status(where, resp)
            resp.parsed = None
            if parse_json and resp.status_code != 204 and resp.content:
                try:
                    resp.parsed = resp.json()
                except ValueError:
                    raise TransientApiError(f"{where}: body is not JSON: {_excerpt(resp.text)}") from None
            return resp

        return self._retrying()(attempt)

    @staticmethod
    def raise_for_status(where: str, resp: requests.Response) -> None:
        raise status_error(where, resp.status_code, resp.text, resp.headers.get("Retry-After"))

    def request_json(
        self,
        method: str,
        path: str,
        *,
        model: type[M] | None = None,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotency: bool | str = True,
    ) -> Any:
        """Send, parse the JSON body and validate it against ``model`` when given."""
        resp = self.send(
            method, path, params=params, json_body=json_body, headers=headers, idempotency=idempotency, parse_json=True
        )
        where = f"{method.upper()} {path}"
        return validate(resp.parsed, model, where) if model is not None else resp.parsed

    def get_json(self, path: str, **kwargs: Any) -> Any:
        return self.request_json("GET", path, **kwargs)

    def post_json(self, path: str, json_body: Any = None, **kwargs: Any) -> Any:
        return self.request_json("POST", path, json_body=json_body, **kwargs)

    def paginate(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        page_size: int = 500,
        start: int = 0,
    ) -> Iterator[Page]:
        """Yield ``{total, start, count, data}`` pages until ``start + count >= total``."""
        while True:
            body = self.get_json(path, params={**(params or {}), "start": start, "count": page_size}, model=Page)
            yield body
            start = body.start + body.count
            if body.count == 0 or start >= body.total:
                return


class Page(BaseModel):
    """The offset/count envelope shared by Bullhorn-style APIs."""

    total: int
    start: int
    count: int
    data: list[dict[str, Any]]


def validate(body: Any, model: type[M], where: str) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<body>'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise PermanentApiError(f"{where}: unexpected response body ({problems})") from None
