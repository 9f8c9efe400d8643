"""The sandbox's executor settings: LocalExecutor by default, Celery by one variable, bad values refused."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from dr_sandbox import airflow_runtime as rt
from dr_sandbox.layout import SandboxLayout


@pytest.fixture
def layout(tmp_path: Path) -> SandboxLayout:
    return SandboxLayout.for_tests(tmp_path, ["us-east-1", "us-west-2", "eu-west-1"])


def test_local_executor_by_default_on_sqlite(layout: SandboxLayout, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (rt.EXECUTOR_ENV, rt.METADATA_ENV):
        monkeypatch.delenv(name, raising=False)
    assert rt.executor_env(layout) == {"AIRFLOW__CORE__EXECUTOR": "LocalExecutor"}
    assert rt.metadata_url(layout).startswith("sqlite:///")


def test_celery_gets_postgres_its_own_queue_and_key_prefix(
    layout: SandboxLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(rt.EXECUTOR_ENV, "celery")
    monkeypatch.delenv(rt.METADATA_ENV, raising=False)
    monkeypatch.setenv(rt.CELERY_WORKERS_ENV, "3")
    env = rt.executor_env(layout)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CORE__PARALLELISM"] == "6"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6379/0"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://postgres@127.0.0.1:5432/")
    assert env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] == f"{layout.database_name}_tasks"
    assert env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX"].startswith(
        layout.database_name + ":"
    )
    assert rt.metadata_url(layout).startswith("postgresql+psycopg2://")
    monkeypatch.setenv(rt.CELERY_BROKER_ENV, "rabbitmq")
    assert rt.executor_env(layout)["AIRFLOW__CELERY__BROKER_URL"].startswith("amqp://")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (rt.EXECUTOR_ENV, "kubernetes", "DR_SANDBOX_EXECUTOR: unknown executor 'kubernetes'"),
        (rt.CELERY_WORKERS_ENV, "0", "DR_SANDBOX_CELERY_WORKERS: '0' is not a worker count"),
        (rt.CELERY_WORKERS_ENV, "two", "DR_SANDBOX_CELERY_WORKERS: 'two' is not a worker count"),
        (rt.CELERY_BROKER_ENV, "redis://10.0.0.5:6379/0", "DR_SANDBOX_CELERY_BROKER: .* loopback"),
        (rt.CELERY_BROKER_ENV, "sqs://", "DR_SANDBOX_CELERY_BROKER"),
    ],
)
def test_bad_settings_are_refused_by_name(
    layout: SandboxLayout, monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(rt.EXECUTOR_ENV, "celery")
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        rt.executor_env(layout)


def test_sqlite_sandboxes_always_migrate_their_own_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shared template is PostgreSQL's (tests/integration/test_sandbox_metadata.py); a SQLite
    sandbox migrates its own file and imports its pools, cache token or not."""
    monkeypatch.delenv(rt.EXECUTOR_ENV, raising=False)
    monkeypatch.setenv(rt.METADATA_ENV, "sqlite")
    commands: list[str] = []
    monkeypatch.setattr(rt, "_run", lambda argv, env, layout, name: commands.append(" ".join(argv[1:3])))
    settings = {"pools": [{"pool_name": "dr_traffic", "pool_slot": 1}]}
    creds = {"username": "u", "password": "p"}
    for token in ("unit1", ""):
        monkeypatch.setenv(rt.METADATA_CACHE_ENV, token)
        rt.initialise(SandboxLayout.for_tests(tmp_path / f"s{token}", ["us-east-1"]), {}, settings, creds)
    assert commands == ["db migrate", "pools import"] * 2


def test_a_sqlite_sandbox_waits_for_the_write_lock_instead_of_failing(
    layout: SandboxLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(rt.METADATA_ENV, "sqlite")
    monkeypatch.delenv(rt.EXECUTOR_ENV, raising=False)
    env = rt.airflow_env(
        layout, {"fernet_key": "k", "username": "u", "jwt_secret": "j", "api_secret_key": "a"}, {}
    )
    path = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"]
    module, _, name = path.rpartition(".")
    assert getattr(importlib.import_module(module), name)["timeout"] >= 30
    monkeypatch.setenv(rt.METADATA_ENV, "postgres")
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS" not in rt.airflow_env(
        layout, {"fernet_key": "k", "username": "u", "jwt_secret": "j", "api_secret_key": "a"}, {}
    )


def test_the_scheduler_idle_loop_is_the_sandboxs_unless_the_suite_trades_it_for_cpu(
    layout: SandboxLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = {"fernet_key": "k", "username": "u", "jwt_secret": "j", "api_secret_key": "a"}
    monkeypatch.delenv(rt.IDLE_SLEEP_ENV, raising=False)
    assert rt.airflow_env(layout, creds, {})["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"] == "0.2"
    monkeypatch.setenv(rt.IDLE_SLEEP_ENV, "1")
    assert rt.airflow_env(layout, creds, {})["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"] == "1"
