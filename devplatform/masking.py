"""Secrets masked in what a stand-in records and logs: query parameters, headers and JSON
fields named like a secret (the names Airflow's secrets masker hides, plus OAuth's ``code``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

MASK = "***"
# Airflow's DEFAULT_SENSITIVE_FIELDS (airflow.sdk secrets masker), matched the same way: a
# name is secret when it contains one of these, case-insensitively, with "-" read as "_".
SENSITIVE_PARTS = frozenset({
    "access_key", "access_token", "api_key", "apikey", "auth_header", "authorization", "bearer",
    "connection_string", "dsn", "passphrase", "passwd", "password", "private_key", "proxy",
    "proxy_password", "proxies", "secret", "service_account", "service_key", "token",
    "keyfile_dict", "webhook_url",
    # beyond Airflow's list: session cookies and OAuth's one-time authorization code
    "cookie",
})
SENSITIVE_NAMES = frozenset({"code"})



def is_secret_name(name: str) -> bool:
    """Whether a parameter, header or field of this name carries a secret."""
    n = name.lower().replace("-", "_")
    return n in SENSITIVE_NAMES or any(part in n for part in SENSITIVE_PARTS)


def mask_query(query: str) -> str:
    """A query string with the values of secret parameters replaced by ``***``."""
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(is_secret_name(k) for k, _ in pairs):
        return query
    return urlencode([(k, MASK if is_secret_name(k) else v) for k, v in pairs], safe="*,:/")


def mask_mapping(values: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Headers or a JSON body with secret fields masked (nested dicts and lists too)."""
    items = values.items() if isinstance(values, Mapping) else values

    def walk(v: Any) -> Any:
        if isinstance(v, Mapping):
            return mask_mapping(v)
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return {k: MASK if is_secret_name(str(k)) else walk(v) for k, v in items}


def mask_url(url: str) -> str:
    """``/path?query`` with the query masked (what the access log prints)."""
    path, sep, query = url.partition("?")
    return f"{path}{sep}{mask_query(query)}" if sep else url


class _MaskAccessLog(logging.Filter):
    """Masks the request line uvicorn's access log prints (``client, method, path?query, ...``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, str) and "?" in a for a in record.args):
            record.args = tuple(mask_url(a) if isinstance(a, str) and "?" in a else a for a in record.args)
        return True


def mask_access_log() -> None:
    """Install the masking filter on uvicorn's access logger (once per process)."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _MaskAccessLog) for f in logger.filters):
        logger.addFilter(_MaskAccessLog())
