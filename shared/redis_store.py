"""Redis for the domains: a checked connection through the provider's RedisHook, and hashes
replaced atomically so a reader never sees a half-written key.

    client = connect("aurora_redis")          # RedisUnavailable (clear message) if unreachable
    replace_hashes(client, {"aurora:features:42": {"activity_count_7d": 31, ...}}, ttl=None)

The connection's login is the domain's Redis ACL user (``devplatform/domain_redis.py``):
the provider's ``RedisHook`` passes it as the username. Keys must carry the domain's prefix;
any other key is refused by the server (``NOPERM``).

:func:`replace_hashes` replaces keys with calls of a small Lua script (per key ``DEL key`` +
``HSET key ...`` + ``EXPIRE``), ``KEYS_PER_CALL`` keys per call, each key's hash passed as one
JSON argument, pipelined in batches: Redis runs a script as one step, so a reader sees either a
key's old hash or its new one, never a mix and never fields left from the old one (two
arguments per key for the client to pack instead of two per field plus a command per key:
redis-py packs each argument in Python, which was most of the cache's time, measured with
``benchmarks.aurora_features --predictions``).
It reports the key spaces it wrote (each key's prefix up to its last ``:``, e.g.
``aurora:features:``) as OpenLineage outputs through :mod:`shared.lineage`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

BATCH = 5000  # keys per pipelined round trip


class RedisUnavailable(RuntimeError):
    """The domain's Redis could not be reached: transient, the task's retries try again."""


def connect(conn_id: str) -> Any:
    """A ``redis.Redis`` client from the provider's hook, checked with ``PING``."""
    import redis
    from airflow.providers.redis.hooks.redis import RedisHook

    hook = RedisHook(redis_conn_id=conn_id)
    client = hook.get_conn()
    try:
        client.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
        raise RedisUnavailable(
            f"Redis of connection {conn_id!r} at {hook.host}:{hook.port} is unreachable ({e}); "
            "nothing was written, the task's retries try again"
        ) from e
    return client


def _fields(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Redis stores strings: None and NaN are left out (a missing field means unknown)."""
    out = {}
    for k, v in mapping.items():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        out[k] = v.item() if hasattr(v, "item") else v
    return out


def _batches(items: Iterable[tuple[str, Mapping[str, Any]]], size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# KEYS: the keys; ARGV[1]: TTL in seconds ("0": none), ARGV[1 + i]: KEYS[i]'s hash as one JSON
# array of strings [field, value, field, value, ...] (cjson, bundled with Redis' Lua)
_REPLACE_HASHES = """
local ttl = ARGV[1]
for i, key in ipairs(KEYS) do
  redis.call('DEL', key)
  local kv = cjson.decode(ARGV[i + 1])
  if #kv > 0 then
    redis.call('HSET', key, unpack(kv))
    if ttl ~= '0' then redis.call('EXPIRE', key, ttl) end
  end
end
return #KEYS
"""
KEYS_PER_CALL = 100  # keys replaced by one script call (Redis runs it as one step: about 1 ms)


def _text(value: Any) -> str:
    """A field's value as the text Redis stores, as redis-py encodes it (str as it is, numbers
    by ``repr``, UTF-8 bytes decoded)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"a hash value must be str, bytes, int or float, not {type(value).__name__}: {value!r}")
    return repr(value)


def _encoded(mapping: Mapping[str, Any]) -> str:
    """One hash as the script's JSON array: ``["field", "value", ...]``."""
    flat: list[str] = []
    for field, value in _fields(mapping).items():
        flat += (field, _text(value))
    return json.dumps(flat)


def replace_hashes(client: Any, hashes: Mapping[str, Mapping[str, Any]] | Iterable[tuple[str, Mapping[str, Any]]],
                   ttl: int | None = None, batch_size: int = BATCH) -> int:
    """Replace each key's hash (old fields removed), ``batch_size`` keys per pipelined round trip.

    ``hashes`` may be a generator (e.g. one chunk of rows at a time): it is consumed one batch at a
    time. Each script call replaces ``KEYS_PER_CALL`` keys, each key's hash passed as one JSON
    argument: the client packs two arguments per key instead of two per field (redis-py's
    per-argument packing was most of the time), and Redis runs each call as one step, so a
    reader sees a key's old hash or its new one, never a mix. Not for Redis Cluster (the keys of
    one call may live on different nodes). Returns the number of keys written. A connection
    failure raises :class:`RedisUnavailable`; each key written before it is complete."""
    import redis

    items = hashes.items() if isinstance(hashes, Mapping) else hashes
    written = 0
    prefixes: set[str] = set()
    script = client.register_script(_REPLACE_HASHES)
    expire = str(int(ttl)) if ttl else "0"
    try:
        for batch in _batches(items, batch_size):
            with client.pipeline(transaction=False) as pipe:
                for i in range(0, len(batch), KEYS_PER_CALL):
                    part = batch[i:i + KEYS_PER_CALL]
                    keys = [key for key, _ in part]
                    prefixes.update(key_prefix(k) for k in keys)
                    script(keys=keys, args=[expire, *(_encoded(m) for _, m in part)], client=pipe)
                pipe.execute()
            written += len(batch)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
        raise RedisUnavailable(f"Redis became unreachable after {written} key(s) were written ({e}); "
                               "the task's retries write them again") from e
    record_keyspaces(client, outputs=prefixes)
    return written


def key_prefix(key: str) -> str:
    """A key's key space: everything up to and including its last ``:``."""
    head, sep, _ = key.rpartition(":")
    return f"{head}{sep}" if sep else key


def record_keyspaces(client: Any, *, inputs: Iterable[str] = (), outputs: Iterable[str] = ()) -> None:
    """Report key spaces (prefixes) of ``client``'s server read/written by the task (lineage)."""
    from shared.lineage import record_io, redis_keyspace

    kwargs = client.get_connection_kwargs()
    host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
    record_io(client, inputs=[redis_keyspace(host, port, p) for p in sorted(inputs)],
              outputs=[redis_keyspace(host, port, p) for p in sorted(outputs)])
