"""Sandboxes of one test run share one migrated PostgreSQL metadata template (on the machine's server):
migrated once even when sandboxes start side by side, copied for each sandbox, dropped with the run."""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

import psycopg2
import pytest

from dr_sandbox import airflow_runtime as rt
from dr_sandbox.database import ADMIN_DSN
from dr_sandbox.layout import SandboxLayout

pytestmark = pytest.mark.integration


def _dsn(database: str) -> str:
    return f"host=127.0.0.1 port=5432 user=postgres dbname={database}"


def _databases(prefix: str) -> set[str]:
    with psycopg2.connect(ADMIN_DSN) as conn, conn.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",))
        rows = {r[0] for r in cur.fetchall()}
    conn.close()
    return rows


def _marker(database: str) -> list[str]:
    with (
        psycopg2.connect(f"{ADMIN_DSN.rsplit('dbname=', 1)[0]}dbname={database}") as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT step FROM migrated ORDER BY step")
        rows = [r[0] for r in cur.fetchall()]
    conn.close()
    return rows


def test_the_template_is_migrated_once_and_every_sandbox_starts_from_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = f"it{secrets.token_hex(4)}"
    monkeypatch.setenv(rt.METADATA_ENV, "postgres")
    monkeypatch.delenv(rt.EXECUTOR_ENV, raising=False)
    monkeypatch.setenv(rt.METADATA_CACHE_ENV, token)
    commands: list[str] = []

    def fake_run(argv, env, layout, name):
        """What `airflow db migrate` / `pools import` leave behind, in the database env points at."""
        database = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].rsplit("/", 1)[1]
        commands.append(f"{argv[1]} {argv[2]} -> {database}")
        with psycopg2.connect(_dsn(database)) as conn:
            with conn.cursor() as cur:
                cur.execute("CREATE TABLE IF NOT EXISTS migrated (step text)")
                cur.execute("INSERT INTO migrated VALUES (%s)", (argv[2],))
        conn.close()

    monkeypatch.setattr(rt, "_run", fake_run)
    settings = {"pools": [{"pool_name": "dr_traffic", "pool_slot": 1}]}
    layouts = [
        SandboxLayout(
            state_dir=tmp_path / f"s{i}", database_name=f"dr_sandbox_test_{os.getpid()}_{token}_{i}"
        )
        for i in range(3)
    ]
    try:
        errors: list[BaseException] = []

        def start(layout: SandboxLayout) -> None:
            try:
                rt.initialise(layout, {}, settings, {"username": "u", "password": "p"})
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(layout,)) for layout in layouts[:2]]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        start(layouts[2])
        assert not errors, errors
        # migrated once, into the template, although two sandboxes started at the same time
        assert [c.split(" -> ")[0] for c in commands] == ["db migrate", "pools import"], commands
        template = commands[0].split(" -> ")[1]
        assert template.startswith(f"{rt.METADATA_TEMPLATE_PREFIX}{token}_")
        for layout in layouts:
            assert _marker(f"{layout.database_name}_airflow") == ["import", "migrate"]
    finally:
        for layout in layouts:
            rt.drop_metadata_database(layout)
        rt.drop_metadata_cache(token)
    assert not _databases(f"{rt.METADATA_TEMPLATE_PREFIX}{token}")
    assert not _databases(f"dr_sandbox_test_{os.getpid()}_{token}")
