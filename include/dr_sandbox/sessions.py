"""The sandbox's session stores: one real Redis (the machine's) shared by every region.

In AWS each region has its own ElastiCache; here the regions share the local Redis and are kept
apart by key prefix (``<sandbox database>:<region>:session:``), so several sandboxes and test runs
never see each other's keys. Each region's store is also a Redis user of its own (``region_users``:
generated password, allowed only its region's keys), as an ElastiCache RBAC user would be, so a
fault can refuse one region's writes (``writes_refused``) without touching any other sandbox on
the machine. `purge` removes exactly one sandbox's keys and users.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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


def region_users(namespace: str, regions: Iterable[str]) -> dict[str, dict[str, str]]:
    """One Redis user per region: region -> {"user", "password"}; it may use only its region's keys."""
    store = client()
    users = {}
    for region in regions:
        name, password = f"{namespace}-{region}", secrets.token_urlsafe(18)
        store.execute_command(
            "ACL", "SETUSER", name, "reset", "on", f">{password}", f"~{namespace}:{region}:*", "+@all"
        )
        users[region] = {"user": name, "password": password}
    return users


def settings_values(users: dict[str, dict[str, str]]) -> dict[str, str]:
    """The placeholders of airflow_settings.yaml's session connections (REDIS_USER_US_EAST_1, ...)."""
    out = {}
    for region, user in users.items():
        suffix = region.upper().replace("-", "_")
        out[f"REDIS_USER_{suffix}"] = user["user"]
        out[f"REDIS_PASSWORD_{suffix}"] = user["password"]
    return out


@contextmanager
def writes_refused(user: str) -> Iterator[None]:
    """The user's write commands are refused (NOPERM) inside the block: a store that takes no writes,
    for this one user only (CLIENT PAUSE would stop every sandbox on the machine's Redis)."""
    store = client()
    store.execute_command("ACL", "SETUSER", user, "-@write")
    try:
        yield
    finally:
        store.execute_command("ACL", "SETUSER", user, "+@write")


def purge(namespace: str) -> int:
    """Delete every key (prefix `namespace:`) and every user of one sandbox; returns how many keys."""
    import redis

    try:
        store = client()
        keys = list(store.scan_iter(match=f"{namespace}:*", count=1000))
        deleted = store.delete(*keys) if keys else 0
        users = [u.decode() if isinstance(u, bytes) else u for u in store.execute_command("ACL", "USERS")]
        mine = [u for u in users if u.startswith(f"{namespace}-")]
        if mine:
            store.execute_command("ACL", "DELUSER", *mine)
        return deleted
    except redis.RedisError:
        return 0
