"""The sandbox's primary database: real rows, a bounded write load, and clean create/drop."""

from __future__ import annotations

import os

import psycopg2
import pytest

from dr_sandbox import database

pytestmark = pytest.mark.integration


@pytest.fixture
def primary():
    name = f"dr_sandbox_dbtest_{os.getpid()}"
    db = database.create(name, tenants=20, users=100, invoices=300)
    yield db
    database.drop(name)


def _exists(name: str) -> bool:
    conn = psycopg2.connect(database.ADMIN_DSN)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            db = cur.fetchone() is not None
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (f"{name}_app",))
            return db or cur.fetchone() is not None
    finally:
        conn.close()


def test_seeded_rows_are_real_and_owned_by_a_generated_role(primary):
    assert database.row_counts(primary.dsn) == {
        "tenants": 20,
        "users": 100,
        "subscriptions": 20,
        "invoices": 300,
    }
    assert primary.role == f"{primary.name}_app" and len(primary.password) >= 24
    assert "password" not in primary.public() and primary.password not in str(primary.public())


def test_write_load_is_bounded_and_lands_real_rows(primary):
    before = database.row_counts(primary.dsn)
    result = database.write_load(primary.dsn, rate_per_second=100, seconds=0.5)
    after = database.row_counts(primary.dsn)
    written = result["written"]
    assert result["errors"] == 0
    assert 0.45 <= result["seconds"] < 2.0  # stops by itself
    assert after["users"] - before["users"] == written["users"]
    assert after["invoices"] - before["invoices"] == written["invoices"]
    assert 20 <= written["users"] + written["invoices"] <= 60


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rate_per_second": 0, "seconds": 1}, "rate_per_second"),
        ({"rate_per_second": 5, "seconds": 0}, "seconds"),
    ],
)
def test_write_load_refuses_unbounded_settings(primary, kwargs, field):
    with pytest.raises(ValueError, match=field):
        database.write_load(primary.dsn, **kwargs)


def test_create_is_fresh_and_drop_leaves_nothing():
    name = f"dr_sandbox_dbtest2_{os.getpid()}"
    first = database.create(name, tenants=5, users=5, invoices=5)
    database.write_load(first.dsn, rate_per_second=50, seconds=0.2)
    second = database.create(name, tenants=5, users=5, invoices=5)  # recreated from scratch
    assert database.row_counts(second.dsn)["invoices"] == 5
    assert second.password != first.password
    database.drop(name)
    assert not _exists(name)


def test_refuses_to_touch_databases_it_does_not_own():
    with pytest.raises(ValueError, match="sandbox"):
        database.drop("postgres")
    with pytest.raises(ValueError, match="dr_sandbox"):
        database.create("production")
