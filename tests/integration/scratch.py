"""A scratch PostgreSQL database on the machine's server, created for a test module and dropped after."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2

ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def dsn_for(name: str) -> str:
    return f"host=127.0.0.1 port=5432 user=postgres dbname={name}"


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """Yields the new database's name; it is dropped (connections and all) whatever happens."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    admin = psycopg2.connect(ADMIN_DSN)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
