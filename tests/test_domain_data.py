"""`make start` / `make aurora-data`: a domain that declares a generated dataset (`local.data` in its settings.yaml)
gets its dataset loaded into its own database through its own connection, once per parameters."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
from pathlib import Path

import psycopg2
import pytest

from devplatform import settings as domain_settings
from devplatform.config import PlatformConfig, domain_db_role
from devplatform.platform import LocalPlatform
from devplatform.ports import free_ports


def test_generate_data_loads_the_domains_dataset_once():
    (pg_port,) = free_ports(1)
    # its own folder that PostgreSQL's system user may traverse (pytest's tmp_path is 0700)
    state = Path(tempfile.mkdtemp(prefix="domain-data-platform-"))
    os.chmod(state, 0o711)
    platform = LocalPlatform(PlatformConfig(state=state, pg_port=pg_port), quiet=True)
    said: list[str] = []
    platform.say = said.append
    try:
        platform.pg.start()
        platform.pg.wait_ready()
        password = platform.config.secrets.domain_db_passwords["aurora"]
        platform.pg.ensure_database("aurora", domain_db_role("aurora"), password)
        assert platform.generate_data("aurora", ["--users", "20", "--days", "14", "--defects", "invalid_tier"])
        conn = psycopg2.connect(host="127.0.0.1", port=pg_port, dbname="aurora", user="aurora", password=password)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*), count(*) FILTER (WHERE subscription_tier NOT IN ('free', 'premium', 'pro'))"
                            " FROM users")
                assert cur.fetchone() == (20, 3)
                cur.execute("SELECT count(DISTINCT user_id) FROM life_events")
                assert cur.fetchone()[0] == 20
        finally:
            conn.close()
        assert any("[aurora-data] loaded" in line for line in said), said
        assert platform.generate_data("aurora", ["--users", "20", "--days", "14", "--defects", "invalid_tier"])
        assert "nothing to do" in said[-1]
        assert not platform.generate_data("referral")  # declares no dataset: nothing run
    finally:
        platform.stop()
        shutil.rmtree(state, ignore_errors=True)


# What a domain command sees: printed by the command itself (the platform's real path runs it).
PROBE = ["-c", "import json, os; print(json.dumps({'uid': os.getuid(), 'groups': os.getgroups(), 'env': dict(os.environ)}))"]


@pytest.mark.parametrize("executor", ["celery", "local"])
def test_domain_commands_see_their_own_settings_and_nothing_of_the_platform(monkeypatch, executor):
    """`local.data` (blocking and in the background) gets the domain's own connections and
    `local.setup` none; neither gets anything of the platform or another domain, and where
    there are team users (root, Celery) both run as the team's user, without root's groups."""
    state = Path(tempfile.mkdtemp(prefix="domain-cmd-platform-"))
    os.chmod(state, 0o711)  # the team users' interpreter lives there
    domains = ["aurora", "hss_workflow", "referral"]
    cfg = PlatformConfig(state=state, domains=domains, executor=executor)
    platform = LocalPlatform(cfg, quiet=True)
    said: list[str] = []
    platform.say = said.append
    load = domain_settings.load

    def probed(domain, values=None, **kw):
        s = load(domain, values, **kw)
        for hook in ("setup", "data"):
            if s["local"][hook]:
                s["local"][hook] = PROBE
        return s

    monkeypatch.setattr(domain_settings, "load", probed)
    # a global connection in the starter's environment reaches no domain command
    monkeypatch.setenv("AIRFLOW_CONN_AURORA_POSTGRES", '{"conn_type": "postgres", "host": "leak"}')
    s = cfg.secrets
    platform_secrets = {
        "metadata DB URL": cfg.airflow_env()["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], "metadata DB password": s.airflow_db_password,
        "Fernet key": s.fernet_key, "lineage DB password": s.lineage_db_password,
        "lineage platform key": s.lineage_platform_key, "domain Redis admin password": s.domain_redis_admin_password,
        "JWT secret": s.jwt_secret, "stand-in admin key": s.standin_admin_key,
        **{f"{d}'s {what}": value for d in domains for what, value in (
            ("Celery broker password", s.redis_passwords[d]), ("Flower password", s.flower_passwords[d]),
            ("lineage ingest key", s.lineage_ingest_keys[d]))},
    }
    try:
        platform.generate_data("aurora", ["--users", "5"])
        blocking = json.loads(said[-1])
        background = platform.start_generator("aurora")
        assert background.wait() == 0
        in_background = json.loads(platform.proc("generate-aurora").logfile.read_text().splitlines()[-1])
        setups = dict(platform.start_setups())
        assert list(setups) == ["hss_workflow"]
        assert setups["hss_workflow"].wait() == 0
        setup = json.loads(platform.proc("setup-hss_workflow").logfile.read_text().splitlines()[-1])

        own_conns = {k: v for k, v in domain_settings.as_env(["aurora"], cfg.settings_vars(), team_scoped=False).items()
                     if k.startswith("AIRFLOW_CONN_")}
        assert "AIRFLOW_CONN_AURORA_POSTGRES" in own_conns
        for name, seen, domain in (("local.data", blocking, "aurora"), ("local.data in the background", in_background, "aurora"),
                                   ("local.setup", setup, "hss_workflow")):
            env = seen["env"]
            conns = {k: v for k, v in env.items() if k.startswith("AIRFLOW_CONN_")}
            assert conns == (own_conns if domain == "aurora" else {}), name
            assert [k for k in env if k.startswith(("AIRFLOW__", "AIRFLOW_VAR_", "PLATFORM_"))] == [], name
            values = "\n".join(env.values())
            others = {f"{o}'s {what}": value for o in domains if o != domain for what, value in (
                ("database password", s.domain_db_passwords[o]), ("domain Redis password", s.domain_redis_passwords[o]))}
            assert [what for what, secret in {**platform_secrets, **others}.items() if secret and secret in values] == [], name
            assert env["AIRFLOW_HOME"] == str(cfg.tenant_dir(domain) / "local"), name
            if executor == "celery" and os.geteuid() == 0:
                user = pwd.getpwnam(f"tenant-{domain}")
                assert (seen["uid"], seen["groups"]) == (user.pw_uid, []), name
                assert Path(env["AIRFLOW_HOME"]).stat().st_uid == user.pw_uid, name
        assert setup["env"]["HSS_WORKFLOW_SONGS_ROOT"] == str(cfg.tenant_dir("hss_workflow") / "data" / "songs")
    finally:
        shutil.rmtree(state, ignore_errors=True)
