"""The sandbox's session stores: one real Redis (the machine's) shared by every region.

In AWS each region has its own ElastiCache; here the regions share the local Redis and are kept
apart by key prefix (``<sandbox database>:<region>:session:``), so several sandboxes and test runs
never see each other's keys. `purge` removes exactly one sandbox's keys.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

DEFAULT_REDIS = "127.0.0.1:6379"
REDIS_ENV = "DR_SANDBOX_REDIS"


class SessionStoreError(RuntimeError):
    pass


def redis_address() -> tuple[str, int]:
    """host, port of the Redis the sandbox uses (DR_SANDBOX_REDIS, loopback only)."""
    from dr_sandbox.netguard import require_loopback

    host, _, port = os.environ.get(REDIS_ENV, DEFAULT_REDIS).rpartition(":")
    require_loopback(host)
    return host, int(port)


def client() -> Any:
    import redis

    host, port = redis_address()
    return redis.Redis(host=host, port=port, socket_timeout=3, socket_connect_timeout=3)


def check_reachable() -> None:
    import redis

    try:
        client().ping()
    except redis.RedisError as exc:
        host, port = redis_address()
        raise SessionStoreError(
            f"{REDIS_ENV}: no Redis answers at {host}:{port} ({type(exc).__name__}); the sandbox's "
            "session stores need it"
        ) from None


def seed(prefix: str, count: int, ttl_seconds: int = 3600) -> list[str]:
    """Create `count` signed-in user sessions under prefix, each with a TTL; returns their keys."""
    store = client()
    keys = []
    pipe = store.pipeline(transaction=False)
    for i in range(count):
        key = f"{prefix}{secrets.token_hex(16)}"
        pipe.hset(key, mapping={"user_id": f"user-{i:05d}", "tenant_id": f"tenant-{i % 17:03d}"})
        pipe.expire(key, ttl_seconds)
        keys.append(key)
    pipe.execute()
    return keys


def purge(namespace: str) -> int:
    """Delete every key of one sandbox (prefix `namespace:`); returns how many."""
    import redis

    try:
        store = client()
        keys = list(store.scan_iter(match=f"{namespace}:*", count=1000))
        return store.delete(*keys) if keys else 0
    except redis.RedisError:
        return 0
