"""Each domain's connections, variables and pools, from ``domains/<d>/settings.yaml``.

The files use the Astro CLI's ``airflow_settings.yaml`` field names under ``airflow:``.
String values may hold ``${NAME}`` or ``${NAME:-default}`` placeholders, so real secrets
never sit in a committed file. Two modes fill them:

- local (``make start``, tests, ``make settings-env MODE=local``): the environment first,
  then the local platform's values (generated passwords, ports), then the default;
- deploy (``make settings-env``, the default there): the environment only. The defaults
  are development values (``127.0.0.1``, stand-in passwords), so every ``NAME`` that is
  unset or empty is missing, and all missing names are reported at once
  (:class:`MissingSettings`). Stand-ins are not deployed: their placeholders are not read.

Applying is team-scoped (``team_name`` = the domain) through Airflow's models, because
Airflow 3.3's CLI has no ``--team-name`` and ``variables import`` drops the team.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from devplatform.paths import DOMAINS_DIR, ROOT

_PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")


class SettingsError(ValueError):
    pass


class MissingSettings(SettingsError):
    """Placeholders with no value: ``missing`` maps each NAME to the files that use it."""

    def __init__(self, missing: Mapping[str, Iterable[str]], deploy: bool) -> None:
        self.missing = {name: sorted(set(files)) for name, files in sorted(missing.items())}
        self.deploy = deploy
        width = max(len(n) for n in self.missing)
        where = "in the environment" if deploy else "in the environment or by the platform"
        lines = [f"{len(self.missing)} setting(s) not set {where}:"]
        lines += [f"  {name:{width}s}  {', '.join(files)}" for name, files in self.missing.items()]
        if deploy:
            lines.append("Deploy mode uses no development defaults: set each name above "
                         "(MODE=local gives the local platform's values).")
        super().__init__("\n".join(lines))


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _expand(value: Any, resolve: Callable[[str, str | None], str | None], missing: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, resolve, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, resolve, missing) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        found = resolve(m.group(1), m.group(2))
        if found is None:
            missing.add(m.group(1))
            return m.group(0)
        return found

    return _PLACEHOLDER.sub(sub, value)


def _resolver(values: Mapping[str, str] | None, deploy: bool) -> Callable[[str, str | None], str | None]:
    environ = os.environ
    if deploy:
        return lambda name, default: environ.get(name) or None

    def local(name: str, default: str | None) -> str | None:
        if name in environ:
            return environ[name]
        if values and name in values:
            return values[name]
        return default

    return local


def settings_file(domain: str) -> Path:
    return DOMAINS_DIR / domain / "settings.yaml"


def load(domain: str, values: Mapping[str, str] | None = None, *, deploy: bool = False) -> dict:
    """The domain's settings with placeholders filled: {connections, variables, pools, standins, local}.

    ``local`` is the local platform's part, never deployed:

    - ``env``: non-secret environment for the team's components (e.g. the allowed data roots
      a deployment sets), which the two commands below get too;
    - ``setup``: a command (python arguments) for development FILES, e.g. hss_workflow's sample
      song, ecommerce_ml's raw drops. ``make start`` starts it first, before PostgreSQL is up:
      it gets no connection;
    - ``data``: a command for development DATA in the domain's database, e.g. aurora's generated
      dataset. ``make start`` runs it once the databases exist (``make aurora-data``: on
      demand, with other arguments), with the domain's own connections (``AIRFLOW_CONN_<D>_*``).

    Both are domain code and run alike (``devplatform.platform.DomainCommand``): as the team's
    OS user where there is one, with an environment of their own that holds nothing of the
    platform (no metadata database URL, Fernet key, lineage key, no other domain's settings).
    ``deploy=True`` fills from the environment only and leaves the stand-ins and ``local`` out; any
    placeholder left without a value raises :class:`MissingSettings` naming all of them.
    """
    path = settings_file(domain)
    raw = yaml.safe_load(path.read_text()) or {}
    airflow = raw.get("airflow") or {}
    missing: set[str] = set()
    local: dict[str, Any] = {"env": {}, "setup": [], "data": []}
    if not deploy:
        # The local platform's values of the deployment's environment: resolved first, so the
        # rest of the file (e.g. a connection's path) can use them; the environment wins.
        raw_local = raw.get("local") or {}
        env = _expand(raw_local.get("env") or {}, _resolver(values, deploy), missing)
        local["env"] = {k: os.environ.get(k) or str(v) for k, v in env.items()}
        values = {**(values or {}), **local["env"]}
        local["setup"] = _expand(raw_local.get("setup") or [], _resolver(values, deploy), missing)
        local["data"] = _expand(raw_local.get("data") or [], _resolver(values, deploy), missing)
    data = {
        "connections": airflow.get("connections") or [],
        "variables": airflow.get("variables") or [],
        "pools": airflow.get("pools") or [],
        "standins": [] if deploy else raw.get("standins") or [],
    }
    data = _expand(data, _resolver(values, deploy), missing)
    data["local"] = local
    if missing:
        raise MissingSettings({name: [_relative(path)] for name in missing}, deploy)
    prefix = f"{domain}_"
    for kind, key in (("connections", "conn_id"), ("variables", "variable_name"), ("pools", "pool_name")):
        for item in data[kind]:
            if not str(item.get(key, "")).startswith(prefix):
                raise SettingsError(f"{path}: {kind} entry {item.get(key)!r} must start with {prefix!r}")
    return data


def connection_fields(c: dict) -> dict:
    """Astro connection fields -> Airflow's JSON connection form."""
    extra = c.get("conn_extra") or {}
    out = {
        "conn_type": c["conn_type"],
        "host": c.get("conn_host"),
        "schema": c.get("conn_schema"),
        "login": c.get("conn_login"),
        "password": c.get("conn_password"),
        "port": int(c["conn_port"]) if c.get("conn_port") not in (None, "") else None,
        "extra": extra if isinstance(extra, dict) else json.loads(extra),
    }
    return {k: v for k, v in out.items() if v not in (None, "", {})}


def _env_name(kind: str, team: str, key: str) -> str:
    return f"AIRFLOW_{kind}__{team.upper()}___{key.upper()}"


def as_env(
    domains: list[str],
    values: Mapping[str, str] | None = None,
    team_scoped: bool = True,
    *,
    deploy: bool = False,
) -> dict[str, str]:
    """Environment variables for Astro deployments (or ``.env`` for ``astro dev start``).

    With ``deploy=True`` every domain is read before failing, so :class:`MissingSettings`
    lists every name still to provide, across all domains, at once.
    """
    env: dict[str, str] = {}
    missing: dict[str, list[str]] = {}
    for d in domains:
        try:
            s = load(d, values, deploy=deploy)
        except MissingSettings as e:
            for name, files in e.missing.items():
                missing.setdefault(name, []).extend(files)
            continue
        for c in s["connections"]:
            name = _env_name("CONN", d, c["conn_id"]) if team_scoped else f"AIRFLOW_CONN_{c['conn_id'].upper()}"
            env[name] = json.dumps(connection_fields(c))
        for v in s["variables"]:
            name = _env_name("VAR", d, v["variable_name"]) if team_scoped else f"AIRFLOW_VAR_{v['variable_name'].upper()}"
            val = v["variable_value"]
            env[name] = val if isinstance(val, str) else json.dumps(val)
    if missing:
        raise MissingSettings(missing, deploy)
    return env


def apply(domains: list[str], values: Mapping[str, str] | None = None) -> dict[str, int]:
    """Create or update every domain's connections, variables and pools, team-scoped. Idempotent."""
    from airflow.models import Connection, Pool, Variable
    from airflow.utils.session import create_session

    counts = {"connections": 0, "variables": 0, "pools": 0}
    with create_session() as session:
        for d in domains:
            s = load(d, values)
            for c in s["connections"]:
                f = connection_fields(c)
                conn = session.query(Connection).filter(Connection.conn_id == c["conn_id"]).one_or_none()
                if conn is None:
                    conn = Connection(conn_id=c["conn_id"], team_name=d)
                    session.add(conn)
                conn.team_name = d
                conn.conn_type = f["conn_type"]
                conn.host = f.get("host")
                conn.schema = f.get("schema")
                conn.login = f.get("login")
                conn.set_password(f.get("password"))
                conn.port = f.get("port")
                conn.set_extra(json.dumps(f["extra"]) if f.get("extra") else None)
                counts["connections"] += 1
            for v in s["variables"]:
                val = v["variable_value"]
                Variable.set(
                    v["variable_name"],
                    val if isinstance(val, str) else json.dumps(val),
                    description=v.get("variable_description"),
                    team_name=d,
                    session=session,
                )
                counts["variables"] += 1
            for p in s["pools"]:
                Pool.create_or_update_pool(
                    p["pool_name"],
                    int(p["pool_slot"]),
                    p.get("pool_description") or "",
                    include_deferred=bool(p.get("pool_include_deferred", False)),
                    team_name=d,
                    session=session,
                )
                counts["pools"] += 1
    return counts


def sync_teams(teams: list[str]) -> int:
    """Create the teams the bundles name (what ``airflow teams sync`` does); the number added."""
    from airflow.models.team import Team
    from airflow.utils.session import create_session

    with create_session() as session:
        missing = sorted(set(teams) - Team.get_all_team_names(session=session))
        session.add_all(Team(name=t) for t in missing)
    return len(missing)
