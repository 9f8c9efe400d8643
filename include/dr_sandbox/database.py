"""The sandbox's primary database: a real PostgreSQL database with tenant data and a write load.

Backups, restores, data loss and integrity are measured on these rows, so they are real rows in a
database the sandbox creates (and drops) on the local server, owned by a role with a generated
password.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import sys
import time
from dataclasses import dataclass

import psycopg2
from psycopg2 import sql

ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"

SCHEMA = """
CREATE TABLE tenants (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    tier        text NOT NULL CHECK (tier IN ('enterprise', 'team', 'developer')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE users (
    id          bigserial PRIMARY KEY,
    tenant_id   bigint NOT NULL REFERENCES tenants(id),
    email       text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE subscriptions (
    id          bigserial PRIMARY KEY,
    tenant_id   bigint NOT NULL REFERENCES tenants(id),
    plan        text NOT NULL,
    mrr_cents   integer NOT NULL CHECK (mrr_cents >= 0),
    status      text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE invoices (
    id          bigserial PRIMARY KEY,
    tenant_id   bigint NOT NULL REFERENCES tenants(id),
    amount_cents integer NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    paid        boolean NOT NULL DEFAULT false
);
CREATE INDEX invoices_issued_at ON invoices (issued_at);
"""

SEED = """
INSERT INTO tenants (name, tier, created_at)
SELECT 'tenant-' || g,
       (ARRAY['enterprise','team','team','developer','developer','developer'])[1 + g %% 6],
       timestamptz '2025-01-01' + g * interval '1 hour'
FROM generate_series(1, %(tenants)s) g;
INSERT INTO users (tenant_id, email, created_at)
SELECT 1 + g %% %(tenants)s, 'user' || g || '@example.test', timestamptz '2025-01-02' + g * interval '1 minute'
FROM generate_series(1, %(users)s) g;
INSERT INTO subscriptions (tenant_id, plan, mrr_cents, status, updated_at)
SELECT t.id, t.tier || '-monthly',
       CASE t.tier WHEN 'enterprise' THEN 150000 WHEN 'team' THEN 4500 ELSE 1500 END,
       'active', timestamptz '2025-02-01'
FROM tenants t;
INSERT INTO invoices (tenant_id, amount_cents, issued_at, paid)
SELECT 1 + g %% %(tenants)s, 1000 + (g * 37) %% 90000, timestamptz '2025-03-01' + g * interval '5 minutes', g %% 7 <> 0
FROM generate_series(1, %(invoices)s) g;
"""


@dataclass(frozen=True)
class PrimaryDatabase:
    name: str
    role: str
    password: str
    host: str = "127.0.0.1"
    port: int = 5432

    @property
    def dsn(self) -> str:
        """libpq DSN (with the generated password): only ever handed over as a secret."""
        return (
            f"host={self.host} port={self.port} dbname={self.name} user={self.role} password={self.password}"
        )

    def public(self) -> dict:
        return {"host": self.host, "port": self.port, "database": self.name, "user": self.role}


def _admin(dsn: str = ADMIN_DSN):
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


def create(
    name: str,
    *,
    tenants: int = 200,
    users: int = 2000,
    invoices: int = 5000,
    admin_dsn: str = ADMIN_DSN,
) -> PrimaryDatabase:
    """Create (fresh) the database and its owner role, then seed it. Refuses names it does not own."""
    if not name.startswith("dr_sandbox"):
        raise ValueError(
            f"database name {name!r} must start with 'dr_sandbox' (the sandbox only drops its own)"
        )
    db = PrimaryDatabase(name=name, role=f"{name}_app", password=secrets.token_urlsafe(24))
    drop(name, admin_dsn=admin_dsn)
    conn = _admin(admin_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(db.role)),
                (db.password,),
            )
            cur.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(db.role))
            )
    finally:
        conn.close()
    with psycopg2.connect(db.dsn) as conn, conn.cursor() as cur:
        cur.execute(SCHEMA)
        cur.execute(SEED, {"tenants": tenants, "users": users, "invoices": invoices})
    conn.close()
    return db


def drop(name: str, *, admin_dsn: str = ADMIN_DSN) -> None:
    """Drop the database and its role (terminating sessions first). Safe when absent."""
    if not name.startswith("dr_sandbox"):
        raise ValueError(f"refusing to drop {name!r}: not a sandbox database")
    conn = _admin(admin_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(f"{name}_app")))
    finally:
        conn.close()


def row_counts(dsn: str) -> dict[str, int]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        out = {}
        for table in ("tenants", "users", "subscriptions", "invoices"):
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            out[table] = cur.fetchone()[0]
    conn.close()
    return out


def write_load(dsn: str, *, rate_per_second: float, seconds: float, seed: int = 7) -> dict:
    """A bounded write load (new users and invoices) so RPO and data loss are measured on real writes.

    Stops by itself after `seconds`; each write commits on its own, like an application would.
    """
    if rate_per_second <= 0 or rate_per_second > 500:
        raise ValueError(f"rate_per_second must be in (0, 500] (got {rate_per_second})")
    if seconds <= 0 or seconds > 3600:
        raise ValueError(f"seconds must be in (0, 3600] (got {seconds})")
    rng = random.Random(seed)
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    written = {"users": 0, "invoices": 0}
    errors = 0
    start = time.monotonic()
    interval = 1.0 / rate_per_second
    next_at = start
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT max(id) FROM tenants")
            tenants = cur.fetchone()[0] or 1
            while time.monotonic() - start < seconds:
                try:
                    if rng.random() < 0.3:
                        cur.execute(
                            "INSERT INTO users (tenant_id, email) VALUES (%s, %s)",
                            (rng.randint(1, tenants), f"load-{secrets.token_hex(8)}@example.test"),
                        )
                        written["users"] += 1
                    else:
                        cur.execute(
                            "INSERT INTO invoices (tenant_id, amount_cents) VALUES (%s, %s)",
                            (rng.randint(1, tenants), rng.randint(100, 90000)),
                        )
                        written["invoices"] += 1
                except psycopg2.Error:
                    errors += 1
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        conn.close()
    return {"written": written, "errors": errors, "seconds": round(time.monotonic() - start, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dr_sandbox.database")
    sub = parser.add_subparsers(dest="cmd", required=True)
    load = sub.add_parser("load", help="run a bounded write load against the sandbox database")
    load.add_argument("--dsn-env", required=True, help="name of the env var holding the DSN")
    load.add_argument("--rate", type=float, default=20.0)
    load.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    import os

    dsn = os.environ.get(args.dsn_env)
    if not dsn:
        parser.error(f"--dsn-env: environment variable {args.dsn_env} is not set")
    print(json.dumps(write_load(dsn, rate_per_second=args.rate, seconds=args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
