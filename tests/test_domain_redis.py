"""The domains' Redis: each domain's ACL user is confined to its own key prefix and channels."""

from __future__ import annotations

import pytest
import redis

from devplatform.domain_redis import acl_rules, redis_domains


def test_aurora_user_cannot_read_or_write_another_prefix(domain_redis):
    aurora = domain_redis.client("aurora")
    domain_redis.admin().set("other_domain:secret", "theirs")
    aurora.set("aurora:mine", "ours")
    assert aurora.get("aurora:mine") == "ours"
    for attempt in (
        lambda: aurora.get("other_domain:secret"),
        lambda: aurora.set("other_domain:secret", "overwritten"),
        lambda: aurora.set("unprefixed", "x"),
        lambda: aurora.hset("other_domain:h", mapping={"a": 1}),
        lambda: aurora.rename("aurora:mine", "other_domain:stolen"),
        lambda: aurora.publish("other_domain:events", "x"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    assert domain_redis.admin().get("other_domain:secret") == "theirs"
    assert domain_redis.admin().exists("unprefixed", "other_domain:h", "other_domain:stolen") == 0


def test_other_domains_user_cannot_read_aurora_keys(domain_redis):
    domain_redis.client("aurora").hset("aurora:features:1", mapping={"activity_count_7d": 3})
    other = domain_redis.client("other_domain")
    with pytest.raises(redis.exceptions.NoPermissionError):
        other.hgetall("aurora:features:1")
    with pytest.raises(redis.exceptions.NoPermissionError):
        other.delete("aurora:features:1")
    other.set("other_domain:ok", "1")  # its own prefix works
    assert domain_redis.client("aurora").hgetall("aurora:features:1") == {"activity_count_7d": "3"}


def test_dangerous_and_admin_commands_are_refused(domain_redis):
    aurora = domain_redis.client("aurora")
    for attempt in (aurora.flushall, aurora.flushdb, lambda: aurora.keys("*"), lambda: aurora.config_get("*"),
                    lambda: aurora.acl_list(), lambda: aurora.execute_command("DEBUG", "SLEEP", "0")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    # but a transaction and RENAME within the prefix (the feature store's atomic swap) work
    with aurora.pipeline(transaction=True) as p:
        p.hset("aurora:tmp", mapping={"a": 1}).rename("aurora:tmp", "aurora:final")
        assert p.execute() == [1, True]


def test_no_access_without_a_login_or_with_a_wrong_password(domain_redis):
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=domain_redis.port).get("aurora:x")
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=domain_redis.port, username="aurora", password="wrong").get("aurora:x")


def test_redis_hook_logs_in_as_the_connections_user(domain_redis):
    """The provider's RedisHook passes the connection's login as the ACL username."""
    from airflow.providers.redis.hooks.redis import RedisHook

    client = RedisHook(redis_conn_id="aurora_redis").get_conn()
    client.set("aurora:hook", "1")
    assert "aurora" in {c["user"] for c in domain_redis.admin().client_list()}
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.get("other_domain:anything")


def test_acl_file_holds_no_clear_password():
    rules = acl_rules("admin-pw", {"aurora": "aurora-pw"})
    assert not any("admin-pw" in r or "aurora-pw" in r for r in rules)
    assert any(r.startswith("user aurora on #") and "~aurora:*" in r and "&aurora:*" in r for r in rules)


def test_only_domains_declaring_redis_get_a_user():
    assert "aurora" in redis_domains(["aurora", "referral"])
    assert "referral" not in redis_domains(["aurora", "referral"])
